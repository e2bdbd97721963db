"""Administrative areas in the database, and each sensor's area by point-in-polygon.

Areas are imported from GeoJSON (``urbanpulse.core.areas`` parses and validates); a sensor's
``area_id`` is computed with ``AreaIndex.locate`` and recomputed whenever areas change, so a city
that redraws its wards only imports the new shapes.  An import adds and updates areas; it never
deletes the ones the file does not mention.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import shapely

from urbanpulse.core.areas import (
    AreaFileError,
    AreaIndex,
    AreaRecord,
    areas_from_geojson,
    normalise_level,
)

UPSERT_SQL = """
INSERT INTO areas AS a (area_id, name, level, parent_id, geom, properties)
SELECT u.area_id, u.name, u.level, u.parent_id,
       ST_Multi(ST_SetSRID(ST_GeomFromWKB(u.wkb), 4326)), u.properties
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::jsonb[])
     AS u(area_id, name, level, parent_id, wkb, properties)
ON CONFLICT (area_id) DO UPDATE
SET name = EXCLUDED.name, level = EXCLUDED.level, parent_id = EXCLUDED.parent_id,
    geom = EXCLUDED.geom, properties = EXCLUDED.properties
WHERE (a.name, a.level, a.parent_id, a.properties) IS DISTINCT FROM
      (EXCLUDED.name, EXCLUDED.level, EXCLUDED.parent_id, EXCLUDED.properties)
   OR NOT ST_OrderingEquals(a.geom, EXCLUDED.geom)
RETURNING (xmax = 0) AS inserted
"""

ASSIGN_SQL = """
UPDATE sensors AS s
SET area_id = u.area_id, updated_at = now()
FROM unnest($1::text[], $2::text[]) AS u(sensor_id, area_id)
WHERE s.sensor_id = u.sensor_id AND s.area_id IS DISTINCT FROM u.area_id
"""

LIST_SQL = """
WITH RECURSIVE within_area(root, area_id) AS (
    SELECT area_id, area_id FROM areas
    UNION  -- not UNION ALL: ends even if parents were imported in a loop
    SELECT w.root, child.area_id FROM within_area w JOIN areas child ON child.parent_id = w.area_id
),
counts AS (
    SELECT w.root, count(s.sensor_id) AS sensors
    FROM within_area w LEFT JOIN sensors s ON s.area_id = w.area_id
    GROUP BY w.root
)
SELECT a.area_id, a.name, a.level, a.parent_id, ST_AsGeoJSON(a.geom, 6) AS geometry,
       a.properties, coalesce(c.sensors, 0) AS sensor_count
FROM areas a LEFT JOIN counts c ON c.root = a.area_id
WHERE $1::text IS NULL OR a.level = $1
ORDER BY a.level, a.area_id
"""


@dataclass(frozen=True)
class UpsertResult:
    inserted: int
    updated: int
    unchanged: int

    @property
    def changed(self) -> int:
        return self.inserted + self.updated


@dataclass(frozen=True)
class ImportReport:
    path: Path
    areas: int
    inserted: int
    updated: int
    unchanged: int
    levels: dict[str, int]
    sensors_reassigned: int
    repairs: list[str] = field(default_factory=list)

    def summary(self) -> str:
        levels = ", ".join(f"{n} {level}" for level, n in sorted(self.levels.items()))
        lines = [
            f"{self.path}: {self.areas} areas ({levels}): {self.inserted} new, "
            f"{self.updated} updated, {self.unchanged} unchanged; "
            f"{self.sensors_reassigned} sensors moved to another area",
            *(f"  note: {repair}" for repair in self.repairs),
        ]
        return "\n".join(lines)


async def upsert_areas(conn: asyncpg.Connection, areas: Sequence[AreaRecord]) -> int:
    """Insert or update areas in one statement; returns how many were new or changed.

    Idempotent: importing the same areas again changes nothing and returns 0.  Parents may be
    in the same batch (foreign keys are checked at the end of the statement) or already stored;
    a parent found in neither raises ``AreaFileError``.
    """
    return (await _upsert(conn, areas)).changed


async def _upsert(conn: asyncpg.Connection, areas: Sequence[AreaRecord]) -> UpsertResult:
    if not areas:
        return UpsertResult(0, 0, 0)
    await _check_parents_exist(conn, areas)
    rows = await conn.fetch(
        UPSERT_SQL,
        [a.area_id for a in areas],
        [a.name for a in areas],
        [a.level for a in areas],
        [a.parent_id for a in areas],
        [shapely.to_wkb(a.geometry, output_dimension=2) for a in areas],
        [orjson.dumps(a.properties).decode() for a in areas],
    )
    inserted = sum(1 for r in rows if r["inserted"])
    return UpsertResult(inserted, len(rows) - inserted, len(areas) - len(rows))


async def _check_parents_exist(conn: asyncpg.Connection, areas: Sequence[AreaRecord]) -> None:
    ids = {a.area_id for a in areas}
    wanted = sorted({a.parent_id for a in areas if a.parent_id and a.parent_id not in ids})
    if not wanted:
        return
    stored = {
        r["area_id"]
        for r in await conn.fetch(
            "SELECT area_id FROM areas WHERE area_id = ANY($1::text[])", wanted
        )
    }
    for index, area in enumerate(areas):
        if area.parent_id and area.parent_id not in ids and area.parent_id not in stored:
            raise AreaFileError(
                f"feature {index} ({area.area_id}): parent_id {area.parent_id!r} is neither in "
                "the file nor already imported"
            )


async def load_area_index(conn: asyncpg.Connection) -> AreaIndex:
    """Every stored area, ready to locate points."""
    rows = await conn.fetch(
        "SELECT area_id, name, level, parent_id, ST_AsBinary(geom) AS wkb, properties "
        "FROM areas ORDER BY area_id"
    )
    return AreaIndex(
        [
            AreaRecord(
                r["area_id"],
                r["name"],
                r["level"],
                r["parent_id"],
                shapely.from_wkb(r["wkb"]),
                orjson.loads(r["properties"]),
            )
            for r in rows
        ]
    )


async def assign_sensor_areas(
    conn: asyncpg.Connection, sensor_ids: Sequence[str] | None = None
) -> int:
    """Recompute ``sensors.area_id`` for the given sensors (all when None); returns changes.

    Each sensor with a location gets the most specific area containing it (see
    ``urbanpulse.core.areas``), or NULL when no area does.  Sensors without a location are left
    as they are.  The sensors' rows are locked while this runs, so a concurrent move of a
    sensor cannot be overwritten with an area computed from its old position.
    """
    async with conn.transaction():
        index = await load_area_index(conn)
        rows = await conn.fetch(
            """SELECT sensor_id, ST_X(location::geometry) AS lon, ST_Y(location::geometry) AS lat
               FROM sensors
               WHERE location IS NOT NULL AND ($1::text[] IS NULL OR sensor_id = ANY($1))
               ORDER BY sensor_id
               FOR UPDATE""",
            None if sensor_ids is None else list(sensor_ids),
        )
        if not rows:
            return 0
        area_ids = index.locate([r["lon"] for r in rows], [r["lat"] for r in rows])
        status = await conn.execute(ASSIGN_SQL, [r["sensor_id"] for r in rows], area_ids)
    return int(status.split()[-1])


async def import_areas(
    conn: asyncpg.Connection, areas: Sequence[AreaRecord]
) -> tuple[UpsertResult, int]:
    """Upsert areas and reassign every sensor, in one transaction: all of it or none of it."""
    async with conn.transaction():
        result = await _upsert(conn, areas)
        moved = await assign_sensor_areas(conn)
    return result, moved


async def import_areas_file(
    conn: asyncpg.Connection, path: Path, level: str | None = None
) -> ImportReport:
    """Import a GeoJSON area file and reassign all sensors, in one transaction.

    Any problem with the file raises ``AreaFileError`` naming the feature, before anything is
    written; a problem found in the database (an unknown parent) rolls the whole import back.
    """
    try:
        document = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise AreaFileError(f"cannot read the file: {exc.strerror or exc}") from exc
    except orjson.JSONDecodeError as exc:
        raise AreaFileError(f"not valid JSON: {exc}") from exc
    repairs: list[str] = []
    areas = areas_from_geojson(document, level, on_repair=repairs.append)
    result, moved = await import_areas(conn, areas)
    levels: dict[str, int] = {}
    for area in areas:
        levels[area.level] = levels.get(area.level, 0) + 1
    return ImportReport(
        path, len(areas), result.inserted, result.updated, result.unchanged, levels, moved, repairs
    )


async def list_areas(conn: asyncpg.Connection, level: str | None = None) -> list[dict[str, Any]]:
    """Stored areas (of one level, or all), ordered by level then id.

    Each has area_id, name, level, parent_id, geometry (a GeoJSON MultiPolygon, 6 decimals),
    properties and sensor_count: the sensors in the area or in any area below it.
    """
    rows = await conn.fetch(LIST_SQL, None if level is None else normalise_level(level))
    return [
        {
            "area_id": r["area_id"],
            "name": r["name"],
            "level": r["level"],
            "parent_id": r["parent_id"],
            "geometry": orjson.loads(r["geometry"]),
            "properties": orjson.loads(r["properties"]),
            "sensor_count": int(r["sensor_count"]),
        }
        for r in rows
    ]
