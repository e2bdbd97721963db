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

from urbanpulse.core.catalogue import KINDS, SENSOR_ID_PATTERN
from urbanpulse.core.envelope import Reading
from urbanpulse.core.untrusted import preview

NUL = "\x00"


def reading_problems(reading: Reading) -> list[str]:
    """Why ``reading`` cannot be stored, one message per problem; empty when it can."""
    problems: list[str] = []
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
