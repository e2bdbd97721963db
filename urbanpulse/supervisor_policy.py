"""What the supervisor decides, without processes or clocks: restart, wait, give up, exit code.

A child that exits while the platform is meant to run is restarted after a delay that doubles
with each quick crash in a row (``first_delay_s``, capped at ``max_delay_s``). A child that ran
at least ``stable_after_s`` before it exited starts the count afresh: it was working, so it
gets a quick restart. ``max_quick_crashes`` quick crashes in a row is a crash loop (a wrong
setting, a server that never answers): restarting again would only hide it, so the supervisor
gives up. So does an exit code that says the command can never run as configured.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable
from dataclasses import dataclass

# `urbanpulse` exits 2 for bad arguments or invalid URBANPULSE_* settings: a restart with the
# same command and environment fails the same way.
PERMANENT_EXIT_CODES = frozenset({2})


@dataclass(frozen=True)
class RestartPolicy:
    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    stable_after_s: float = 60.0
    max_quick_crashes: int = 5


@dataclass(frozen=True)
class Restart:
    delay_s: float


@dataclass(frozen=True)
class GiveUp:
    reason: str


Decision = Restart | GiveUp


class RestartTracker:
    """The restart decisions for one child, from how long each run lasted and how it ended."""

    def __init__(self, policy: RestartPolicy) -> None:
        self._policy = policy
        self.quick_crashes = 0  # in a row

    def after_exit(self, ran_s: float, returncode: int) -> Decision:
        if returncode in PERMANENT_EXIT_CODES:
            return GiveUp(
                f"{describe_exit(returncode)}: its arguments or URBANPULSE_* settings are "
                "invalid, and a restart would fail the same way"
            )
        if ran_s >= self._policy.stable_after_s:
            self.quick_crashes = 0
        self.quick_crashes += 1
        if self.quick_crashes >= self._policy.max_quick_crashes:
            return GiveUp(
                f"crash loop: {self.quick_crashes} exits in a row, each within "
                f"{self._policy.stable_after_s:g}s of starting (last: {describe_exit(returncode)})"
            )
        delay = self._policy.first_delay_s * 2 ** (self.quick_crashes - 1)
        return Restart(min(delay, self._policy.max_delay_s))


def describe_exit(returncode: int) -> str:
    """``exit code 1``, or ``killed by SIGKILL`` for asyncio's negative signal numbers."""
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return f"killed by {name}"


def stopped_cleanly(returncode: int) -> bool:
    """How a child asked to stop with SIGTERM should end: it exits 0, or SIGTERM's default
    action ends it when it had not yet installed its handler (still starting up)."""
    return returncode in (0, -signal.SIGTERM)


def supervisor_exit_code(gave_up: bool, stop_codes: Iterable[int]) -> int:
    """0 when nobody gave up and every child stopped cleanly when asked; 1 otherwise."""
    if gave_up or not all(stopped_cleanly(code) for code in stop_codes):
        return 1
    return 0
