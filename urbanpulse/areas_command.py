"""``urbanpulse areas``: import administrative areas from GeoJSON and list them.

Wire it into the main parser with ``add_areas_parser(subparsers)``; each action sets
``handler(settings, args) -> exit code``.  Exit codes: 0 done, 1 database unreachable or not
migrated, 2 bad file or arguments (the message names the feature and the problem).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import orjson

from urbanpulse.core.areas import AreaFileError
from urbanpulse.core.settings import DatabaseCredentialError, DbRole, Settings
from urbanpulse.data.areas import AREAS_DIR, shipped_area_paths

T = TypeVar("T")

IMPORT_HELP = (
    "Import administrative areas (provinces, wards/communes, former districts or any level a "
    "city defines) from GeoJSON FeatureCollections of Polygon/MultiPolygon features in WGS 84 "
    "lon/lat. Each feature's properties need area_id (or id), name and level (unless --level "
    "is given), and may have parent_id. Existing areas with the same id are updated, others "
    "are kept; afterwards every sensor's area is recomputed. Each file is imported in one "
    "transaction: a bad file changes nothing."
)
EPILOG = (
    "The database comes from the settings, e.g. URBANPULSE_DATABASE__HOST, "
    "URBANPULSE_DATABASE__PORT (run `urbanpulse db migrate` once before importing)."
)
LIST_HELP = "List the stored areas with their level, parent and number of sensors."


def add_areas_parser(subparsers: Any) -> None:
    """Register ``areas import`` and ``areas list`` on the main parser's subparsers."""
    areas = subparsers.add_parser(
        "areas",
        help="Import and list administrative areas (wards, provinces...).",
        description="Administrative areas: import them from GeoJSON, list them.",
        epilog=EPILOG,
    )
    actions = areas.add_subparsers(dest="areas_action", required=True, metavar="ACTION")

    importer = actions.add_parser(
        "import", help="import areas from GeoJSON files", description=IMPORT_HELP, epilog=EPILOG
    )
    importer.add_argument("files", nargs="*", type=Path, metavar="FILE", help="GeoJSON file(s)")
    importer.add_argument(
        "--level",
        help="level for every feature of the FILEs, overriding their own (e.g. ward, commune, "
        "province, former_district); not applied to --shipped",
    )
    importer.add_argument(
        "--shipped",
        action="store_true",
        help=f"import the shipped SCHEMATIC demo areas of central Ho Chi Minh City and Hanoi "
        f"({AREAS_DIR}); stand-ins for demos and tests, not legal boundaries",
    )
    importer.set_defaults(handler=cmd_areas_import)

    lister = actions.add_parser(
        "list", help="list the stored areas", description=LIST_HELP, epilog=EPILOG
    )
    lister.add_argument("--level", help="only areas of this level (e.g. ward)")
    lister.add_argument(
        "--geojson", action="store_true", help="print a GeoJSON FeatureCollection instead"
    )
    lister.set_defaults(handler=cmd_areas_list)


def cmd_areas_import(settings: Settings, args: argparse.Namespace) -> int:
    from urbanpulse.storage.areas import ImportReport, import_areas_file

    # --level is for the operator's files; the shipped files carry their own levels.
    files: list[tuple[Path, str | None]] = [
        *((path, None) for path in (shipped_area_paths() if args.shipped else [])),
        *((path, args.level) for path in args.files),
    ]
    if not files:
        return _fail(2, "urbanpulse areas import: give at least one FILE, or --shipped")

    async def run(conn: asyncpg.Connection) -> list[ImportReport]:
        reports = []
        for path, level in files:
            try:
                reports.append(await import_areas_file(conn, path, level))
            except AreaFileError as exc:
                raise AreaFileError(f"{path}: {exc}") from exc
            sys.stdout.write(reports[-1].summary() + "\n")
        return reports

    try:
        _run_with_connection(settings, DbRole.WRITER, run)
    except AreaFileError as exc:
        return _fail(2, f"urbanpulse areas import: error: {exc} (nothing from this file imported)")
    except _DatabaseUnavailable as exc:
        return _fail(1, f"urbanpulse areas import: {exc}")
    return 0


def cmd_areas_list(settings: Settings, args: argparse.Namespace) -> int:
    from urbanpulse.storage.areas import list_areas

    async def run(conn: asyncpg.Connection) -> list[dict[str, Any]]:
        return await list_areas(conn, args.level)

    try:
        areas = _run_with_connection(settings, DbRole.READER, run)
    except _DatabaseUnavailable as exc:
        return _fail(1, f"urbanpulse areas list: {exc}")
    if args.geojson:
        collection = {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "geometry": a["geometry"],
                    "properties": {k: v for k, v in a.items() if k != "geometry"},
                }
                for a in areas
            ],
        }
        sys.stdout.write(orjson.dumps(collection).decode() + "\n")
        return 0
    sys.stdout.write(format_area_table(areas))
    return 0


def format_area_table(areas: list[dict[str, Any]]) -> str:
    if not areas:
        return "no areas stored (import some with `urbanpulse areas import`)\n"
    header = ("AREA_ID", "LEVEL", "PARENT", "SENSORS", "NAME")
    rows = [
        (a["area_id"], a["level"], a["parent_id"] or "-", str(a["sensor_count"]), a["name"])
        for a in areas
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = [
        "  ".join([*(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)), r[4]])
        for r in [header, *rows]
    ]
    return "\n".join(lines) + f"\n{len(areas)} areas\n"


class _DatabaseUnavailable(Exception):
    pass


def _run_with_connection(
    settings: Settings, role: DbRole, work: Callable[[asyncpg.Connection], Awaitable[T]]
) -> T:
    from urbanpulse.storage.db import connect

    async def main() -> T:
        conn = await connect(settings, role)
        try:
            return await work(conn)
        finally:
            await conn.close()

    db = settings.database
    try:
        return asyncio.run(main())
    except asyncpg.UndefinedTableError as exc:
        raise _DatabaseUnavailable(
            f"the database has no areas table yet ({exc}): run `urbanpulse db migrate` first"
        ) from exc
    except (OSError, DatabaseCredentialError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise _DatabaseUnavailable(
            f"cannot use the database at {db.host}:{db.port}/{db.name}: {exc}"
        ) from exc


def _fail(code: int, message: str) -> int:
    sys.stderr.write(message + "\n")
    return code
