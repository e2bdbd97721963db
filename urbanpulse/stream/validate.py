"""Re-check each envelope from Kafka against the kind catalogue before anything uses it.

The bridge validated the reading already, but the readings topic is a boundary like any other:
another producer, an older bridge or a hand-written record can put anything on it.  A reading
that fails here is dead-lettered with every problem named, instead of reaching the database (or
the indices) and stalling its partition.

Storage limits that are not catalogue facts (a ``seq`` beyond PostgreSQL's bigint, say) are the
database's to refuse; a record it refuses is isolated by :mod:`urbanpulse.stream.isolate`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from urbanpulse.core.catalogue import KINDS, SENSOR_ID_PATTERN
from urbanpulse.core.envelope import Reading
from urbanpulse.core.settings import Settings
from urbanpulse.core.untrusted import preview

NUL = "\x00"


@dataclass(frozen=True)
class RecordLimits:
    max_bytes: int  # a record larger than this is not a reading
    # A reading from the future would stay its sensor's "latest" (by event time) for ever.
    max_future_skew: timedelta
    # The bridge's age limit (``ingest.max_age_days``), applied again: a hand-written record
    # could otherwise store a reading of year 1.  Measured from the reading's receipt, as the
    # bridge measures it, so nothing the bridge accepted is refused for waiting in Kafka; and a
    # receipt itself that old is refused too (with Kafka's default 7-day retention no record of
    # a bridge waits that long).
    max_age: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> RecordLimits:
        ingest = settings.ingest
        return cls(
            settings.stream.max_record_bytes,
            timedelta(seconds=ingest.max_future_skew_s),
            timedelta(days=ingest.max_age_days),
        )


def reading_problems(reading: Reading, now: datetime, limits: RecordLimits) -> list[str]:
    """Why ``reading`` cannot be stored, one message per problem; empty when it can."""
    problems: list[str] = []
    horizon = min(now, reading.received_at) + limits.max_future_skew
    if reading.ts > horizon:
        problems.append(f"ts {reading.ts.isoformat()} is in the future")
    if reading.received_at > now + limits.max_future_skew:
        problems.append(f"received_at {reading.received_at.isoformat()} is in the future")
    if reading.received_at < now - limits.max_age:
        problems.append(
            f"received_at {reading.received_at.isoformat()} is older than {_days(limits.max_age)}"
        )
    elif reading.ts < reading.received_at - limits.max_age:
        problems.append(
            f"ts {reading.ts.isoformat()} is older than {_days(limits.max_age)} before it was "
            f"received ({reading.received_at.isoformat()})"
        )
    if reading.location is not None:
        lon, lat = reading.location
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            problems.append(f"location ({lon}, {lat}) is not WGS 84 lon, lat")
    if not SENSOR_ID_PATTERN.fullmatch(reading.sensor_id):
        problems.append(
            f"sensor_id {preview(reading.sensor_id)} is not 1-64 letters, digits or _.:- "
            "starting with a letter or digit"
        )
    if NUL in reading.source:
        problems.append(f"source {preview(reading.source)} contains a NUL character")
    kind = KINDS.get(reading.kind)
    if kind is None:
        problems.append(f"unknown kind {preview(reading.kind)}; known kinds: {', '.join(KINDS)}")
        return problems
    if not reading.values:
        problems.append("values: no metric given")
    for name, value in reading.values.items():
        metric = kind.by_name.get(name)
        if metric is None:
            problems.append(f"values.{preview(name)}: unknown metric for kind {kind.name!r}")
        elif not math.isfinite(value):
            problems.append(f"values.{name}: {value} is not a finite number")
        elif (problem := metric.problem_with(value)) is not None:
            problems.append(f"values.{problem}")
    return problems


def _days(age: timedelta) -> str:
    # Worded only for a reading that has the problem: this check runs for every reading.
    return f"{age / timedelta(days=1):g} days"
