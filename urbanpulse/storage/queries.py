"""Read queries behind the API.  Column lists come from the kind catalogue."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import orjson

from urbanpulse.core.catalogue import Kind
from urbanpulse.storage.rollups import (
    TIERS,
    RolledField,
    Tier,
    bucket_reads,
    rolled_fields,
    rolled_until,
    rollup_table,
)


async def list_sensors(
    conn: asyncpg.Connection, kind: str | None, limit: int, offset: int
) -> list[dict[str, Any]]:
    """Sensors with location and their newest reading by event time."""
    rows = await conn.fetch(
        """
        SELECT s.sensor_id, s.kind, s.name, s.status, s.area_id,
               ST_X(s.location::geometry) AS lon, ST_Y(s.location::geometry) AS lat,
               l.ts, l.received_at, l."values", l.derived
        FROM sensors s
        LEFT JOIN sensor_latest l USING (sensor_id)
        WHERE $1::text IS NULL OR s.kind = $1
        ORDER BY s.sensor_id
        LIMIT $2 OFFSET $3
        """,
        kind,
        limit,
        offset,
    )
    return [
        {
            **dict(row),
            "values": orjson.loads(row["values"]) if row["values"] is not None else None,
            "derived": orjson.loads(row["derived"]) if row["derived"] is not None else None,
        }
        for row in rows
    ]


async def sensor_kind(conn: asyncpg.Connection, sensor_id: str) -> str | None:
    kind: str | None = await conn.fetchval(
        "SELECT kind FROM sensors WHERE sensor_id = $1", sensor_id
    )
    return kind


async def sensor_readings(
    conn: asyncpg.Connection,
    kind: Kind,
    sensor_id: str,
    start: datetime,
    end: datetime,
    limit: int,
) -> list[asyncpg.Record]:
    """Readings in ``[start, end)`` by event time, oldest first."""
    columns = ", ".join(f.column for f in kind.stored_fields)
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""
        SELECT ts, received_at, seq, {columns}
        FROM {kind.table}
        WHERE sensor_id = $1 AND ts >= $2 AND ts < $3
        ORDER BY ts
        LIMIT $4
        """,
        sensor_id,
        start,
        end,
        limit,
    )
    return rows


async def hourly_sums(
    conn: asyncpg.Connection,
    kind: Kind,
    metrics: Sequence[str],
    sensor_ids: Sequence[str],
    since: datetime,
) -> list[tuple[str, datetime, str, float, int]]:
    """(sensor_id, hour, metric, sum, count) of stored readings since ``since``, per hour."""
    columns = [kind.by_name[m].column for m in metrics]
    aggregates = ", ".join(f"sum({c}) AS sum_{c}, count({c}) AS count_{c}" for c in columns)
    rows = await conn.fetch(
        f"""
        SELECT sensor_id, time_bucket(INTERVAL '1 hour', ts) AS hour, {aggregates}
        FROM {kind.table}
        WHERE sensor_id = ANY($1::text[]) AND ts >= $2
        GROUP BY sensor_id, hour
        """,
        list(sensor_ids),
        since,
    )
    return [
        (row["sensor_id"], row["hour"], metric, row[f"sum_{column}"], row[f"count_{column}"])
        for row in rows
        for metric, column in zip(metrics, columns, strict=True)
        if row[f"count_{column}"]
    ]


def numeric_fields(kind: Kind) -> list[tuple[str, str]]:
    """(name, column) of every numeric per-reading field: metrics and numeric derived values."""
    return [(f.name, f.column) for f in rolled_fields(kind)]


def _raw_buckets_sql(kind: Kind, agg: str, since: str, until: str) -> str:
    """Buckets ($2 wide) computed from raw rows of sensor $1 with event time in [since, until)."""
    columns = ", ".join(f"{agg}({c})::float8 AS {c}" for _name, c in numeric_fields(kind))
    return (
        f"SELECT time_bucket($2::interval, ts) AS bucket, count(*) AS n, {columns} "
        f"FROM {kind.table} WHERE sensor_id = $1 AND ts >= {since} AND ts < {until} GROUP BY 1"
    )


def _rollup_value(field: RolledField, agg: str) -> str:
    c = field.column
    if agg != "avg":
        return f"{c}_{agg}::float8"
    if field.integer:  # as avg(integer) does it: numeric division, then float8
        return f"({c}_sum::numeric / nullif({c}_count, 0))::float8"
    return f"{c}_sum / nullif({c}_count, 0)"


def _rollup_buckets_sql(kind: Kind, tier: Tier, agg: str, since: str, until: str) -> str:
    """Buckets of sensor $1 read from a rollup, bucket start in [since, until)."""
    columns = ", ".join(f"{_rollup_value(f, agg)} AS {f.column}" for f in rolled_fields(kind))
    return (
        f"SELECT bucket, n, {columns} FROM {rollup_table(kind, tier)} "
        f"WHERE sensor_id = $1 AND bucket >= {since} AND bucket < {until}"
    )


async def bucketed_readings(
    conn: asyncpg.Connection,
    kind: Kind,
    sensor_id: str,
    start: datetime,
    end: datetime,
    bucket: timedelta,
    agg: str,
    limit: int,
) -> list[asyncpg.Record]:
    """One row per ``time_bucket`` in ``[start, end)``: bucket, n and ``agg`` of each field.

    Hours and days come from the rollups where they hold whole buckets (see
    ``rollups.bucket_reads``), the rest from raw rows: the same numbers either way.
    """
    if agg not in {"avg", "min", "max"}:
        raise ValueError(f"unknown aggregate {agg!r}")
    params: list[Any] = [sensor_id, bucket]

    def param(value: Any) -> str:
        params.append(value)
        return f"${len(params)}::timestamptz"

    tier = next((t for t in TIERS if t.width == bucket), None)
    if tier is None:
        union = _raw_buckets_sql(kind, agg, param(start), param(end))
    else:
        a, b = bucket_reads(start, end, bucket, await rolled_until(conn, kind))
        parts = [_raw_buckets_sql(kind, agg, param(start), param(a))]
        if a < b:
            parts.append(_rollup_buckets_sql(kind, tier, agg, param(a), param(b)))
        parts.append(_raw_buckets_sql(kind, agg, param(b), param(end)))
        union = " UNION ALL ".join(f"({part})" for part in parts)
    rows: list[asyncpg.Record] = await conn.fetch(
        f"{union} ORDER BY bucket LIMIT {int(limit)}", *params
    )
    return rows
