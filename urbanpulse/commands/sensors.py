"""``urbanpulse sensors import``: register sensors from a GeoJSON file, saying what is wrong."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import orjson

from urbanpulse.commands import EXIT_USAGE, CommandError, database
from urbanpulse.core.settings import Settings
from urbanpulse.storage.registry import RegistryFileError, SensorRecord, sensors_from_geojson

MAX_WARNINGS = 20  # a file of a thousand misplaced sensors shows the pattern, not a flood


def read_sensor_file(path: Path) -> list[SensorRecord]:
    """The sensors of a GeoJSON file; a CommandError (usage) naming every problem otherwise."""
    try:
        return sensors_from_geojson(orjson.loads(path.read_bytes()))
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}", EXIT_USAGE) from None
    except orjson.JSONDecodeError as exc:
        raise CommandError(f"{path} is not JSON: {exc}", EXIT_USAGE) from None
    except RegistryFileError as exc:
        lines = [f"{path}: {len(exc.problems)} problem(s), so the file is refused:"]
        lines += [f"  {problem}" for problem in exc.problems]
        raise CommandError("\n".join(lines), EXIT_USAGE) from None


def cmd_sensors_import(settings: Settings, args: argparse.Namespace) -> int:
    from urbanpulse.storage.keys import cli_actor
    from urbanpulse.storage.sensor_admin import import_sensors

    sensors = read_sensor_file(Path(args.file))

    async def main() -> list[str]:
        async with database(settings.database) as conn:
            return await import_sensors(conn, sensors, cli_actor(), str(args.file))

    warnings = asyncio.run(main())
    for warning in warnings[:MAX_WARNINGS]:
        sys.stderr.write(f"warning: {warning}\n")
    if len(warnings) > MAX_WARNINGS:
        sys.stderr.write(f"warning: ... and {len(warnings) - MAX_WARNINGS} more such sensors\n")
    sys.stdout.write(f"registered {len(sensors)} sensors from {args.file}\n")
    return 0
