"""Registry writes made through the API by an admin: update, retire, approve a sensor."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from urbanpulse.storage.areas import assign_sensor_areas


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
