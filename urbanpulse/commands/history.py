"""``urbanpulse rollups run | backfill`` and ``urbanpulse retention run``: long-range history.

``rollups run`` keeps the hourly and daily rollups and the retention of every kind up to date
(README, "Long-range history").  With TimescaleDB's community edition it installs the
equivalent policies and leaves the work to TimescaleDB's own jobs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from urbanpulse.commands import EXIT_USAGE, CommandError, database
from urbanpulse.core.catalogue import KINDS, Kind
from urbanpulse.core.settings import DbRole, HistorySettings, Settings
from urbanpulse.runtime import StartupError, run_until_interrupted
from urbanpulse.storage.retention import apply_policies, apply_retention
from urbanpulse.storage.rollups import backfill_day, days_between, roll_up
from urbanpulse.storage.schema import detect_capabilities

log = logging.getLogger(__name__)

# Faults of one cycle that the next may not have: the server restarting, a lock timeout.
TRANSIENT = (OSError, StartupError, asyncpg.PostgresError, asyncpg.InterfaceError)


async def one_cycle(conn: asyncpg.Connection, history: HistorySettings) -> None:
    """Roll up what was stored since the last cycle, then apply retention, kind by kind."""
    margin = timedelta(seconds=history.commit_margin_s)
    for kind in KINDS.values():
        result = await roll_up(conn, kind, margin)
        if result.hours:
            log.info("%s: %d hour(s) and %d day(s) rolled up", kind.name, result.hours, result.days)
        await apply_retention(conn, kind, history.for_kind(kind.name))


async def run_rollups(settings: Settings, stop: asyncio.Event, once: bool) -> int:
    history = settings.history
    # The owner's: retention drops chunks and installs policies, which only a table's owner may.
    async with database(settings, DbRole.OWNER) as conn:
        capabilities = await detect_capabilities(conn)
        if capabilities.has_community_features:
            for kind in KINDS.values():
                await apply_policies(conn, kind, history)
            log.info("continuous aggregate and retention policies set; TimescaleDB runs them")
            return 0
        if once:
            await one_cycle(conn, history)
            return 0
    log.info("rolling up every %.0f s (Ctrl-C to stop)", history.interval_s)
    while not stop.is_set():
        try:
            async with database(settings, DbRole.OWNER) as conn:
                while not stop.is_set():
                    await one_cycle(conn, history)
                    await _wait(stop, history.interval_s)
        except TRANSIENT as exc:
            log.warning("rollup cycle failed (%s: %s); retrying", type(exc).__name__, exc)
            await _wait(stop, history.interval_s)
    return 0


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def parse_day(text: str) -> datetime:
    """An ISO 8601 date or instant; without an offset it is UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def backfill(settings: Settings, kinds: list[Kind], start: datetime, end: datetime) -> int:
    days = days_between(start, end)
    async with database(settings, DbRole.WRITER) as conn:
        if (await detect_capabilities(conn)).has_community_features:
            raise CommandError(
                "this database's rollups are continuous aggregates: use TimescaleDB's "
                "refresh_continuous_aggregate instead"
            )
        for kind in kinds:
            for number, day in enumerate(days, start=1):
                work = await backfill_day(conn, kind, day)
                sys.stdout.write(
                    f"{kind.name} {day:%Y-%m-%d} ({number}/{len(days)}): "
                    f"{len(work.hours)} sensor-hours, {len(work.days)} sensor-days"
                    + (f", {len(work.skipped)} hours skipped (raw dropped)" if work.skipped else "")
                    + "\n"
                )
                sys.stdout.flush()
    return 0


def cmd_rollups(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "run":
        return run_until_interrupted(lambda stop: run_rollups(settings, stop, args.once))
    if args.start is None or args.end is None:
        raise CommandError("`rollups backfill` needs --from and --to", EXIT_USAGE)
    if args.start >= args.end:
        raise CommandError("--from must be earlier than --to", EXIT_USAGE)
    kinds = [KINDS[args.kind]] if args.kind else list(KINDS.values())
    return asyncio.run(backfill(settings, kinds, args.start, args.end))


def cmd_retention(settings: Settings, _args: argparse.Namespace) -> int:
    async def main() -> None:
        async with database(settings, DbRole.OWNER) as conn:
            for kind in KINDS.values():
                for dropped in await apply_retention(
                    conn, kind, settings.history.for_kind(kind.name)
                ):
                    sys.stdout.write(f"{dropped.table}: {dropped.chunks} chunk(s) dropped\n")

    asyncio.run(main())
    return 0


def add_history_parsers(sub: Any) -> None:
    """``rollups`` and ``retention`` on the CLI's subparsers."""
    epilog = (
        "Settings: URBANPULSE_HISTORY__INTERVAL_S (60), __COMMIT_MARGIN_S (120), "
        "__RAW_DAYS (30), __HOURLY_DAYS (730), __DAILY_DAYS "
        '(unset: for ever), __KINDS=\'{"traffic_camera": {"raw_days": 7}}\'.'
    )
    text = "Hourly and daily rollups of every kind (for long charts)."
    rollups = sub.add_parser("rollups", help=text, description=text, epilog=epilog)
    rollups.set_defaults(handler=cmd_rollups)
    rollups.add_argument(
        "action",
        choices=["run", "backfill"],
        help="run: keep rollups and retention up to date until Ctrl-C; backfill: recompute "
        "the rollups of a range of days from raw readings",
    )
    rollups.add_argument("--once", action="store_true", help="run: one cycle, then exit")
    rollups.add_argument(
        "--from", dest="start", type=parse_day, help="backfill: first day (ISO 8601, UTC)"
    )
    rollups.add_argument(
        "--to", dest="end", type=parse_day, help="backfill: end, exclusive (ISO 8601, UTC)"
    )
    rollups.add_argument("--kind", choices=list(KINDS), help="backfill: only this kind")
    text = "Drop raw readings and rollups past their retention, once."
    retention = sub.add_parser("retention", help=text, description=text, epilog=epilog)
    retention.set_defaults(handler=cmd_retention)
    retention.add_argument("action", choices=["run"], help="apply every kind's retention once")
