"""The ``urbanpulse`` command.  Settings come from ``URBANPULSE_*`` environment variables."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import asyncpg
import orjson
from pydantic import ValidationError

from urbanpulse.alerts.command import add_rules_parser
from urbanpulse.areas_command import add_areas_parser
from urbanpulse.core.logs import configure_logging
from urbanpulse.core.settings import Settings
from urbanpulse.indices.command import add_index_parser
from urbanpulse.runtime import StartupError, positive_float, positive_int, run_until_interrupted
from urbanpulse.simulators.command import add_simulator_parsers

log = logging.getLogger("urbanpulse")

EPILOG = (
    "Settings come from the environment, e.g. URBANPULSE_DATABASE__PORT=5432, "
    "URBANPULSE_KAFKA__BOOTSTRAP_SERVERS=host:9092, URBANPULSE_STACK__DATA_DIR=/var/lib/urbanpulse."
)


# --- stack -------------------------------------------------------------------------------


def cmd_stack(settings: Settings, args: argparse.Namespace) -> int:
    from urbanpulse.stack import LocalStack, StackError, format_states

    stack = LocalStack(settings)
    try:
        if args.action == "up":
            stack.ensure_installed()
            states = stack.up()
        elif args.action == "down":
            stack.down()
            states = stack.status()
        else:
            states = [*stack.status(), stack.ingest_state()]
    except StackError as exc:
        log.error("%s", exc)
        return 1
    sys.stdout.write(format_states(states) + "\n")
    return 0 if args.action == "down" or all(s.running for s in states) else 3


# --- database and registry ------------------------------------------------------------------


def cmd_db_migrate(settings: Settings, _args: argparse.Namespace) -> int:
    from urbanpulse.storage.db import connect
    from urbanpulse.storage.schema import migrate

    async def main() -> None:
        conn = await connect(settings.database)
        try:
            caps = await migrate(conn)
        finally:
            await conn.close()
        sys.stdout.write(
            f"schema up to date; TimescaleDB {caps.timescaledb_version} ({caps.license} licence)\n"
        )

    asyncio.run(main())
    return 0


def cmd_sensors_import(settings: Settings, args: argparse.Namespace) -> int:
    from urbanpulse.storage import registry
    from urbanpulse.storage.db import connect

    try:
        sensors = registry.sensors_from_geojson(orjson.loads(Path(args.file).read_bytes()))
    except (OSError, orjson.JSONDecodeError, registry.RegistryFileError) as exc:
        log.error("cannot import %s: %s", args.file, exc)
        return 2

    async def main() -> None:
        conn = await connect(settings.database)
        try:
            async with conn.transaction():
                await registry.register(conn, sensors)
        finally:
            await conn.close()

    asyncio.run(main())
    sys.stdout.write(f"registered {len(sensors)} sensors from {args.file}\n")
    return 0


def cmd_keys(settings: Settings, args: argparse.Namespace) -> int:
    if args.action != "list" and not args.name:
        log.error("`keys %s` needs the key's NAME", args.action)
        return 2
    from urbanpulse.storage.db import connect
    from urbanpulse.storage.keys import Role, create_api_key, list_api_keys, revoke_api_key

    async def main() -> int:
        conn = await connect(settings.database)
        try:
            if args.action == "create":
                key = await create_api_key(conn, args.name, Role(args.role))
                sys.stdout.write(f"{key}\n")
                log.info("created %s key %r; it is shown only now", args.role, args.name)
            elif args.action == "revoke":
                if not await revoke_api_key(conn, args.name):
                    log.error("no active key named %r", args.name)
                    return 1
                sys.stdout.write(f"revoked {args.name}\n")
            else:
                for row in await list_api_keys(conn):
                    state = "revoked" if row["revoked_at"] else "active"
                    sys.stdout.write(f"{row['name']:<24} {row['role']:<9} {state}\n")
            return 0
        except asyncpg.UniqueViolationError:
            log.error("a key named %r exists already", args.name)
            return 1
        finally:
            await conn.close()

    return asyncio.run(main())


# --- services ------------------------------------------------------------------------------


def cmd_bridge(settings: Settings, _args: argparse.Namespace) -> int:
    from urbanpulse.ingest.service import run_bridge

    return run_until_interrupted(lambda stop: run_bridge(settings, stop))


def cmd_process(settings: Settings, _args: argparse.Namespace) -> int:
    from urbanpulse.stream.service import run_processor

    return run_until_interrupted(lambda stop: run_processor(settings, stop))


def cmd_api(settings: Settings, _args: argparse.Namespace) -> int:
    from urbanpulse.api.server import serve_api

    return run_until_interrupted(lambda stop: serve_api(settings, stop))


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from urbanpulse.demo import DemoOptions, run_demo

    options = DemoOptions(args.sensors, args.rate, args.seed, args.keep_stack)
    return run_until_interrupted(lambda stop: run_demo(settings, options, stop, sys.stdout))


# --- parser --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="urbanpulse",
        description="UrbanPulse: streaming IoT platform for city operations centers.",
        epilog=EPILOG,
    )
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR (default: settings)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Callable[..., int], text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=text, description=text, epilog=EPILOG)
        p.set_defaults(handler=handler)
        return p

    stack = add("stack", cmd_stack, "Install, start, inspect or stop the embedded local stack.")
    stack.add_argument(
        "action",
        choices=["up", "status", "down"],
        help="up: install what is missing and start Mosquitto, Kafka and TimescaleDB; "
        "status: show them; down: stop them",
    )

    db = add("db", cmd_db_migrate, "Database schema commands.")
    db.add_argument("action", choices=["migrate"], help="create or update the schema (idempotent)")

    sensors = add("sensors", cmd_sensors_import, "Sensor registry commands.")
    sensors.add_argument("action", choices=["import"], help="register sensors from a file")
    sensors.add_argument("file", help="GeoJSON FeatureCollection of Points with sensor_id, kind")

    keys = add("keys", cmd_keys, "API keys: create (shown once), list or revoke.")
    keys.add_argument("action", choices=["create", "list", "revoke"])
    keys.add_argument("name", nargs="?", help="the key's name (create, revoke)")
    keys.add_argument(
        "--role",
        choices=["viewer", "operator", "admin"],
        default="viewer",
        help="viewer reads; operator also acknowledges and resolves alerts; admin manages",
    )

    add("bridge", cmd_bridge, "Run the MQTT -> Kafka ingest bridge until Ctrl-C.")
    add("process", cmd_process, "Run the Kafka -> TimescaleDB stream processor until Ctrl-C.")
    add("api", cmd_api, "Serve the HTTP API until Ctrl-C.")

    add_simulator_parsers(sub)
    add_rules_parser(sub)
    add_index_parser(sub)
    add_areas_parser(sub)

    demo = add("demo", cmd_demo, "Run the whole platform with a simulated fleet until Ctrl-C.")
    demo.add_argument("--sensors", type=positive_int, default=50, help="fleet size (50)")
    demo.add_argument(
        "--rate", type=positive_float, default=100.0, help="readings per second (100)"
    )
    demo.add_argument("--seed", type=int, default=1, help="random seed (1)")
    demo.add_argument(
        "--keep-stack", action="store_true", help="leave the local stack running afterwards"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        sys.stderr.write(f"urbanpulse: invalid settings (URBANPULSE_* variables):\n{exc}\n")
        return 2
    configure_logging(args.log_level or settings.log_level, settings.log_format)
    handler: Callable[[Settings, argparse.Namespace], int] = args.handler
    try:
        return handler(settings, args)
    except StartupError as exc:
        log.error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
