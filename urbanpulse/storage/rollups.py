"""Hourly and daily rollups of every kind's readings, generated from the kind catalogue.

Each kind gets ``<table>_1h`` and ``<table>_1d`` (e.g. ``readings_air_1h``): one row per sensor
and bucket, primary key ``(sensor_id, bucket)``, with ``n`` (readings in the bucket) and, per
numeric field (metrics and numeric indices), ``<column>_sum``, ``_count``, ``_min`` and
``_max``.  Sums and counts rather than means: a day's mean is the count-weighted mean of its
hours (sum of sums / sum of counts), never a mean of means, and sums of counts (vehicles) are
what a traffic chart wants.  Integer fields keep exact ``bigint`` sums.  Buckets are UTC hours
and UTC days, as ``time_bucket`` cuts them for the API's raw path.

Two ways to keep them up to date, chosen by the licence of the TimescaleDB build:

- **apache** (Debian's build; no continuous aggregates or policies): plain hypertables that
  ``urbanpulse rollups run`` maintains.  Raw tables get ``stored_at`` (ingest time, set by the
  database at insert) with a BRIN index; each run recomputes exactly the (sensor, hour) buckets
  that readings stored since the last run's watermark fall in, however late their event time,
  then the days holding those hours from the hourly rows.  ``received_at`` would not do: it is
  the bridge's receipt time, so a processor catching up on a backlog stores rows whose
  ``received_at`` lies before a watermark already passed.  The watermark trails ``now()`` by
  ``commit_margin_s`` because ``stored_at`` is a transaction's start, which commits later.
- **timescale** (community edition): continuous aggregates with the same names and columns
  (real-time, so they include what is not materialised yet), refreshed by
  ``add_continuous_aggregate_policy``.  Only the SQL generated for this path is tested here:
  the Apache build cannot run it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import asyncpg

from urbanpulse.core.catalogue import KINDS, Kind

if TYPE_CHECKING:
    from urbanpulse.storage.schema import DatabaseCapabilities

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tier:
    name: str
    width: timedelta
    chunk: timedelta  # hypertable chunk interval: the unit in which retention drops rows

    @property
    def sql_width(self) -> str:
        return f"INTERVAL '{int(self.width.total_seconds())} seconds'"


HOURLY = Tier("1h", timedelta(hours=1), timedelta(days=30))
DAILY = Tier("1d", timedelta(days=1), timedelta(days=365))
TIERS = (HOURLY, DAILY)


@dataclass(frozen=True)
class RolledField:
    """A numeric per-reading column and what its rollup keeps of it."""

    name: str
    column: str
    integer: bool

    @property
    def sum_type(self) -> str:
        return "bigint" if self.integer else "double precision"

    @property
    def value_type(self) -> str:
        return "integer" if self.integer else "double precision"


def rolled_fields(kind: Kind) -> list[RolledField]:
    """Every numeric field of a kind's readings: its metrics, then its numeric indices."""
    fields = [RolledField(m.name, m.column, m.integer) for m in kind.metrics]
    fields += [
        RolledField(d.name, d.column, d.sql_type == "integer")
        for d in kind.derived
        if d.sql_type != "text"
    ]
    return fields


def rollup_table(kind: Kind, tier: Tier) -> str:
    return f"{kind.table}_{tier.name}"


def _columns(kind: Kind) -> list[tuple[str, str]]:
    """(column, type) of a rollup table after sensor_id and bucket, in order."""
    columns = [("n", "bigint")]
    for f in rolled_fields(kind):
        columns += [
            (f"{f.column}_sum", f.sum_type),
            (f"{f.column}_count", "bigint"),
            (f"{f.column}_min", f.value_type),
            (f"{f.column}_max", f.value_type),
        ]
    return columns


def _aggregates(kind: Kind, tier: Tier) -> str:
    """SELECT list computing a tier's columns: from raw rows (hourly) or hourly rows (daily)."""
    if tier is HOURLY:
        parts = ["count(*) AS n"]
        for f in rolled_fields(kind):
            c = f.column
            parts += [
                f"sum({c})::{f.sum_type} AS {c}_sum",
                f"count({c}) AS {c}_count",
                f"min({c}) AS {c}_min",
                f"max({c}) AS {c}_max",
            ]
    else:
        parts = ["sum(n)::bigint AS n"]
        for f in rolled_fields(kind):
            c = f.column
            parts += [
                f"sum({c}_sum)::{f.sum_type} AS {c}_sum",
                f"sum({c}_count)::bigint AS {c}_count",
                f"min({c}_min) AS {c}_min",
                f"max({c}_max) AS {c}_max",
            ]
    return ", ".join(parts)


def _source(kind: Kind, tier: Tier) -> tuple[str, str]:
    """The relation a tier is computed from, and its time column."""
    return (kind.table, "ts") if tier is HOURLY else (rollup_table(kind, HOURLY), "bucket")


# --------------------------------------------------------------------------- schema

STATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS rollup_state (
    kind              text PRIMARY KEY,
    -- readings stored (stored_at) up to here are in the rollups
    watermark         timestamptz NOT NULL DEFAULT '-infinity',
    -- raw rows are complete from here on (retention dropped older chunks)
    raw_complete_from timestamptz NOT NULL DEFAULT '-infinity',
    -- the rollups are real-time continuous aggregates: complete by themselves
    realtime          boolean NOT NULL DEFAULT false,
    updated_at        timestamptz NOT NULL DEFAULT now()
)
"""


def ingest_time_ddl(kind: Kind) -> list[str]:
    """``stored_at`` on a raw table: when the row was written, whatever its event time.

    ``now()`` is stable, so existing rows take the migration's time without a rewrite.  BRIN
    suits it: rows are appended in ingest order within each chunk.
    """
    return [
        f"ALTER TABLE {kind.table} ADD COLUMN IF NOT EXISTS stored_at timestamptz "
        "NOT NULL DEFAULT now()",
        f"CREATE INDEX IF NOT EXISTS {kind.table}_stored_at_brin ON {kind.table} "
        "USING brin (stored_at)",
    ]


def rollup_table_ddl(kind: Kind, tier: Tier) -> list[str]:
    """A rollup as a hypertable of our own (Apache build): ``drop_chunks`` applies to it."""
    table = rollup_table(kind, tier)
    statements = [
        f"""CREATE TABLE IF NOT EXISTS {table} (
            sensor_id text NOT NULL,
            bucket    timestamptz NOT NULL,
            PRIMARY KEY (sensor_id, bucket)
        )"""
    ]
    statements += [
        f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {sql_type}"
        for column, sql_type in _columns(kind)
    ]
    chunk = int(tier.chunk.total_seconds())
    statements.append(
        f"SELECT create_hypertable('{table}', by_range('bucket', INTERVAL '{chunk} seconds'), "
        "if_not_exists => TRUE)"
    )
    return statements


def continuous_aggregate_ddl(kind: Kind, tier: Tier) -> str:
    """A rollup as a real-time continuous aggregate (community edition); daily on hourly."""
    source, time_column = _source(kind, tier)
    bucket = f"time_bucket({tier.sql_width}, {time_column})"
    return (
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {rollup_table(kind, tier)} "
        "WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS "
        f"SELECT sensor_id, {bucket} AS bucket, {_aggregates(kind, tier)} "
        f"FROM {source} GROUP BY sensor_id, {bucket} WITH NO DATA"
    )


async def migrate_rollups(conn: asyncpg.Connection, capabilities: DatabaseCapabilities) -> None:
    """Create or update every kind's rollups; called by ``schema.migrate`` in its transaction."""
    realtime = capabilities.has_community_features
    await conn.execute(STATE_SCHEMA)
    for kind in KINDS.values():
        for statement in ingest_time_ddl(kind):
            await conn.execute(statement)
        for tier in TIERS:
            if realtime:
                await conn.execute(continuous_aggregate_ddl(kind, tier))
            else:
                for statement in rollup_table_ddl(kind, tier):
                    await conn.execute(statement)
        await conn.execute(
            "INSERT INTO rollup_state (kind, realtime) VALUES ($1, $2) "
            "ON CONFLICT (kind) DO UPDATE SET realtime = EXCLUDED.realtime",
            kind.name,
            realtime,
        )


# --------------------------------------------------------------------------- maintenance

Bucket = tuple[str, datetime]  # (sensor_id, bucket start)


def upsert_sql(kind: Kind, tier: Tier) -> str:
    """Recompute the given (sensor_id, bucket) pairs of a tier from its source, idempotently.

    $1 sensor ids and $2 bucket starts, as parallel arrays.
    """
    table = rollup_table(kind, tier)
    source, time_column = _source(kind, tier)
    names = ["sensor_id", "bucket", *(c for c, _ in _columns(kind))]
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in names[2:])
    return (
        f"INSERT INTO {table} ({', '.join(names)}) "
        f"SELECT t.sensor_id, t.bucket, {_aggregates(kind, tier)} "
        "FROM unnest($1::text[], $2::timestamptz[]) AS t(sensor_id, bucket) "
        f"JOIN {source} r ON r.sensor_id = t.sensor_id AND r.{time_column} >= t.bucket "
        f"AND r.{time_column} < t.bucket + {tier.sql_width} "
        "GROUP BY t.sensor_id, t.bucket "
        f"ON CONFLICT (sensor_id, bucket) DO UPDATE SET {updates}"
    )


def hours_stored_sql(kind: Kind) -> str:
    """(sensor_id, hour) of the readings stored in ($1, $2] by ingest time."""
    return (
        f"SELECT sensor_id, time_bucket({HOURLY.sql_width}, ts) AS bucket FROM {kind.table} "
        "WHERE stored_at > coalesce($1::timestamptz, '-infinity') AND stored_at <= $2 "
        "GROUP BY 1, 2"
    )


def hours_in_range_sql(kind: Kind) -> str:
    """(sensor_id, hour) of the readings with event time in [$1, $2)."""
    return (
        f"SELECT sensor_id, time_bucket({HOURLY.sql_width}, ts) AS bucket FROM {kind.table} "
        "WHERE ts >= $1 AND ts < $2 GROUP BY 1, 2"
    )


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def floor_to(moment: datetime, width: timedelta) -> datetime:
    """The start of the bucket holding ``moment``, as ``time_bucket`` cuts hours and days:
    from UTC midnight, whatever offset ``moment`` carries (a Hanoi day is not a bucket)."""
    return moment - (moment - EPOCH) % width


def ceil_to(moment: datetime, width: timedelta) -> datetime:
    start = floor_to(moment, width)
    return start if start == moment else start + width


@dataclass(frozen=True)
class RollupPlan:
    """What one run recomputes: hours (and the days holding them) and hours it must skip."""

    hours: list[Bucket]
    days: list[Bucket]
    skipped: list[Bucket]


def plan(touched: Iterable[Bucket], raw_complete_from: datetime | None) -> RollupPlan:
    """Hours to recompute from the hours that new readings fall in.

    An hour starting before ``raw_complete_from`` (None: raw rows were never dropped) lost
    raw rows to retention: recomputing it from what is left would overwrite a complete rollup
    with a partial one, so it is skipped.
    """
    hours: list[Bucket] = []
    skipped: list[Bucket] = []
    for sensor_id, hour in touched:
        complete = raw_complete_from is None or hour >= raw_complete_from
        (hours if complete else skipped).append((sensor_id, hour))
    days = sorted({(sensor_id, floor_to(hour, DAILY.width)) for sensor_id, hour in hours})
    return RollupPlan(sorted(hours), days, sorted(skipped))


# Buckets per statement: each statement reads at most this many buckets' rows, so that a first
# run over a long history stays within the connection's statement timeout.
BUCKETS_PER_STATEMENT = 5000


async def recompute(conn: asyncpg.Connection, kind: Kind, work: RollupPlan) -> None:
    """Rewrite the planned hours from raw rows, then their days from hourly rows."""
    for tier, buckets in ((HOURLY, work.hours), (DAILY, work.days)):
        for first in range(0, len(buckets), BUCKETS_PER_STATEMENT):
            batch = buckets[first : first + BUCKETS_PER_STATEMENT]
            await conn.execute(upsert_sql(kind, tier), [s for s, _ in batch], [b for _, b in batch])


@dataclass(frozen=True)
class RunResult:
    kind: str
    hours: int
    days: int
    skipped: int
    watermark: datetime


async def roll_up(conn: asyncpg.Connection, kind: Kind, commit_margin: timedelta) -> RunResult:
    """One run for one kind, in one transaction: what was stored since the watermark.

    The state row is locked first, so two jobs on one database take turns.
    """
    async with conn.transaction():
        state = await conn.fetchrow(
            "INSERT INTO rollup_state (kind) VALUES ($1) "
            "ON CONFLICT (kind) DO UPDATE SET updated_at = now() "
            "RETURNING nullif(watermark, '-infinity') AS watermark, "
            "nullif(raw_complete_from, '-infinity') AS raw_complete_from, "
            "now() - $2::interval AS upto",
            kind.name,
            commit_margin,
        )
        touched = await conn.fetch(hours_stored_sql(kind), state["watermark"], state["upto"])
        work = plan(((r["sensor_id"], r["bucket"]) for r in touched), state["raw_complete_from"])
        await recompute(conn, kind, work)
        await conn.execute(
            "UPDATE rollup_state SET watermark = greatest(watermark, $2) WHERE kind = $1",
            kind.name,
            state["upto"],
        )
    if work.skipped:
        log.warning(
            "%s: %d late hour(s) older than the raw retention were not rolled up (first: %s %s)",
            kind.name,
            len(work.skipped),
            *work.skipped[0],
        )
    return RunResult(kind.name, len(work.hours), len(work.days), len(work.skipped), state["upto"])


async def backfill_day(conn: asyncpg.Connection, kind: Kind, day: datetime) -> RollupPlan:
    """Recompute every hour of one UTC day that has readings, and the day itself."""
    async with conn.transaction():
        complete_from = await conn.fetchval(
            "SELECT nullif(raw_complete_from, '-infinity') FROM rollup_state WHERE kind = $1",
            kind.name,
        )
        rows = await conn.fetch(hours_in_range_sql(kind), day, day + DAILY.width)
        work = plan(((r["sensor_id"], r["bucket"]) for r in rows), complete_from)
        await recompute(conn, kind, work)
    return work


def days_between(start: datetime, end: datetime) -> list[datetime]:
    """The UTC days that overlap [start, end)."""
    day, days = floor_to(start, DAILY.width), []
    while day < end:
        days.append(day)
        day += DAILY.width
    return days


async def rolled_until(conn: asyncpg.Connection, kind: Kind) -> datetime | None:
    """Up to when (ingest time) the rollups hold every reading; None: nothing rolled up yet.

    Real-time continuous aggregates are complete by themselves: then the far future.
    """
    row = await conn.fetchrow(
        "SELECT nullif(watermark, '-infinity') AS watermark, realtime FROM rollup_state "
        "WHERE kind = $1",
        kind.name,
    )
    if row is None:
        return None
    if row["realtime"]:
        return datetime.max.replace(tzinfo=UTC)
    watermark: datetime | None = row["watermark"]
    return watermark


def bucket_reads(
    start: datetime, end: datetime, width: timedelta, until: datetime | None
) -> tuple[datetime, datetime]:
    """Which part of [start, end) a bucketed read takes from rollups: [a, b).

    Only whole buckets come from rollups, and only those before the bucket holding the
    watermark; the partial buckets at either end and the newest ones are computed from raw
    rows, so the answer is the same as from raw alone whenever raw rows exist.
    """
    a = min(ceil_to(start, width), end)
    if until is None:
        return a, a
    limit = min(floor_to(end, width), floor_to(until, width))
    return a, max(a, limit)
