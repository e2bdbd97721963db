"""How many unknown sensors may be registered as pending: a cap on the total and a rate.

Under ``provisioning=pending`` every unknown sensor id becomes a row in ``sensors``, state in the
processor and, without a bound, a way for one sender inventing ids to grow all of them for ever.
The cap bounds the total waiting for an operator; the rate (a token bucket) bounds how fast a
flood can fill it, so that the sensors a city really installs today still get in.  Readings of
ids beyond the budget are dead-lettered with the reason (nothing is lost: they can be replayed
once the sensors are registered).  The cap counts the pending rows in the database, so it holds
for all processors together (give or take one batch each); the rate is per processor.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PendingBudget:
    remaining: int  # new pending sensors this batch may register
    why_not: str  # the limit reached, for the dead letters of those beyond it


class PendingAdmission:
    def __init__(self, cap: int, per_minute: int, now_s: float) -> None:
        self._cap = cap
        self._per_minute = per_minute
        self._tokens = float(per_minute)
        self._updated = now_s

    def budget(self, pending_now: int, now_s: float) -> PendingBudget:
        """The budget of a batch, given how many sensors are pending in the database now."""
        elapsed = max(0.0, now_s - self._updated)
        self._tokens = min(float(self._per_minute), self._tokens + elapsed * self._per_minute / 60)
        self._updated = now_s
        room = self._cap - pending_now
        rate = int(self._tokens)
        if room <= rate:
            why = f"the cap of {self._cap} sensors pending approval is reached"
        else:
            why = f"more than {self._per_minute} new sensors a minute (rate limit)"
        return PendingBudget(max(0, min(room, rate)), why)

    def spend(self, registered: int) -> None:
        self._tokens = max(0.0, self._tokens - registered)
