"""The ``urbanpulse`` command.  Settings come from ``URBANPULSE_*`` environment variables."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from argparse import Namespace
from collections.abc import Callable

import asyncpg
from pydantic import ValidationError

from urbanpulse.alerts.command import add_rules_parser
from urbanpulse.areas_command import add_areas_parser
from urbanpulse.commands import EXIT_FAILED, EXIT_USAGE, CommandError, database
from urbanpulse.commands.bulletin import add_bulletin_parser
from urbanpulse.commands.forecast import add_forecast_parser
from urbanpulse.commands.gateways import add_gateways_parser
from urbanpulse.commands.history import add_history_parsers
from urbanpulse.commands.run import add_run_parser
from urbanpulse.commands.sensors import cmd_sensors_import
from urbanpulse.core.logs import LEVELS, configure_logging
from urbanpulse.core.mqtt_login import MqttLoginError
from urbanpulse.core.settings import DbRole, Settings
from urbanpulse.grafana.command import add_grafana_parser
from urbanpulse.indices.command import add_index_parser
from urbanpulse.runtime import StartupError, positive_float, positive_int, run_until_interrupted
from urbanpulse.simulators.command import add_simulator_parsers
from urbanpulse.supervisor import DEFAULT_BRIDGES, DEFAULT_PROCESSORS

log = logging.getLogger("urbanpulse")

# Failures of the environment rather than of the code: a server down or refusing us (no such
# database, a role without the grant), a file that cannot be read or written.  They get one
# line, not a traceback.
ENVIRONMENT_ERRORS = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidCatalogNameError,
    asyncpg.CannotConnectNowError,
    asyncpg.InsufficientPrivilegeError,
)

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
    if args.action == "status":
        from urbanpulse.stack.rates import rates_table

        sys.stdout.write("\n" + rates_table(settings.metrics) + "\n")
    return 0 if args.action == "down" or all(s.running for s in states) else 3


# --- database and registry ------------------------------------------------------------------


def cmd_db_migrate(settings: Settings, _args: argparse.Namespace) -> int:
    from urbanpulse.storage.schema import migrate_as_owner

    async def main() -> None:
        caps = await migrate_as_owner(settings)
        sys.stdout.write(
            f"schema up to date; TimescaleDB {caps.timescaledb_version} ({caps.license} licence)\n"
        )

    asyncio.run(main())
    return 0


def cmd_keys(settings: Settings, args: argparse.Namespace) -> int:
    if args.action != "list" and not args.name:
        raise CommandError(f"`keys {args.action}` needs the key's NAME", EXIT_USAGE)
    from urbanpulse.storage.keys import Role, cli_actor, issue_key, list_api_keys, withdraw_key

    async def main() -> None:
        async with database(settings, DbRole.API) as conn:
            if args.action == "create":
                key = await issue_key(conn, cli_actor(), args.name, Role(args.role))
                sys.stdout.write(f"{key}\n")
                log.info("created %s key %r; it is shown only now", args.role, args.name)
            elif args.action == "revoke":
                if await withdraw_key(conn, cli_actor(), args.name) is None:
                    raise CommandError(f"no active key named {args.name!r}")
                sys.stdout.write(f"revoked {args.name}\n")
            else:
                for row in await list_api_keys(conn):
                    state = "revoked" if row["revoked_at"] else "active"
                    sys.stdout.write(f"{row['name']:<24} {row['role']:<9} {state}\n")

    try:
        asyncio.run(main())
    except asyncpg.UniqueViolationError:
        raise CommandError(f"a key named {args.name!r} exists already") from None
    return 0


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

    options = DemoOptions(
        args.sensors, args.rate, args.seed, args.keep_stack, args.bridges, args.processors
    )
    return run_until_interrupted(lambda stop: run_demo(settings, options, stop, sys.stdout))


# --- parser --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="urbanpulse",
        description="UrbanPulse: streaming IoT platform for city operations centers.",
        epilog=EPILOG,
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LEVELS,
        metavar="LEVEL",
        help=f"one of {', '.join(LEVELS)}, any case (default: URBANPULSE_LOG_LEVEL or INFO)",
    )
    # Not required here: parse_command_line names an unknown option before a missing COMMAND.
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, handler: Callable[..., int], text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=text, description=text, epilog=EPILOG)
        p.set_defaults(handler=handler)
        return p

    stack = add("stack", cmd_stack, "Install, start, inspect or stop the embedded local stack.")
    stack.add_argument(
        "action",
        choices=["up", "status", "down"],
        help="up: install what is missing and start Mosquitto, Kafka and TimescaleDB; "
        "status: show them, and the rates and Kafka consumer lag of the bridges and processors "
        "running here (from their /metrics); down: stop them",
    )

    db = add("db", cmd_db_migrate, "Database schema commands.")
    db.add_argument("action", choices=["migrate"], help="create or update the schema (idempotent)")

    sensors = add("sensors", cmd_sensors_import, "Sensor registry commands.")
    sensors.add_argument(
        "action",
        choices=["import"],
        help="register (or update) sensors from a file, in one transaction: a file with a bad "
        "feature changes nothing and every bad feature is named; a sensor outside every stored "
        "area is registered with a warning; each sensor is audited (action sensor.import)",
    )
    sensors.add_argument(
        "file", help="GeoJSON FeatureCollection of Points [lon, lat] with sensor_id and kind"
    )

    keys = add(
        "keys",
        cmd_keys,
        "API keys: create (shown once), list or revoke; changes are audited, and revoking a "
        "key closes its live-feed connections.",
    )
    keys.add_argument("action", choices=["create", "list", "revoke"])
    keys.add_argument("name", nargs="?", help="the key's name (create, revoke)")
    keys.add_argument(
        "--role",
        choices=["viewer", "operator", "admin"],
        default="viewer",
        help="viewer reads; operator also acknowledges and resolves alerts; admin manages",
    )

    add_gateways_parser(sub, EPILOG)

    add("bridge", cmd_bridge, "Run the MQTT -> Kafka ingest bridge until Ctrl-C.")
    add("process", cmd_process, "Run the Kafka -> TimescaleDB stream processor until Ctrl-C.")
    add("api", cmd_api, "Serve the HTTP API until Ctrl-C.")
    add_run_parser(sub, EPILOG)

    add_simulator_parsers(sub)
    add_rules_parser(sub)
    add_index_parser(sub)
    add_areas_parser(sub)
    add_grafana_parser(sub)
    add_history_parsers(sub)
    add_bulletin_parser(add)
    add_forecast_parser(sub)

    demo = add(
        "demo",
        cmd_demo,
        "Run the whole platform (as `urbanpulse run` does) with a simulated fleet until Ctrl-C.",
    )
    demo.add_argument("--sensors", type=positive_int, default=50, help="fleet size (50)")
    demo.add_argument(
        "--rate", type=positive_float, default=100.0, help="readings per second (100)"
    )
    demo.add_argument("--seed", type=int, default=1, help="random seed (1)")
    demo.add_argument(
        "--keep-stack", action="store_true", help="leave the local stack running afterwards"
    )
    demo.add_argument(
        "--bridges",
        type=positive_int,
        default=DEFAULT_BRIDGES,
        help=f"bridge processes ({DEFAULT_BRIDGES})",
    )
    demo.add_argument(
        "--processors",
        type=positive_int,
        default=DEFAULT_PROCESSORS,
        help=f"processor processes ({DEFAULT_PROCESSORS})",
    )
    return parser


def parse_command_line(parser: argparse.ArgumentParser, argv: list[str] | None) -> Namespace:
    """Arguments, or exit 2 with the usage and a message naming what is wrong.

    argparse alone answers ``urbanpulse --bogus`` with "required: COMMAND"; the unknown option
    is the mistake worth naming.
    """
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        what = "unknown option" if unknown[0].startswith("-") else "unexpected argument"
        scope = f"urbanpulse {args.command}" if args.command else "urbanpulse"
        parser.error(f"{what} {' '.join(unknown)} (see `{scope} --help`)")
    if args.command is None:
        parser.error("give a COMMAND (see `urbanpulse --help`)")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run one command.  A user's mistake (bad arguments or files, a server that cannot be
    reached) ends in a one-line message and exit code 2 (usage) or 1; anything else is a bug
    and keeps its traceback."""
    args = parse_command_line(build_parser(), argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        sys.stderr.write(f"urbanpulse: invalid settings (URBANPULSE_* variables):\n{exc}\n")
        return EXIT_USAGE
    try:
        configure_logging(args.log_level or settings.log_level, settings.log_format)
    except ValueError as exc:
        return _fail(EXIT_USAGE, f"urbanpulse: invalid URBANPULSE_LOG_LEVEL: {exc}")
    handler: Callable[[Settings, argparse.Namespace], int] = args.handler
    try:
        return handler(settings, args)
    except KeyboardInterrupt:
        return 130
    except CommandError as exc:
        return _fail(exc.exit_code, f"urbanpulse {args.command}: {exc}")
    except (StartupError, MqttLoginError) as exc:
        return _fail(EXIT_FAILED, f"urbanpulse {args.command}: {exc}")
    except ENVIRONMENT_ERRORS as exc:
        return _fail(EXIT_FAILED, f"urbanpulse {args.command}: {type(exc).__name__}: {exc}")
    except asyncpg.UndefinedTableError as exc:
        return _fail(
            EXIT_FAILED, f"urbanpulse {args.command}: {exc}; run `urbanpulse db migrate` first"
        )
    except Exception:
        sys.stderr.write(
            f"urbanpulse {args.command}: unexpected error, probably a bug; "
            "please report it with this traceback:\n"
        )
        raise


def _fail(code: int, message: str) -> int:
    sys.stderr.write(f"{message}\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
