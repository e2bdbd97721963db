"""``urbanpulse forecast run | backtest``: refresh the stored forecasts, or measure their skill.

``run`` recomputes every forecast each ``URBANPULSE_FORECAST__INTERVAL_S`` seconds (README,
"Forecasts"); ``backtest`` prints, per horizon, each method's MAE and the model's skill
against persistence on weeks of simulated data.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg

from urbanpulse.commands import EXIT_USAGE, CommandError, database
from urbanpulse.core.settings import DbRole, Settings
from urbanpulse.runtime import StartupError, positive_int, run_until_interrupted
from urbanpulse.simulators.command import REPO_SCENARIOS
from urbanpulse.simulators.progress import Progress

log = logging.getLogger(__name__)

# Faults of one cycle that the next may not have: the server restarting, a lock timeout.
TRANSIENT = (OSError, StartupError, asyncpg.PostgresError, asyncpg.InterfaceError)


async def run_forecasts(settings: Settings, stop: asyncio.Event, once: bool) -> int:
    from urbanpulse.forecast.refresh import refresh

    interval = settings.forecast.interval_s
    if not once:
        log.info("refreshing forecasts every %.0f s (Ctrl-C to stop)", interval)
    while not stop.is_set():
        try:
            async with database(settings, DbRole.WRITER) as conn:
                while not stop.is_set():
                    result = await refresh(conn, settings.forecast, datetime.now(UTC))
                    log.info(
                        "forecasts stored: %d air subjects%s, %d bins",
                        result.air,
                        "" if result.trained else " (not enough history to train)",
                        result.bins,
                    )
                    if once:
                        return 0
                    await _wait(stop, interval)
        except TRANSIENT as exc:
            if once:
                raise
            log.warning("forecast cycle failed (%s: %s); retrying", type(exc).__name__, exc)
            await _wait(stop, interval)
    return 0


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def cmd_forecast_run(settings: Settings, args: argparse.Namespace) -> int:
    return run_until_interrupted(lambda stop: run_forecasts(settings, stop, args.once))


def shipped_air_scenarios() -> list[str]:
    """Names of the shipped scenarios whose fleet has air stations."""
    from urbanpulse.simulators.scenario import load_scenario

    return [
        path.stem
        for path in sorted(REPO_SCENARIOS.glob("*.yaml"))
        if any(e.kind == "air" for e in load_scenario(path).fleet)
    ]


def _days_of(progress: Progress) -> Callable[[int, int], None]:
    return lambda done, total: progress.update(done, f"day {done}/{total}")


def cmd_forecast_backtest(_settings: Settings, args: argparse.Namespace) -> int:
    from urbanpulse.forecast.backtest import backtest, format_table, weeks_of_air
    from urbanpulse.simulators.scenario import ScenarioError, load_scenario

    if args.weeks < 2:
        raise CommandError("--weeks must be at least 2: one to train on, one to test", EXIT_USAGE)
    names = args.scenario or shipped_air_scenarios()
    histories = []
    for number, name in enumerate(names):
        try:
            scenario = load_scenario(REPO_SCENARIOS / f"{name}.yaml")
        except ScenarioError as exc:
            raise CommandError(f"scenario {name!r}: {exc}", EXIT_USAGE) from None
        progress = Progress(f"simulating {name}", 7 * args.weeks)
        histories += weeks_of_air(
            scenario,
            args.weeks,
            args.seed + number,
            _days_of(progress),
        )
        progress.finish(f"{7 * args.weeks} days")
    if not histories:
        raise CommandError("no air stations in the chosen scenarios", EXIT_USAGE)
    sys.stderr.write(f"training and scoring on {len(histories)} stations...\n")
    result = backtest(histories, args.seed)
    sys.stdout.write(
        f"{result.stations} stations from {', '.join(names)}; seed {args.seed}; "
        f"trained on {result.train_hours} h, tested on the last {result.test_hours} h\n"
        "MAE of PM2.5 hourly means (µg/m³) per horizon; skill = 1 - MAE_model/MAE_persistence; "
        "served: the method the forecaster chose on its validation hours\n"
        f"{format_table(result)}\n"
    )
    return 0


def add_forecast_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "Forecasts: PM2.5 and VN_AQI 1-24 h ahead, bin fill times, collection lists."
    forecast = sub.add_parser("forecast", help=text, description=text)
    actions = forecast.add_subparsers(dest="action", metavar="ACTION", required=True)
    run = actions.add_parser(
        "run",
        help="refresh the stored forecasts every URBANPULSE_FORECAST__INTERVAL_S until Ctrl-C",
        description="Train on the stored hourly means, then store every station's, ward's and "
        "bin's forecast; repeat every URBANPULSE_FORECAST__INTERVAL_S seconds (900).",
    )
    run.add_argument("--once", action="store_true", help="refresh once and exit")
    run.set_defaults(handler=cmd_forecast_run)
    backtest = actions.add_parser(
        "backtest",
        help="print each method's MAE and the model's skill per horizon on simulated weeks",
        description="Simulate weeks of hourly air data from the shipped scenarios' fleets "
        "(deterministic for a seed, no MQTT), train on all weeks but the last, and print per "
        "horizon the MAE of persistence, same-hour-yesterday and the model, and the skill.",
    )
    backtest.add_argument("--weeks", type=positive_int, default=4, help="weeks simulated (4)")
    backtest.add_argument("--seed", type=int, default=1, help="random seed (1)")
    backtest.add_argument(
        "--scenario",
        action="append",
        metavar="NAME",
        help="a shipped scenario whose fleet to simulate (repeatable; default: every one "
        "with air stations)",
    )
    backtest.set_defaults(handler=cmd_forecast_backtest)
