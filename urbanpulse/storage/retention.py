"""Retention per kind and tier: raw readings for days, rollups for months or years.

Apache build: ``drop_chunks`` on the raw hypertable and on the rollup hypertables, run by
``urbanpulse rollups run`` after each roll-up (or ``urbanpulse retention run``).  Raw chunks
are dropped only behind the rollup's watermark, and the oldest complete raw hour is recorded
so that the job never recomputes an hour from a partial set of raw rows.

Community edition: the same settings become TimescaleDB policies (``add_retention_policy``,
``add_continuous_aggregate_policy``); only the SQL generated for them is tested here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from urbanpulse.core.catalogue import Kind
from urbanpulse.core.settings import HistorySettings, KindHistory
from urbanpulse.storage.rollups import DAILY, HOURLY, Tier, rollup_table

log = logging.getLogger(__name__)

# Raw rows of the hour before the watermark may still be rolled up by the next run.
WATERMARK_GUARD = timedelta(hours=1)


def _days(days: float | None) -> timedelta | None:
    return None if days is None else timedelta(days=days)


def _tables(kind: Kind, policy: KindHistory) -> list[tuple[str, timedelta | None]]:
    """(table, keep) for each tier of a kind."""
    return [
        (kind.table, _days(policy.raw_days)),
        (rollup_table(kind, HOURLY), _days(policy.hourly_days)),
        (rollup_table(kind, DAILY), _days(policy.daily_days)),
    ]


@dataclass(frozen=True)
class Dropped:
    table: str
    chunks: int


async def apply_retention(
    conn: asyncpg.Connection, kind: Kind, policy: KindHistory
) -> list[Dropped]:
    """Drop the chunks of a kind's tiers that are past their retention (Apache build)."""
    dropped = []
    async with conn.transaction():
        # Locks the kind's state against a concurrent roll-up, which reads raw_complete_from.
        watermark = await conn.fetchval(
            "SELECT nullif(watermark, '-infinity') FROM rollup_state WHERE kind = $1 FOR UPDATE",
            kind.name,
        )
        for table, keep in _tables(kind, policy):
            if keep is None:
                continue
            if table == kind.table:
                if watermark is None:
                    log.warning("%s: raw rows kept until the rollup job has run once", kind.name)
                    continue
                cutoff = await conn.fetchval(
                    "SELECT least(now() - $1::interval, $2::timestamptz - $3::interval)",
                    keep,
                    watermark,
                    WATERMARK_GUARD,
                )
                await conn.execute(
                    "UPDATE rollup_state SET raw_complete_from = greatest(raw_complete_from, $2) "
                    "WHERE kind = $1",
                    kind.name,
                    cutoff,
                )
            else:
                cutoff = await conn.fetchval("SELECT now() - $1::interval", keep)
            chunks = await conn.fetch(
                "SELECT drop_chunks($1::regclass, older_than => $2::timestamptz)", table, cutoff
            )
            if chunks:
                log.info("%s: dropped %d chunk(s) older than %s", table, len(chunks), cutoff)
            dropped.append(Dropped(table, len(chunks)))
    return dropped


# --------------------------------------------------------------------------- community edition


def _interval(span: timedelta | None) -> str:
    return "NULL" if span is None else f"INTERVAL '{int(span.total_seconds())} seconds'"


def refresh_window(finer_keep: timedelta | None, tier: Tier) -> tuple[timedelta | None, timedelta]:
    """(start_offset, end_offset) of a continuous aggregate's refresh policy.

    The window must end before the data it reads is dropped: refreshing a bucket whose source
    rows are gone would empty it.  It ends one bucket before now (buckets still filling).
    """
    start = None if finer_keep is None else finer_keep - timedelta(days=1)
    return start, tier.width


def policy_statements(kind: Kind, settings: HistorySettings) -> list[str]:
    """Policies that keep a kind's continuous aggregates fresh and its tiers trimmed."""
    policy = settings.for_kind(kind.name)
    statements = []
    for tier, finer_keep in ((HOURLY, policy.raw_days), (DAILY, policy.hourly_days)):
        table = rollup_table(kind, tier)
        start, end = refresh_window(_days(finer_keep), tier)
        schedule = timedelta(seconds=settings.interval_s) if tier is HOURLY else tier.width / 24
        statements += [
            f"SELECT remove_continuous_aggregate_policy('{table}', if_exists => true)",
            f"SELECT add_continuous_aggregate_policy('{table}', start_offset => "
            f"{_interval(start)}, end_offset => {_interval(end)}, "
            f"schedule_interval => {_interval(schedule)})",
        ]
    for table, keep in _tables(kind, policy):
        statements.append(f"SELECT remove_retention_policy('{table}', if_exists => true)")
        if keep is not None:
            statements.append(
                f"SELECT add_retention_policy('{table}', drop_after => {_interval(keep)})"
            )
    return statements


async def apply_policies(conn: asyncpg.Connection, kind: Kind, settings: HistorySettings) -> None:
    """Replace a kind's policies with those the settings ask for (community edition)."""
    async with conn.transaction():
        for statement in policy_statements(kind, settings):
            await conn.execute(statement)
