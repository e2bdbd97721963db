"""Registry administration: updates through the API (update, retire, approve a sensor), the
``sensors import`` command's import with its placement warnings, and fleets by area."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import asyncpg
import orjson

from urbanpulse.core.areas import AreaIndex
from urbanpulse.storage.areas import assign_sensor_areas, load_area_index
from urbanpulse.storage.geo import SUBTREE_SQL, area_exists
from urbanpulse.storage.keys import Actor, record_audits
from urbanpulse.storage.registry import SensorRecord, register


async def sensor_row(conn: asyncpg.Connection, sensor_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        "SELECT sensor_id, kind, name, status, metadata, ST_X(location::geometry) AS lon, "
        "ST_Y(location::geometry) AS lat FROM sensors WHERE sensor_id = $1 FOR UPDATE",
        sensor_id,
    )
    if row is None:
        return None
    return {**dict(row), "metadata": orjson.loads(row["metadata"])}


async def update_sensor(conn: asyncpg.Connection, sensor_id: str, changes: dict[str, Any]) -> None:
    """Apply ``changes`` (name, status, metadata, lon+lat); a move recomputes the area."""
    sets: list[str] = []
    args: list[Any] = [sensor_id]

    def param(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if "name" in changes:
        sets.append(f"name = {param(changes['name'])}")
    if "status" in changes:
        sets.append(f"status = {param(changes['status'])}")
    if "metadata" in changes:
        sets.append(f"metadata = {param(orjson.dumps(changes['metadata']).decode())}::jsonb")
    moved = "lon" in changes
    if moved:
        if changes["lon"] is None:
            sets.append("location = NULL, area_id = NULL")
        else:
            lon, lat = param(changes["lon"]), param(changes["lat"])
            sets.append(f"location = ST_SetSRID(ST_MakePoint({lon}, {lat}), 4326)::geography")
    if not sets:
        return
    await conn.execute(
        f"UPDATE sensors SET {', '.join(sets)}, updated_at = now() WHERE sensor_id = $1", *args
    )
    if moved:
        await assign_sensor_areas(conn, [sensor_id])


async def import_sensors(
    conn: asyncpg.Connection, sensors: Sequence[SensorRecord], actor: Actor, source: str
) -> list[str]:
    """Register (or update) ``sensors`` in one transaction, place each in its area and audit
    each as ``sensor.import`` by ``actor`` from ``source`` (the file).

    Returns a warning for each located sensor that no stored area holds (see
    :func:`placement_warnings`); such sensors are registered all the same.
    """
    async with conn.transaction():
        await register(conn, sensors)
        await record_audits(
            conn,
            actor.key_id,
            actor.name,
            "sensor.import",
            [(s.sensor_id, {**asdict(s), "source": source}) for s in sensors],
        )
        index = await load_area_index(conn)
    return placement_warnings(sensors, index)


def placement_warnings(sensors: Sequence[SensorRecord], index: AreaIndex) -> list[str]:
    """A warning per located sensor outside every area of ``index``, suggesting the swap of
    lon and lat when the swapped point lies in an area."""
    # (sensor, lon, lat) of the sensors with a location
    located = [(s, s.lon, s.lat) for s in sensors if s.lon is not None and s.lat is not None]
    if not located:
        return []
    if not len(index):
        return [
            f"no areas are stored, so the {len(located)} located sensors have no area; "
            "import areas with `urbanpulse areas import` (it places the sensors again)"
        ]
    areas = index.locate([lon for _, lon, _ in located], [lat for _, _, lat in located])
    outside = [point for point, area in zip(located, areas, strict=True) if area is None]
    swapped = index.locate([lat for _, _, lat in outside], [lon for _, lon, _ in outside])
    warnings = []
    for (sensor, lon, lat), swapped_area in zip(outside, swapped, strict=True):
        text = f"{sensor.sensor_id} at [{lon}, {lat}] is outside every stored area"
        if swapped_area is not None:
            text += (
                f"; [{lat}, {lon}] would be in {swapped_area}: "
                "are lon and lat swapped? (GeoJSON is [lon, lat])"
            )
        warnings.append(text)
    return warnings


class UnknownAreaError(LookupError):
    pass


async def sensors_in_area(conn: asyncpg.Connection, area_id: str, kind: str) -> list[SensorRecord]:
    """The registered, not retired sensors of ``kind`` in an area or any area below it."""
    if not await area_exists(conn, area_id):
        raise UnknownAreaError(area_id)
    rows = await conn.fetch(
        f"""
        SELECT sensor_id, kind, ST_Y(location::geometry) AS lat, ST_X(location::geometry) AS lon,
               name, status, metadata
        FROM sensors
        WHERE kind = $2 AND status <> 'retired'
          AND area_id IN ({SUBTREE_SQL.format(param="$1")})
        ORDER BY sensor_id
        """,
        area_id,
        kind,
    )
    return [
        SensorRecord(
            r["sensor_id"],
            r["kind"],
            r["lat"],
            r["lon"],
            r["name"],
            r["status"],
            orjson.loads(r["metadata"]),
        )
        for r in rows
    ]
