"""Check a scenario's expectations against what the platform stored.

Each expectation type is one small query over the kind tables (or ``alerts``), restricted to
the sensors of this run (the engine knows which of them stand in which area), so runs sharing
a database never see each other's rows.  Before checking, ``wait_for_rows`` polls until every
distinct reading the run sent is stored, or a deadline passes.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import asyncpg

from urbanpulse.core.catalogue import KINDS
from urbanpulse.simulators.engine import ScenarioEngine
from urbanpulse.simulators.scenario import (
    AlertRaised,
    Expectation,
    HourlyMeanAbove,
    HourlyMeanBelow,
    HourlyPeak,
    MaxAbove,
    NoRowsFrom,
    RowsStored,
)

Status = Literal["met", "missed", "cannot check"]


@dataclass(frozen=True)
class Outcome:
    expectation: str
    status: Status
    detail: str

    def line(self) -> str:
        mark = {"met": "MET   ", "missed": "MISSED", "cannot check": "SKIP  "}[self.status]
        return f"{mark} {self.expectation}: {self.detail}"


async def stored_rows(
    conn: asyncpg.Connection,
    sensor_ids: list[str],
    kinds: set[str],
    since: datetime,
    until: datetime,
) -> int:
    """Rows of these sensors with event times in ``[since, until)``."""
    total = 0
    for kind in kinds:
        total += await conn.fetchval(
            f"SELECT count(*) FROM {KINDS[kind].table} "
            "WHERE sensor_id = ANY($1::text[]) AND ts >= $2 AND ts < $3",
            sensor_ids,
            since,
            until,
        )
    return total


async def stored_of(
    conn: asyncpg.Connection, engine: ScenarioEngine, sent: Iterable[tuple[str, datetime]]
) -> int:
    """How many of exactly these (sensor_id, ts) readings are stored.

    Counting the fleet's rows instead would be fooled by an earlier run of the same sensors.
    """
    kind_of = {s.sensor_id: s.kind for s in engine.sensors}
    by_kind: dict[str, list[tuple[str, datetime]]] = defaultdict(list)
    for sensor_id, ts in sent:
        by_kind[kind_of[sensor_id]].append((sensor_id, ts))
    total = 0
    for kind, pairs in by_kind.items():
        total += await conn.fetchval(
            f"SELECT count(*) FROM {KINDS[kind].table} t "
            "JOIN unnest($1::text[], $2::timestamptz[]) AS k(sensor_id, ts) USING (sensor_id, ts)",
            [sensor_id for sensor_id, _ in pairs],
            [ts for _, ts in pairs],
        )
    return total


async def wait_for_rows(
    conn: asyncpg.Connection,
    engine: ScenarioEngine,
    sent: set[tuple[str, datetime]],
    timeout_s: float,
) -> int:
    """Poll until every reading sent is stored or the deadline passes; return how many are."""
    deadline = time.monotonic() + timeout_s
    while True:
        count = await stored_of(conn, engine, sent)
        if count >= len(sent) or time.monotonic() > deadline:
            return count
        await asyncio.sleep(0.25)


def _hour(instant: datetime) -> datetime:
    return instant.replace(minute=0, second=0, microsecond=0)


async def _hourly(
    conn: asyncpg.Connection,
    kind: str,
    metric: str,
    ids: list[str],
    since: datetime,
    until: datetime,
) -> dict[datetime, float]:
    column = KINDS[kind].by_name[metric].column
    rows = await conn.fetch(
        f"""SELECT time_bucket('1 hour', ts) AS hour, avg({column}) AS mean
            FROM {KINDS[kind].table}
            WHERE sensor_id = ANY($1::text[]) AND ts >= $2 AND ts < $3 AND {column} IS NOT NULL
            GROUP BY hour ORDER BY hour""",
        ids,
        since,
        until,
    )
    return {r["hour"]: float(r["mean"]) for r in rows}


def _describe(expectation: Expectation) -> str:
    spec = expectation.spec
    fields = ", ".join(f"{k}={v}" for k, v in spec.model_dump(exclude_none=True).items())
    return f"{expectation.name}({fields})"


async def check(
    conn: asyncpg.Connection, engine: ScenarioEngine, expectation: Expectation
) -> Outcome:
    spec = expectation.spec
    name = _describe(expectation)
    start, end = engine.start, engine.end + timedelta(hours=1)

    def local(instant: datetime) -> str:
        return f"{instant + timedelta(hours=7):%H:%M}"

    if isinstance(spec, HourlyMeanAbove | HourlyMeanBelow):
        ids = engine.sensors_in(spec.area, spec.kind)
        by = engine.at(spec.by)
        means = await _hourly(conn, spec.kind, spec.metric, ids, start, end)
        eligible = {h: m for h, m in means.items() if h < by}
        if not eligible:
            return Outcome(name, "missed", "no hourly mean before the deadline")
        above = isinstance(spec, HourlyMeanAbove)
        hour, mean = (max if above else min)(eligible.items(), key=lambda item: item[1])
        ok = mean > spec.threshold if above else mean < spec.threshold
        word = "highest" if above else "lowest"
        return Outcome(
            name,
            "met" if ok else "missed",
            f"{word} hourly mean {mean:.2f} in the hour from {local(hour)} (local)",
        )
    if isinstance(spec, HourlyPeak):
        ids = engine.sensors_in(spec.area, spec.kind)
        means = await _hourly(conn, spec.kind, spec.metric, ids, start, end)
        peak, over = _hour(engine.at(spec.peak)), _hour(engine.at(spec.over))
        if peak not in means or over not in means:
            return Outcome(name, "missed", "no data for one of the two hours")
        ratio = means[peak] / means[over] if means[over] else float("inf")
        return Outcome(
            name,
            "met" if ratio > spec.ratio else "missed",
            f"{local(peak)} mean {means[peak]:.2f} vs {local(over)} mean {means[over]:.2f} "
            f"(ratio {ratio:.2f})",
        )
    if isinstance(spec, MaxAbove):
        ids = (
            [engine.sensor_id(spec.sensor)]
            if spec.sensor
            else engine.sensors_in(spec.area, spec.kind)
        )
        column = KINDS[spec.kind].by_name[spec.metric].column
        top = await conn.fetchval(
            f"SELECT max({column}) FROM {KINDS[spec.kind].table} "
            "WHERE sensor_id = ANY($1::text[]) AND ts >= $2 AND ts < $3",
            ids,
            start,
            end,
        )
        ok = top is not None and top > spec.threshold
        return Outcome(name, "met" if ok else "missed", f"maximum {top}")
    if isinstance(spec, RowsStored):
        ids = engine.sensors_in(spec.area, spec.kind)
        kinds = {spec.kind} if spec.kind else {s.kind for s in engine.sensors}
        count = await stored_rows(conn, ids, kinds, start, end)
        ok = count >= spec.at_least and (spec.at_most is None or count <= spec.at_most)
        return Outcome(name, "met" if ok else "missed", f"{count} rows stored")
    if isinstance(spec, NoRowsFrom):
        sensor_id = engine.sensor_id(spec.sensor)
        kind = spec.sensor.rsplit("-", 1)[0]
        since = engine.at(spec.since) if spec.since else start
        until = engine.at(spec.until) if spec.until else end
        count = await conn.fetchval(
            f"SELECT count(*) FROM {KINDS[kind].table} WHERE sensor_id = $1 AND ts >= $2 "
            "AND ts < $3",
            sensor_id,
            since,
            until,
        )
        return Outcome(
            name,
            "met" if count == 0 else "missed",
            f"{count} rows from {sensor_id} between {local(since)} and {local(until)}",
        )
    if isinstance(spec, AlertRaised):
        if await conn.fetchval("SELECT to_regclass('alerts')") is None:
            return Outcome(name, "cannot check", "alerts not available")
        after = engine.at(spec.after)
        ids = engine.sensors_in(spec.area)
        try:
            count = await conn.fetchval(
                """SELECT count(*) FROM alerts WHERE rule_id = $1
                   AND sensor_id = ANY($2::text[]) AND opened_at >= $3 AND opened_at <= $4""",
                spec.rule,
                ids,
                after,
                after + spec.within,
            )
        except asyncpg.PostgresError as exc:
            return Outcome(name, "cannot check", f"alerts table not as expected: {exc}")
        return Outcome(name, "met" if count else "missed", f"{count} alerts opened")
    raise AssertionError(f"unhandled expectation {expectation.name}")


async def check_all(
    conn: asyncpg.Connection,
    engine: ScenarioEngine,
    sent: set[tuple[str, datetime]],
    timeout_s: float = 60.0,
) -> tuple[int, list[Outcome]]:
    """Wait for the pipeline to store the run's readings, then check every expectation."""
    stored = await wait_for_rows(conn, engine, sent, timeout_s)
    outcomes = [await check(conn, engine, e) for e in engine.scenario.expect]
    return stored, outcomes
