"""``urbanpulse bulletin``: one day's bulletin on request, or the daily generation service."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import orjson

from urbanpulse.commands import EXIT_USAGE, CommandError, database
from urbanpulse.core.settings import DbRole, Settings
from urbanpulse.core.untrusted import preview
from urbanpulse.runtime import run_until_interrupted

log = logging.getLogger(__name__)

# The previous day's bulletin is generated this long after local midnight (late readings).
GRACE = timedelta(minutes=30)
CHECK_EVERY_S = 300.0


def parse_day(text: str) -> date:
    from urbanpulse.bulletin.store import day_problem

    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise CommandError(
            f"bulletin: {preview(text, 40)} is neither 'run' nor a date YYYY-MM-DD", EXIT_USAGE
        ) from None
    if (problem := day_problem(day, datetime.now(UTC))) is not None:
        raise CommandError(f"bulletin: {problem}", EXIT_USAGE)
    return day


def cmd_bulletin(settings: Settings, args: argparse.Namespace) -> int:
    if args.target == "run":
        return run_until_interrupted(lambda stop: run_daily(settings, stop))
    day = parse_day(args.target)
    from urbanpulse.bulletin import store
    from urbanpulse.bulletin.render import csv_text

    rules, combination = store.inputs_of(settings)

    async def main() -> dict[str, object]:
        async with database(settings, DbRole.WRITER if args.save else DbRole.READER) as conn:
            bulletin = await store.build(conn, day, rules, combination)
            if args.save:
                await store.save(conn, bulletin)
            return bulletin.to_json()

    body = asyncio.run(main())
    if args.csv:
        sys.stdout.write(csv_text(body))
    else:
        sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


async def run_daily(settings: Settings, stop: asyncio.Event) -> None:
    """Each day, once the previous local day is over (plus GRACE), store its bulletin."""
    from urbanpulse.bulletin import store

    rules, combination = store.inputs_of(settings)
    log.info("bulletin service: the previous day's bulletin %s after local midnight", GRACE)
    while not stop.is_set():
        now = datetime.now(UTC)
        yesterday = store.local_day_of(now - GRACE) - timedelta(days=1)
        try:
            async with database(settings, DbRole.WRITER) as conn:
                if await store.stored(conn, yesterday) is None:
                    await store.save(conn, await store.build(conn, yesterday, rules, combination))
                    log.info("bulletin of %s stored", yesterday)
        except Exception:  # a database hiccup must not end the service; retried next tick
            log.exception("bulletin of %s failed; retrying in %.0f s", yesterday, CHECK_EVERY_S)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), CHECK_EVERY_S)


AddCommand = Callable[[str, Callable[..., int], str], argparse.ArgumentParser]


def add_bulletin_parser(add: AddCommand) -> None:
    """Wire ``bulletin`` into the CLI through its ``add(name, handler, text)`` helper."""
    parser = add(
        "bulletin",
        cmd_bulletin,
        "Daily air and water bulletin: print one day's, or run the daily generation.",
    )
    parser.add_argument(
        "target",
        metavar="DATE|run",
        help="a local date YYYY-MM-DD: print its bulletin (computed now); 'run': store the "
        "previous day's bulletin in the bulletins table each day, until Ctrl-C",
    )
    parser.add_argument("--csv", action="store_true", help="print CSV instead of JSON")
    parser.add_argument("--save", action="store_true", help="also store it in the bulletins table")
