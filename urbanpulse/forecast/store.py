"""The forecast tables, the hourly means they are computed from, and the reads the API serves."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import numpy as np

from urbanpulse.forecast.forecaster import HorizonForecast
from urbanpulse.forecast.series import HourlySeries
from urbanpulse.storage.geo import SUBTREE_SQL

HOUR = timedelta(hours=1)
SENSOR = "sensor"
AREA = "area"

# ----------------------------------------------------------------- hourly means


async def hourly_air(
    conn: asyncpg.Connection, start: datetime, end: datetime
) -> tuple[list[HourlySeries], list[HourlySeries]]:
    """Hourly series of every air station and of every area holding one, over [start, end)."""
    rows = await conn.fetch(
        """
        SELECT r.sensor_id, s.area_id, time_bucket('1 hour', r.ts) AS hour,
               avg(r.pm25) AS pm25, avg(r.humidity) AS humidity,
               avg(r.temperature) AS temperature
        FROM readings_air r JOIN sensors s USING (sensor_id)
        WHERE r.ts >= $1 AND r.ts < $2 AND s.status = 'active'
        GROUP BY 1, 2, 3
        """,
        start,
        end,
    )
    hours = int((end - start) / HOUR)
    stations = _grids(((r["sensor_id"], r) for r in rows), start, hours)
    areas = _grids(((r["area_id"], r) for r in rows if r["area_id"] is not None), start, hours)
    return stations, areas


def _grids(rows: Any, start: datetime, hours: int) -> list[HourlySeries]:
    """Hourly grids per subject; several rows of one hour (an area's stations) are averaged."""
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    for subject, row in rows:
        index = int((row["hour"] - start) / HOUR)
        total = sums.setdefault(subject, np.zeros((3, hours)))
        count = counts.setdefault(subject, np.zeros((3, hours)))
        for i, name in enumerate(("pm25", "humidity", "temperature")):
            if row[name] is not None:
                total[i, index] += row[name]
                count[i, index] += 1
    series = []
    for subject, total in sorted(sums.items()):
        with np.errstate(invalid="ignore"):
            means = total / counts[subject]
        series.append(HourlySeries(subject, start, means[0], means[1], means[2]))
    return series


async def bin_fill(
    conn: asyncpg.Connection, since: datetime
) -> dict[str, list[tuple[datetime, float]]]:
    rows = await conn.fetch(
        """
        SELECT r.sensor_id, r.ts, r.fill FROM readings_waste_bin r
        JOIN sensors s USING (sensor_id)
        WHERE r.ts >= $1 AND r.fill IS NOT NULL AND s.status = 'active'
        ORDER BY r.sensor_id, r.ts
        """,
        since,
    )
    found: dict[str, list[tuple[datetime, float]]] = {}
    for row in rows:
        found.setdefault(row["sensor_id"], []).append((row["ts"], row["fill"]))
    return found


# ----------------------------------------------------------------- writes


@dataclass(frozen=True)
class AirForecast:
    subject_kind: str
    subject_id: str
    origin: datetime
    horizons: Sequence[HorizonForecast]
    aqi: Sequence[tuple[int | None, int | None, int | None]]  # lower, median, upper per horizon


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


async def store_air(conn: asyncpg.Connection, issued_at: datetime, forecast: AirForecast) -> None:
    """Replace the subject's forecast by this one, every horizon at once."""
    rows = [
        (
            forecast.subject_kind,
            forecast.subject_id,
            h.horizon,
            issued_at,
            forecast.origin,
            h.valid_at,
            h.method,
            _finite(h.skill),
            h.median,
            h.lower,
            h.upper,
            aqi[1],
            aqi[0],
            aqi[2],
        )
        for h, aqi in zip(forecast.horizons, forecast.aqi, strict=True)
    ]
    async with conn.transaction():
        await conn.execute(
            "DELETE FROM forecasts WHERE subject_kind = $1 AND subject_id = $2",
            forecast.subject_kind,
            forecast.subject_id,
        )
        await conn.executemany(
            """INSERT INTO forecasts (subject_kind, subject_id, horizon_h, issued_at, origin,
                   valid_at, method, skill, pm25, pm25_lower, pm25_upper, vn_aqi, vn_aqi_lower,
                   vn_aqi_upper)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)""",
            rows,
        )


@dataclass(frozen=True)
class BinForecast:
    sensor_id: str
    observed_at: datetime
    fill: float
    slope_per_h: float
    hours_to_full: float | None

    @property
    def full_at(self) -> datetime | None:
        if self.hours_to_full is None:
            return None
        return self.observed_at + timedelta(hours=self.hours_to_full)


async def store_bins(
    conn: asyncpg.Connection, issued_at: datetime, forecasts: Sequence[BinForecast]
) -> None:
    await conn.executemany(
        """INSERT INTO bin_forecasts (sensor_id, issued_at, observed_at, fill, slope_per_h,
               hours_to_full, full_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (sensor_id) DO UPDATE SET issued_at = EXCLUDED.issued_at,
               observed_at = EXCLUDED.observed_at, fill = EXCLUDED.fill,
               slope_per_h = EXCLUDED.slope_per_h, hours_to_full = EXCLUDED.hours_to_full,
               full_at = EXCLUDED.full_at""",
        [
            (
                f.sensor_id,
                issued_at,
                f.observed_at,
                f.fill,
                _finite(f.slope_per_h),
                f.hours_to_full,
                f.full_at,
            )
            for f in forecasts
        ],
    )


# ----------------------------------------------------------------- reads


async def air_forecast(
    conn: asyncpg.Connection, subject_kind: str, subject_id: str
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT * FROM forecasts WHERE subject_kind = $1 AND subject_id = $2
           ORDER BY horizon_h""",
        subject_kind,
        subject_id,
    )
    return [dict(r) for r in rows]


async def sensor_kind(conn: asyncpg.Connection, sensor_id: str) -> str | None:
    kind: str | None = await conn.fetchval(
        "SELECT kind FROM sensors WHERE sensor_id = $1", sensor_id
    )
    return kind


async def bin_forecasts(conn: asyncpg.Connection, area_id: str | None) -> list[dict[str, Any]]:
    area = "TRUE" if area_id is None else f"s.area_id IN ({SUBTREE_SQL.format(param='$1')})"
    rows = await conn.fetch(
        f"""SELECT f.*, s.area_id FROM bin_forecasts f JOIN sensors s USING (sensor_id)
            WHERE {area} ORDER BY f.hours_to_full NULLS LAST, f.sensor_id""",
        *(() if area_id is None else (area_id,)),
    )
    return [dict(r) for r in rows]


# Each bin goes to its nearest active truck, placed where it last reported (or registered).
BINS_BY_TRUCK_SQL = """
WITH trucks AS (
    SELECT s.sensor_id, s.area_id,
           COALESCE(
               ST_SetSRID(ST_MakePoint((l."values"->>'lon')::float8,
                                       (l."values"->>'lat')::float8), 4326)::geography,
               s.location) AS at
    FROM sensors s LEFT JOIN sensor_latest l USING (sensor_id)
    WHERE s.kind = 'waste_truck' AND s.status = 'active'
)
SELECT t.sensor_id AS truck, t.area_id AS truck_area, f.sensor_id, f.fill, f.hours_to_full,
       f.full_at, ST_Distance(t.at, b.location) AS distance_m
FROM bin_forecasts f
JOIN sensors b ON b.sensor_id = f.sensor_id AND b.status = 'active' AND b.location IS NOT NULL
CROSS JOIN LATERAL (
    SELECT * FROM trucks WHERE trucks.at IS NOT NULL ORDER BY trucks.at <-> b.location LIMIT 1
) t
"""


async def bins_by_truck(
    conn: asyncpg.Connection, *, truck: str | None = None, area_id: str | None = None
) -> list[dict[str, Any]]:
    """Every forecast bin with its truck and its distance from it, for one truck or the trucks
    of an area."""
    if truck is not None:
        rows = await conn.fetch(f"{BINS_BY_TRUCK_SQL} WHERE t.sensor_id = $1", truck)
    else:
        subtree = SUBTREE_SQL.format(param="$1")
        rows = await conn.fetch(f"{BINS_BY_TRUCK_SQL} WHERE t.area_id IN ({subtree})", area_id)
    return [dict(r) for r in rows]


async def trucks_in(conn: asyncpg.Connection, area_id: str) -> list[str]:
    rows = await conn.fetch(
        f"""SELECT sensor_id FROM sensors WHERE kind = 'waste_truck' AND status = 'active'
            AND area_id IN ({SUBTREE_SQL.format(param="$1")}) ORDER BY sensor_id""",
        area_id,
    )
    return [r["sensor_id"] for r in rows]
