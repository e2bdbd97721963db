"""The bulletin's I/O: hourly means of a local day from the readings, the ``bulletins`` table.

A day is the calendar day in Vietnam (UTC+7, no daylight saving); its 24 hours are whole UTC
hours too, so hourly means are plain ``date_trunc('hour', ts)`` buckets.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import asyncpg
import orjson

from urbanpulse.alerts.rules import RuleSet, load_rules
from urbanpulse.bulletin.compute import HOURS, Bulletin, StationDay, compute_bulletin
from urbanpulse.core.catalogue import KINDS
from urbanpulse.core.settings import Settings
from urbanpulse.indices.vn_aqi import POLLUTANTS
from urbanpulse.indices.vn_wqi import INPUTS, Combination

VIETNAM = timedelta(hours=7)
BULLETIN_KINDS = {"air": POLLUTANTS, "water": (*INPUTS, "temperature")}

SCHEMA = """
CREATE TABLE IF NOT EXISTS bulletins (
    day          date PRIMARY KEY,
    generated_at timestamptz NOT NULL DEFAULT now(),
    body         jsonb NOT NULL
);
"""


FIRST_DAY = date(1970, 1, 1)  # before it, no reading can exist (and UTC arithmetic may overflow)


def day_problem(day: date, now: datetime) -> str | None:
    """Why no bulletin can exist for ``day`` at ``now``, or None."""
    if day < FIRST_DAY:
        return f"{day} is before {FIRST_DAY}"
    if day > local_day_of(now):
        return f"{day} has not begun yet"
    return None


def day_span(day: date) -> tuple[datetime, datetime]:
    """The UTC instants bounding the local day ``day`` (00:00 to 24:00 in Vietnam)."""
    start = datetime.combine(day, time(0), UTC) - VIETNAM
    return start, start + timedelta(days=1)


def local_day_of(instant: datetime) -> date:
    return (instant.astimezone(UTC) + VIETNAM).date()


async def station_days(conn: asyncpg.Connection, day: date) -> list[StationDay]:
    """Each air and water station's 24 hourly means of ``day`` (only stations with data)."""
    start, end = day_span(day)
    stations: list[StationDay] = []
    for kind_name, metrics in BULLETIN_KINDS.items():
        kind = KINDS[kind_name]
        # Only what the catalogue measures (the WQI knows parameters no probe here reports).
        columns = [(m, kind.by_name[m].column) for m in metrics if m in kind.by_name]
        averages = ", ".join(f"avg(r.{col}) AS {col}" for _, col in columns)
        rows = await conn.fetch(
            f"SELECT r.sensor_id, s.area_id, date_trunc('hour', r.ts) AS hour, {averages} "
            f"FROM {kind.table} r LEFT JOIN sensors s USING (sensor_id) "
            "WHERE r.ts >= $1 AND r.ts < $2 GROUP BY 1, 2, 3 ORDER BY 1, 3",
            start,
            end,
        )
        by_sensor: dict[str, tuple[str | None, dict[str, list[float | None]]]] = {}
        for row in rows:
            area, hours = by_sensor.setdefault(
                row["sensor_id"], (row["area_id"], {m: [None] * HOURS for m, _ in columns})
            )
            hour = int((row["hour"] - start).total_seconds() // 3600)
            for metric, column in columns:
                hours[metric][hour] = row[column]
        for sensor_id, (area, hours) in by_sensor.items():
            present = {m: s for m, s in hours.items() if any(v is not None for v in s)}
            stations.append(StationDay(sensor_id, kind_name, area, present))
    return stations


async def build(
    conn: asyncpg.Connection, day: date, rules: RuleSet, combination: Combination
) -> Bulletin:
    return compute_bulletin(day, await station_days(conn, day), list(rules), combination)


def inputs_of(settings: Settings) -> tuple[RuleSet, Combination]:
    """The rule set (the limits) and WQI combination the platform runs with."""
    return load_rules(settings.alerts.rules_path), Combination(settings.stream.wqi_combination)


async def save(conn: asyncpg.Connection, bulletin: Bulletin) -> None:
    """Store ``bulletin`` (its table is made by the migration: the writer may not make tables)."""
    await conn.execute(
        "INSERT INTO bulletins (day, body) VALUES ($1, $2::jsonb) "
        "ON CONFLICT (day) DO UPDATE SET body = EXCLUDED.body, generated_at = now()",
        bulletin.day,
        orjson.dumps(bulletin.to_json()).decode(),
    )


async def stored(conn: asyncpg.Connection, day: date) -> dict[str, Any] | None:
    """The stored bulletin of ``day`` as JSON, or None (also when no bulletin was ever stored)."""
    exists = await conn.fetchval("SELECT to_regclass('bulletins') IS NOT NULL")
    if not exists:
        return None
    body = await conn.fetchval("SELECT body FROM bulletins WHERE day = $1", day)
    return None if body is None else dict(orjson.loads(body))
