"""A cap on the rate of dead letters, per source and in all.  Pure: the caller passes the clock.

A faulty gateway, a hostile client or a bad deploy can turn every message into a dead letter.
Produced one by one, they would flood the dead-letter topic and bury the other sources' faults
(the idea of getsentry/arroyo's ``DlqLimit``).  So each source (an MQTT topic: one sensor) may
produce ``per_source`` dead letters per interval, and all sources together ``total``.  Beyond
that a dead letter is only counted, and the counts are summarised in one log line per interval.

The MQTT message of a capped dead letter is still acked: its good readings are produced as
usual, so only the record of its faults is left out, and the summary says whose they were.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from urbanpulse.core.settings import IngestSettings
from urbanpulse.core.untrusted import preview

# Sources are untrusted strings (an MQTT topic can be 64 KiB): keep a bounded key of each.
SOURCE_KEY_CHARS = 200
OTHER_SOURCES = "(other sources)"  # shares one count once max_sources are being tracked
TOP_SOURCES = 5


@dataclass(frozen=True)
class RateCap:
    per_source: int = 60
    total: int = 6000
    interval_s: float = 60.0
    max_sources: int = 10_000  # sources tracked per interval; beyond, they share one count


def rate_cap_from(ingest: IngestSettings) -> RateCap:
    """The cap the settings give (``URBANPULSE_INGEST__DEAD_LETTER_RATE_*``): the bridge and the
    processor apply the same one."""
    return RateCap(
        per_source=ingest.dead_letter_rate_per_source,
        total=ingest.dead_letter_rate_total,
        interval_s=ingest.dead_letter_rate_interval_s,
    )


@dataclass(frozen=True)
class CapSummary:
    capped: int  # dead letters counted but not produced
    sources: int  # how many sources they came from
    top: list[tuple[str, int]]  # the sources with the most, most first


class DeadLetterGate:
    """Decides, dead letter by dead letter, whether it is produced or only counted."""

    def __init__(self, cap: RateCap, now: float) -> None:
        self._cap = cap
        self._window_start = now
        self._produced: dict[str, int] = {}  # per source, in the current interval
        self._produced_total = 0
        self._capped: dict[str, int] = {}  # per source, since the last summary

    def admit(self, source: str, now: float) -> bool:
        """True: produce this dead letter; False: it is over the cap (and has been counted)."""
        if now - self._window_start >= self._cap.interval_s:
            self._window_start = now
            self._produced.clear()
            self._produced_total = 0
        key = _key(source, self._produced, self._cap.max_sources)
        produced = self._produced.get(key, 0)
        if produced >= self._cap.per_source or self._produced_total >= self._cap.total:
            capped_key = _key(source, self._capped, self._cap.max_sources)
            self._capped[capped_key] = self._capped.get(capped_key, 0) + 1
            return False
        self._produced[key] = produced + 1
        self._produced_total += 1
        return True

    def take_summary(self) -> CapSummary | None:
        """What was capped since the last call (None if nothing); the counts start again."""
        if not self._capped:
            return None
        capped, self._capped = self._capped, {}
        top = heapq.nlargest(TOP_SOURCES, capped.items(), key=lambda item: item[1])
        return CapSummary(sum(capped.values()), len(capped), top)


def describe(summary: CapSummary, cap: RateCap) -> str:
    """The one log line that stands for the dead letters capped in an interval."""
    top = ", ".join(f"{preview(source)}: {count}" for source, count in summary.top)
    return (
        f"{summary.capped} dead letters over the rate cap ({cap.per_source} per source, "
        f"{cap.total} in all, per {cap.interval_s:.0f}s) were counted, not produced; "
        f"from {summary.sources} sources, most from {top}"
    )


def _key(source: str, counts: dict[str, int], max_sources: int) -> str:
    key = source[:SOURCE_KEY_CHARS]
    if key in counts or len(counts) < max_sources:
        return key
    return OTHER_SOURCES
