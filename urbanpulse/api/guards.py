"""The API's guards, per process: failed authentications per client address, and caps.

:class:`FailureWindow` counts each client's failed authentications in a sliding window; once a
client has ``max_failures`` in it, it is refused (429 with ``Retry-After``, or close 4429 on the
live feed) until the oldest one leaves the window.  It is kept in memory: with K API processes
a client gets at most K times the allowance, which still stops guessing (keys hold 256 random
bits: the limit is about noise in the logs and load on the database, not about the odds).
:class:`Slots` caps concurrent uses (streamed exports); the live feed counts its clients in its
hub.  Every refusal is counted in the process's metrics (``urbanpulse_api_refused_total``).
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from urbanpulse.core import metrics as m
from urbanpulse.core.settings import ApiSettings

log = logging.getLogger(__name__)

# Client addresses remembered at most; beyond, the one that failed least recently is forgotten.
MAX_TRACKED_CLIENTS = 10_000


class FailureWindow:
    """Failed authentications per client address over the last ``window_s`` seconds."""

    def __init__(
        self,
        max_failures: int,
        window_s: float,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = MAX_TRACKED_CLIENTS,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._clock = clock
        self._max_clients = max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str) -> int | None:
        """Whole seconds until ``client`` may try again, or None when it may now."""
        failures = self._recent(client)
        if len(failures) < self.max_failures:
            return None
        oldest_that_counts = failures[-self.max_failures]
        return max(1, math.ceil(oldest_that_counts + self.window_s - self._clock()))

    def fail(self, client: str) -> None:
        failures = self._recent(client)
        failures.append(self._clock())
        self._failures[client] = failures
        self._failures.move_to_end(client)
        while len(failures) > self.max_failures:
            failures.popleft()  # older ones can no longer decide anything
        while len(self._failures) > self._max_clients:
            self._failures.popitem(last=False)

    def _recent(self, client: str) -> deque[float]:
        failures = self._failures.get(client, deque())
        horizon = self._clock() - self.window_s
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            self._failures.pop(client, None)
        return failures


class Slots:
    """At most ``limit`` concurrent holders; taking never waits."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.taken = 0

    def take(self) -> bool:
        if self.taken >= self.limit:
            return False
        self.taken += 1
        return True

    def release(self) -> None:
        self.taken -= 1


class Guards:
    """One API process's guards and the metrics they count refusals in."""

    def __init__(self, settings: ApiSettings, metrics: m.Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.failures = FailureWindow(settings.auth_failures_max, settings.auth_failure_window_s)
        self.exports = Slots(settings.exports_max_concurrent)

    def retry_after(self, client: str) -> int | None:
        """Seconds ``client`` must wait (counted as a refusal), or None."""
        wait = self.failures.retry_after(client)
        if wait is not None:
            self.metrics.inc(m.API_REFUSED, guard="auth_rate")
        return wait

    def failed(self, client: str, via: str, shown: str, reason: str) -> None:
        """Count and log a failed authentication.  ``shown`` says what was presented and must
        be safe to log: :func:`key_prefix` of a key (never the key), or "a ticket"."""
        self.failures.fail(client)
        self.metrics.inc(m.API_AUTH_FAILURES, via=via)
        log.warning("failed authentication from %s (%s, %s): %s", client, via, shown, reason)

    def refused(self, guard: str) -> None:
        self.metrics.inc(m.API_REFUSED, guard=guard)


def retry_message(wait_s: int) -> str:
    return f"too many failed authentications from your address: try again in {wait_s} s"
