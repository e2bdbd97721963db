"""Idempotent batch writes of readings: a replayed reading is stored once.

The row-building steps are pure; ``write_readings`` runs them inside the caller's transaction so
that readings and the "latest" table always move together.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from urbanpulse.core.catalogue import Kind, get_kind
from urbanpulse.core.envelope import Reading

# A reading's identity: what makes a replay the same reading.
ReadingKey = tuple[str, datetime]
# Values the processor derived for a reading (e.g. its VN_AQI), by column.
DerivedValues = Mapping[ReadingKey, Mapping[str, Any]]

ENVELOPE_COLUMNS = (
    ("sensor_id", "text"),
    ("ts", "timestamptz"),
    ("received_at", "timestamptz"),
    ("seq", "bigint"),
)
ARRAY_TYPES = {"integer": "int4", "double precision": "float8", "text": "text"}


@dataclass(frozen=True)
class WriteResult:
    received: int
    inserted: int

    @property
    def duplicates(self) -> int:
        return self.received - self.inserted


def columns_of(kind: Kind) -> list[tuple[str, str]]:
    """(column, array element type) of a kind's table, in insert order."""
    return list(ENVELOPE_COLUMNS) + [
        (column.column, ARRAY_TYPES[column.sql_type]) for column in kind.stored_fields
    ]


def column_arrays(
    kind: Kind, readings: Sequence[Reading], derived: DerivedValues | None = None
) -> list[list[Any]]:
    """One array per column (the shape ``unnest`` wants), missing values as NULL."""
    arrays: list[list[Any]] = [
        [r.sensor_id for r in readings],
        [r.ts for r in readings],
        [r.received_at for r in readings],
        [r.seq for r in readings],
    ]
    for metric in kind.metrics:
        cast = int if metric.integer else float
        arrays.append(
            [cast(r.values[metric.name]) if metric.name in r.values else None for r in readings]
        )
    no_values: Mapping[str, Any] = {}
    per_reading = [(derived or {}).get((r.sensor_id, r.ts), no_values) for r in readings]
    for field in kind.derived:
        arrays.append([values.get(field.name) for values in per_reading])
    return arrays


def newest_per_sensor(readings: Iterable[Reading]) -> list[Reading]:
    newest: dict[str, Reading] = {}
    for reading in readings:
        current = newest.get(reading.sensor_id)
        if current is None or reading.ts > current.ts:
            newest[reading.sensor_id] = reading
    return list(newest.values())


def insert_sql(kind: Kind) -> str:
    columns = columns_of(kind)
    names = ", ".join(name for name, _ in columns)
    params = ", ".join(f"${i}::{typ}[]" for i, (_, typ) in enumerate(columns, start=1))
    return (
        f"INSERT INTO {kind.table} ({names}) SELECT * FROM unnest({params}) "
        "ON CONFLICT (sensor_id, ts) DO NOTHING"
    )


UPSERT_LATEST_SQL = """
INSERT INTO sensor_latest (sensor_id, kind, ts, received_at, "values", derived)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::jsonb[],
                     $6::jsonb[])
ON CONFLICT (sensor_id) DO UPDATE
SET kind = EXCLUDED.kind, ts = EXCLUDED.ts, received_at = EXCLUDED.received_at,
    "values" = EXCLUDED."values", derived = EXCLUDED.derived
WHERE sensor_latest.ts < EXCLUDED.ts
"""


async def stored_keys(conn: asyncpg.Connection, readings: Sequence[Reading]) -> set[ReadingKey]:
    """Which of ``readings`` are stored already (replays), by (sensor_id, ts)."""
    stored: set[ReadingKey] = set()
    for kind_name, group in _by_kind(readings).items():
        rows = await conn.fetch(
            f"SELECT t.sensor_id, t.ts FROM {get_kind(kind_name).table} t "
            "JOIN unnest($1::text[], $2::timestamptz[]) AS b(sensor_id, ts) USING (sensor_id, ts)",
            [r.sensor_id for r in group],
            [r.ts for r in group],
        )
        stored.update((row["sensor_id"], row["ts"]) for row in rows)
    return stored


def _by_kind(readings: Iterable[Reading]) -> dict[str, list[Reading]]:
    by_kind: dict[str, list[Reading]] = defaultdict(list)
    for reading in readings:
        by_kind[reading.kind].append(reading)
    return by_kind


async def write_readings(
    conn: asyncpg.Connection, readings: Sequence[Reading], derived: DerivedValues | None = None
) -> WriteResult:
    """Insert readings (duplicates of (sensor_id, ts) are skipped); call inside a transaction."""
    inserted = 0
    for kind_name, group in _by_kind(readings).items():
        kind = get_kind(kind_name)
        status = await conn.execute(insert_sql(kind), *column_arrays(kind, group, derived))
        inserted += int(status.rsplit(" ", 1)[1])
    latest = newest_per_sensor(readings)
    if latest:
        await conn.execute(
            UPSERT_LATEST_SQL,
            [r.sensor_id for r in latest],
            [r.kind for r in latest],
            [r.ts for r in latest],
            [r.received_at for r in latest],
            [orjson.dumps(r.values).decode() for r in latest],
            [orjson.dumps((derived or {}).get((r.sensor_id, r.ts), {})).decode() for r in latest],
        )
    return WriteResult(received=len(readings), inserted=inserted)
