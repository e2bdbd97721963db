"""The ``simulate`` and ``scenario`` commands of the ``urbanpulse`` CLI."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from urbanpulse.commands import EXIT_FAILED, CommandError, database
from urbanpulse.core.catalogue import KINDS
from urbanpulse.core.mqtt_login import broker_port
from urbanpulse.core.settings import Settings
from urbanpulse.core.untrusted import preview
from urbanpulse.runtime import StartupError, positive_float, positive_int, run_until_interrupted

if TYPE_CHECKING:
    from urbanpulse.simulators.fleet import SimulatedSensor
    from urbanpulse.storage.registry import SensorRecord

log = logging.getLogger("urbanpulse")
_VN = timedelta(hours=7)  # Vietnamese local time, for the progress line

REPO_SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
EXIT_MISSED = 1
EXIT_INVALID = 2
DEFAULT_FLEET_SIZE = 20


def scenarios_dir(given: str | None) -> Path:
    if given:
        return Path(given)
    local = Path.cwd() / "scenarios"
    return local if local.is_dir() else REPO_SCENARIOS


# --------------------------------------------------------------------------- simulate


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    from urbanpulse.simulators.gateway import SimulationPlan
    from urbanpulse.simulators.live import run_simulation
    from urbanpulse.simulators.progress import Progress
    from urbanpulse.storage.registry import SensorRecord, sensors_to_geojson

    fleet = choose_fleet(settings, args)
    if args.fleet_out:
        records = [SensorRecord(s.sensor_id, s.kind, s.lat, s.lon) for s in fleet]
        Path(args.fleet_out).write_bytes(
            orjson.dumps(sensors_to_geojson(records), option=orjson.OPT_INDENT_2)
        )
        log.info("wrote the fleet to %s (load it with `urbanpulse sensors import`)", args.fleet_out)
    plan = SimulationPlan(fleet, args.rate, args.count, args.duration, args.seed)
    total = args.count or (args.duration * args.rate if args.duration else 0)
    progress = Progress(f"simulate {args.kind}", total or 1)

    def show(sent: int) -> None:
        if total:
            progress.update(sent, f"{sent} sent")
        elif sent % 1000 == 0:
            sys.stderr.write(f"published {sent}\n")

    async def main(stop: asyncio.Event) -> int:
        try:
            sent = await run_simulation(settings.mqtt, args.kind, plan, stop, show)
        except OSError as exc:
            address = f"{settings.mqtt.host}:{broker_port(settings.mqtt)}"
            raise StartupError(
                f"cannot reach the MQTT broker at {address} "
                f"({exc}); is the stack up (`urbanpulse stack up`) or URBANPULSE_MQTT__* right?"
            ) from None
        if total:
            progress.finish(f"{sent} sent")
        sys.stderr.write(f"published {sent} {args.kind} readings from {len(fleet)} sensors\n")
        return 0

    return run_until_interrupted(main)


def choose_fleet(settings: Settings, args: argparse.Namespace) -> list[SimulatedSensor]:
    """The sensors to simulate: from ``--fleet FILE``, registered in ``--area``, or a random
    fleet of ``--sensors`` in central Ho Chi Minh City."""
    from urbanpulse.commands.sensors import read_sensor_file
    from urbanpulse.simulators.fleet import FleetError, fleet_of_kind, place_sensors

    if args.fleet is not None:
        records, source = read_sensor_file(args.fleet), str(args.fleet)
    elif args.area is not None:
        records, source = asyncio.run(_registered(settings, args.area, args.kind)), args.area
    else:
        return place_sensors(args.kind, args.sensors or DEFAULT_FLEET_SIZE, args.seed)
    try:
        return fleet_of_kind(args.kind, records, source)
    except FleetError as exc:
        code = EXIT_INVALID if args.fleet is not None else EXIT_FAILED
        raise CommandError(str(exc), code) from None


async def _registered(settings: Settings, area_id: str, kind: str) -> list[SensorRecord]:
    from urbanpulse.storage.sensor_admin import UnknownAreaError, sensors_in_area

    async with database(settings.database) as conn:
        try:
            return await sensors_in_area(conn, area_id, kind)
        except UnknownAreaError:
            raise CommandError(
                f"unknown area {preview(area_id)} (see `urbanpulse areas list`)", EXIT_INVALID
            ) from None


# --------------------------------------------------------------------------- scenario


def _find(args: argparse.Namespace) -> Path:
    given = Path(args.name)
    if given.suffix in (".yaml", ".yml") or given.exists():
        return given
    return scenarios_dir(args.dir) / f"{args.name}.yaml"


def cmd_scenario_list(_settings: Settings, args: argparse.Namespace) -> int:
    from urbanpulse.simulators.scenario import ScenarioError, load_scenario

    directory = scenarios_dir(args.dir)
    files = sorted(directory.glob("*.yaml"))
    if not files:
        sys.stderr.write(f"no scenarios in {directory}\n")
        return 1
    bad = 0
    for path in files:
        try:
            scenario = load_scenario(path)
        except ScenarioError as exc:
            bad += 1
            sys.stdout.write(f"{path.stem:<28} INVALID: {exc.problems[0]}\n")
            continue
        sys.stdout.write(f"{scenario.name:<28} {scenario.description}\n")
    return EXIT_INVALID if bad else 0


def cmd_scenario_validate(_settings: Settings, args: argparse.Namespace) -> int:
    from urbanpulse.simulators.scenario import ScenarioError, load_scenario

    status = 0
    for name in args.files:
        try:
            load_scenario(name)
        except ScenarioError as exc:
            sys.stderr.write("\n".join(exc.problems) + "\n")
            status = EXIT_INVALID
        else:
            sys.stdout.write(f"{name}: valid\n")
    return status


def cmd_scenario_run(settings: Settings, args: argparse.Namespace) -> int:
    from urbanpulse.simulators.scenario import ScenarioError, load_scenario

    try:
        scenario = load_scenario(_find(args))
    except ScenarioError as exc:
        sys.stderr.write("\n".join(exc.problems) + "\n")
        return EXIT_INVALID

    async def main(stop: asyncio.Event) -> int:
        report = await run_and_check(
            settings,
            scenario,
            stop,
            speed=args.speed,
            check=args.check,
            register=not args.no_register,
            seed=args.seed,
            record=Path(args.record) if args.record else None,
            check_timeout_s=args.check_timeout,
        )
        sys.stdout.write(report.text + "\n")
        return report.exit_code

    return run_until_interrupted(main)


class RunReport:
    def __init__(self, text: str, exit_code: int, summary: Any, outcomes: list[Any]) -> None:
        self.text = text
        self.exit_code = exit_code
        self.summary = summary
        self.outcomes = outcomes


async def run_and_check(
    settings: Settings,
    scenario: Any,
    stop: asyncio.Event,
    *,
    speed: float | None = None,
    check: bool = False,
    register: bool = True,
    seed: int | None = None,
    prefix: str | None = None,
    record: Path | None = None,
    check_timeout_s: float = 60.0,
    progress_stream: Any = None,
) -> RunReport:
    """Run a scenario against the running platform; with ``check``, evaluate its expectations."""
    from urbanpulse.simulators.engine import ScenarioEngine
    from urbanpulse.simulators.expectations import check_all
    from urbanpulse.simulators.progress import Progress
    from urbanpulse.simulators.recorder import Recorder
    from urbanpulse.simulators.runner import (
        future_warning,
        now_utc,
        prepare_database,
        run_engine,
    )
    from urbanpulse.storage.db import connect

    speed = speed or scenario.speed
    now = now_utc()
    engine = ScenarioEngine(
        scenario, scenario.start_at(now), settings.mqtt.topic_root, prefix=prefix, seed=seed
    )
    if warning := future_warning(engine, speed, now, settings.ingest.max_future_skew_s):
        log.warning("%s", warning)
    if register:
        await prepare_database(settings, engine)
    recorder = None
    if record is not None:
        recorder = Recorder(settings.mqtt, record)
        await asyncio.to_thread(recorder.start)
    sim_total = scenario.duration.total_seconds()
    progress = Progress(f"{scenario.name} x{speed:g}", sim_total, progress_stream)

    def show(summary: Any, done: Any) -> None:
        elapsed = (done - engine.start).total_seconds()
        progress.update(elapsed, f"{summary.messages} sent, sim {done + _VN:%H:%M} local")

    summary = await run_engine(settings, engine, speed, stop, on_progress=show)
    progress.finish(f"{summary.messages} sent")
    if recorder is not None:
        await asyncio.to_thread(recorder.wait_for, summary.messages + summary.status_messages, 30.0)
        recorder.stop()
    lines = [f"scenario {scenario.name}: " + summary.text()]
    if recorder is not None:
        lines.append(f"  recorded {recorder.count} messages to {record}")
    outcomes: list[Any] = []
    exit_code = 0
    if check and not summary.interrupted:
        conn = await connect(settings.database)
        try:
            stored, outcomes = await check_all(conn, engine, summary.keys, check_timeout_s)
        finally:
            await conn.close()
        lines.append(f"  stored {stored} of {len(summary.keys)} distinct readings sent")
        lines += ["  " + o.line() for o in outcomes]
        missed = [o for o in outcomes if o.status == "missed"]
        lines.append(
            f"expectations: {len(outcomes) - len(missed)} of {len(outcomes)} met or unchecked, "
            f"{len(missed)} missed"
        )
        exit_code = EXIT_MISSED if missed else 0
    return RunReport("\n".join(lines), exit_code, summary, outcomes)


def cmd_scenario_record(settings: Settings, args: argparse.Namespace) -> int:
    from urbanpulse.simulators.recorder import Recorder

    out = Path(args.out)

    async def main(stop: asyncio.Event) -> int:
        recorder = Recorder(settings.mqtt, out)
        await asyncio.to_thread(recorder.start)
        sys.stderr.write(f"recording {settings.mqtt.topic_root}/# to {out}; Ctrl-C stops\n")
        try:
            await asyncio.wait_for(stop.wait(), timeout=args.duration)
        except TimeoutError:
            pass
        finally:
            recorder.stop()
        sys.stderr.write(f"recorded {recorder.count} messages to {out}\n")
        return 0

    return run_until_interrupted(main)


def cmd_scenario_replay(settings: Settings, args: argparse.Namespace) -> int:
    from urbanpulse.simulators.progress import Progress
    from urbanpulse.simulators.recorder import RecordingError, replay

    rename = None
    if args.rename:
        old, _, new = args.rename.partition("=")
        rename = (old, new)
    progress = Progress(f"replay x{args.speed:g}", 1)

    def show(sent: int, total: int) -> None:
        progress.total = total
        progress.update(sent, f"{sent}/{total}")

    async def main(stop: asyncio.Event) -> int:
        try:
            sent = await replay(
                settings.mqtt,
                Path(args.file),
                stop,
                speed=args.speed,
                rename=rename,
                on_progress=show,
            )
        except RecordingError as exc:
            sys.stderr.write(f"{exc}\n")
            return EXIT_INVALID
        progress.finish(f"{sent} sent")
        sys.stderr.write(f"replayed {sent} messages from {args.file}\n")
        return 0

    return run_until_interrupted(main)


# --------------------------------------------------------------------------- parsers


def add_simulator_parsers(subparsers: Any) -> None:
    """Register ``simulate`` and ``scenario`` on the CLI's sub-command parsers."""
    text = "Publish live simulated readings of one kind over MQTT (timestamped now)."
    simulate = subparsers.add_parser("simulate", help=text, description=text)
    simulate.set_defaults(handler=cmd_simulate)
    simulate.add_argument("kind", choices=list(KINDS), help="sensor family to simulate")
    fleet = simulate.add_mutually_exclusive_group()
    fleet.add_argument(
        "--sensors",
        type=positive_int,
        help=f"size of a random fleet in central Ho Chi Minh City ({DEFAULT_FLEET_SIZE})",
    )
    fleet.add_argument(
        "--fleet",
        type=Path,
        metavar="FILE",
        help="simulate the KIND sensors of this GeoJSON file (the format of `sensors import`)",
    )
    fleet.add_argument(
        "--area",
        metavar="AREA_ID",
        help="simulate the registered KIND sensors (not retired) in this area or below it",
    )
    simulate.add_argument(
        "--rate", type=positive_float, default=20.0, help="readings per second, whole fleet (20)"
    )
    simulate.add_argument("--count", type=positive_int, help="stop after this many readings")
    simulate.add_argument("--duration", type=positive_float, help="stop after this many seconds")
    simulate.add_argument("--seed", type=int, default=1, help="random seed (1)")
    simulate.add_argument("--fleet-out", help="also write the fleet as GeoJSON to this file")

    text = "Scenarios: scripted, accelerated days of the city (see scenarios/README.md)."
    scenario = subparsers.add_parser("scenario", help=text, description=text)
    actions = scenario.add_subparsers(dest="scenario_action", required=True, metavar="ACTION")

    def add(name: str, handler: Callable[..., int], help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = actions.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    listing = add("list", cmd_scenario_list, "List the shipped scenarios, one line each.")
    listing.add_argument("--dir", help="scenario directory (default: ./scenarios)")

    validate = add("validate", cmd_scenario_validate, "Check scenario files; name every problem.")
    validate.add_argument("files", nargs="+", help="scenario YAML files")

    run = add(
        "run",
        cmd_scenario_run,
        "Publish a scenario over MQTT to the running platform (start it with `urbanpulse demo` "
        "or the bridge and processor), accelerated.",
    )
    run.add_argument("name", help="scenario name (from `scenario list`) or a YAML file")
    run.add_argument("--dir", help="scenario directory (default: ./scenarios)")
    run.add_argument(
        "--speed", type=positive_float, help="simulated seconds per wall second (the file's)"
    )
    run.add_argument(
        "--check",
        action="store_true",
        help="afterwards wait for the pipeline and check the expectations; exit 1 on a miss",
    )
    run.add_argument(
        "--no-register",
        action="store_true",
        help="do not register the fleet first (tests the platform's provisioning)",
    )
    run.add_argument("--seed", type=int, help="override the scenario's seed")
    run.add_argument("--record", help="also record what crosses the broker to this file")
    run.add_argument(
        "--check-timeout",
        type=positive_float,
        default=120.0,
        help="seconds to wait for the pipeline to store the run (120)",
    )

    record = add("record", cmd_scenario_record, "Record what crosses the broker to a file.")
    record.add_argument("--out", default="recording.jsonl", help="file (recording.jsonl)")
    record.add_argument("--duration", type=positive_float, help="stop after this many seconds")

    replay = add("replay", cmd_scenario_replay, "Publish a recording again, at its pace or faster.")
    replay.add_argument("file", help="a recording made by `scenario record` or `run --record`")
    replay.add_argument(
        "--speed", type=positive_float, default=1.0, help="times the original pace (1)"
    )
    replay.add_argument(
        "--rename",
        metavar="OLD=NEW",
        help="replace the sensor-id prefix OLD with NEW (replay beside the original)",
    )
