"""Each area's map index hour by hour: what the map's time slider replays.

An area's value in an hour is the worst hourly value of the active sensors of the kind in it or
below it, as the live choropleth takes the worst latest reading; a sensor's hourly value is the
worst of its readings' index in that hour (the highest VN_AQI, the lowest VN_WQI).  Whole hours
before the rollup's watermark come from the hourly rollup (``<table>_1h``: its ``_max`` and
``_min`` columns), the rest from raw rows, split as the history endpoints split their reads
(``rollups.bucket_reads``), and the hours holding late readings stored since the watermark
are read raw beside the rollup: the same numbers as from raw rows alone, at a rollup's cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from urbanpulse.core.catalogue import KINDS, Kind
from urbanpulse.storage.rollups import (
    HOURLY,
    Bucket,
    bucket_reads,
    rolled_fields,
    rolled_until,
    rollup_table,
)
from urbanpulse.storage.scales import Scale


@dataclass(frozen=True)
class AreaHour:
    area_id: str
    hour: datetime
    value: float
    sensors: int  # sensors with a value in that hour


def _column(scale: Scale) -> str:
    kind = KINDS[scale.kind]
    return next(f.column for f in rolled_fields(kind) if f.name == scale.field)


def hourly_worst_sql(
    scale: Scale, split: tuple[datetime, datetime], late: Sequence[Bucket]
) -> tuple[str, list[object]]:
    """SQL of (sensor_id, bucket, v) per sensor and hour in [$2, $3), parameters from $4.

    ``$1`` is the area level, ``$2`` and ``$3`` the range; ``split`` the part read from the
    hourly rollup; ``late`` the (sensor, hour) pairs in it with readings stored since the
    rollup's watermark: those hours are read raw too, and the worst of both is the worst of
    all, whatever the rollup job's pace.
    """
    kind, column, worst = KINDS[scale.kind], _column(scale), scale.worst
    a, b = split

    def raw(since: str, until: str) -> str:
        return (
            f"SELECT sensor_id, time_bucket({HOURLY.sql_width}, ts) AS bucket, "
            f"{worst}({column})::float8 AS v FROM {kind.table} "
            f"WHERE ts >= {since} AND ts < {until} AND {column} IS NOT NULL "
            "AND sensor_id IN (SELECT sensor_id FROM members) GROUP BY 1, 2"
        )

    rolled = (
        f"SELECT sensor_id, bucket, {column}_{worst}::float8 AS v "
        f"FROM {rollup_table(kind, HOURLY)} WHERE bucket >= $4 AND bucket < $5 "
        f"AND {column}_count > 0 AND sensor_id IN (SELECT sensor_id FROM members)"
    )
    late_raw = (
        f"SELECT r.sensor_id, l.bucket, {worst}(r.{column})::float8 AS v "
        "FROM unnest($6::text[], $7::timestamptz[]) AS l(sensor_id, bucket) "
        f"JOIN {kind.table} r ON r.sensor_id = l.sensor_id AND r.ts >= l.bucket "
        f"AND r.ts < l.bucket + {HOURLY.sql_width} WHERE r.{column} IS NOT NULL GROUP BY 1, 2"
    )
    parts = [raw("$2", "$4")]
    params: list[object] = [a, b]
    if a < b:
        parts.append(rolled)
    if late:
        parts.append(late_raw)
        params += [[s for s, _ in late], [h for _, h in late]]
    parts.append(raw("$5", "$3"))
    union = " UNION ALL ".join(f"({p})" for p in parts)
    return f"SELECT sensor_id, bucket, {worst}(v) AS v FROM ({union}) u GROUP BY 1, 2", params


async def late_hours(
    conn: asyncpg.Connection, kind: Kind, split: tuple[datetime, datetime], until: datetime | None
) -> list[Bucket]:
    """(sensor, hour) pairs in the rolled-up part ``split`` with readings stored after the
    rollup's watermark ``until``: the BRIN index on ``stored_at`` finds them cheaply."""
    a, b = split
    if until is None or a >= b:
        return []
    rows = await conn.fetch(
        f"SELECT sensor_id, time_bucket({HOURLY.sql_width}, ts) AS bucket FROM {kind.table} "
        "WHERE stored_at > $1 AND ts >= $2 AND ts < $3 GROUP BY 1, 2",
        until,
        a,
        b,
    )
    return [(r["sensor_id"], r["bucket"]) for r in rows]


async def area_hours(
    conn: asyncpg.Connection, scale: Scale, level: str, start: datetime, end: datetime
) -> list[AreaHour]:
    """Per area of ``level`` and hour in [start, end): the worst sensor's hourly value."""
    kind = KINDS[scale.kind]
    until = await rolled_until(conn, kind)
    split = bucket_reads(start, end, HOURLY.width, until)
    late = await late_hours(conn, kind, split, until)
    hourly, params = hourly_worst_sql(scale, split, late)
    rows = await conn.fetch(
        f"""
        WITH RECURSIVE sub(root, area_id) AS (
            SELECT area_id, area_id FROM areas WHERE level = $1
            UNION
            SELECT sub.root, a.area_id FROM sub JOIN areas a ON a.parent_id = sub.area_id
        ),
        members AS (
            SELECT sub.root, s.sensor_id FROM sub
            JOIN sensors s ON s.area_id = sub.area_id
            WHERE s.kind = '{kind.name}' AND s.status = 'active'
        ),
        hourly AS ({hourly})
        SELECT m.root AS area_id, h.bucket, {scale.worst}(h.v) AS v, count(*) AS sensors
        FROM members m JOIN hourly h USING (sensor_id)
        GROUP BY 1, 2
        ORDER BY 2, 1
        """,
        level,
        start,
        end,
        *params,
    )
    return [AreaHour(r["area_id"], r["bucket"], r["v"], r["sensors"]) for r in rows]


# The forecasts table (``urbanpulse forecast run``) holds each ward's VN_AQI ahead: the one
# map index with a forecast.
FORECAST_INDEX = "vn_aqi"


@dataclass(frozen=True)
class AreaForecastHour:
    area_id: str
    valid_at: datetime
    value: int
    lower: int | None
    upper: int | None
    method: str


async def area_forecast_hours(
    conn: asyncpg.Connection, level: str, after: datetime, until: datetime
) -> list[AreaForecastHour]:
    """The stored forecasts of the areas of ``level`` valid in (after, until], by hour."""
    rows = await conn.fetch(
        """
        SELECT f.subject_id, f.valid_at, f.vn_aqi, f.vn_aqi_lower, f.vn_aqi_upper, f.method
        FROM forecasts f JOIN areas a ON a.area_id = f.subject_id
        WHERE f.subject_kind = 'area' AND a.level = $1 AND f.vn_aqi IS NOT NULL
          AND f.valid_at > $2 AND f.valid_at <= $3
        ORDER BY f.valid_at, f.subject_id
        """,
        level,
        after,
        until,
    )
    return [
        AreaForecastHour(
            r["subject_id"],
            r["valid_at"],
            r["vn_aqi"],
            r["vn_aqi_lower"],
            r["vn_aqi_upper"],
            r["method"],
        )
        for r in rows
    ]
