"""``urbanpulse run``: bridges, processors and the API as processes under one supervisor."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from urbanpulse.commands import EXIT_USAGE, CommandError
from urbanpulse.core.settings import Settings
from urbanpulse.runtime import positive_float, positive_int, run_until_interrupted
from urbanpulse.supervisor import DEFAULT_BRIDGES, DEFAULT_PROCESSORS


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from urbanpulse.api.server import check_port_free
    from urbanpulse.storage.schema import migrate_as_owner
    from urbanpulse.supervisor import Supervisor, platform_children

    if args.bridges == 0 and args.processors == 0 and args.no_api:
        raise CommandError(
            "nothing to run: give --bridges or --processors, or drop --no-api", EXIT_USAGE
        )
    if not args.no_api:  # fail now, not after five restarts of the API
        check_port_free(settings.api.host, settings.api.port)
    # Processors write as a role that may not change the schema: bring it up to date first.
    asyncio.run(migrate_as_owner(settings))
    # Children take their settings from the environment; `--log-level` is an argument.
    env = {"URBANPULSE_LOG_LEVEL": args.log_level} if args.log_level else {}
    children = platform_children(
        args.bridges,
        args.processors,
        not args.no_api,
        env,
        first_bridge=args.first_bridge,
        metrics=settings.metrics,
    )
    supervisor = Supervisor(
        children, stop_timeout_s=args.stop_timeout, status_path=args.status_file
    )
    return run_until_interrupted(supervisor.run)


def count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def add_run_parser(subparsers: Any, epilog: str) -> None:
    text = (
        "Run bridges, processors and the API as separate processes until Ctrl-C: a child "
        "that crashes is restarted (with backoff; a crash loop stops the platform with exit "
        "code 1), and one Ctrl-C stops them all."
    )
    run = subparsers.add_parser("run", help=text, description=text, epilog=epilog)
    run.set_defaults(handler=cmd_run)
    run.add_argument(
        "--bridges",
        type=count,
        default=DEFAULT_BRIDGES,
        metavar="N",
        help=f"MQTT -> Kafka bridges ({DEFAULT_BRIDGES}); 0 on a machine without them",
    )
    run.add_argument(
        "--first-bridge",
        type=positive_int,
        default=1,
        metavar="I",
        help="instance number of the first bridge (1); the others count up from it. Bridges "
        "on several machines need distinct numbers: they become their MQTT client ids",
    )
    run.add_argument(
        "--processors",
        type=count,
        default=DEFAULT_PROCESSORS,
        metavar="M",
        help=f"stream processors in the one consumer group ({DEFAULT_PROCESSORS}); more than "
        "URBANPULSE_KAFKA__READINGS_PARTITIONS would leave the extra ones idle",
    )
    run.add_argument("--no-api", action="store_true", help="do not serve the API")
    run.add_argument(
        "--stop-timeout",
        type=positive_float,
        default=30.0,
        metavar="SECONDS",
        help="how long each child may take to stop after SIGTERM before SIGKILL (30)",
    )
    run.add_argument(
        "--status-file",
        type=Path,
        metavar="FILE",
        help="keep each child's pid, state and restart count in this JSON file",
    )
