"""Sensors: the map's GeoJSON layer and each sensor's reading history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query

from urbanpulse.api.auth import ViewerDep
from urbanpulse.api.deps import ConnectionDep, KindName
from urbanpulse.api.indices import present_derived
from urbanpulse.core.catalogue import SENSOR_ID_PATTERN, get_kind
from urbanpulse.storage import queries

router = APIRouter(prefix="/v1/sensors", tags=["sensors"])

MAX_RANGE = timedelta(days=31)
DEFAULT_RANGE = timedelta(hours=24)


@router.get("", summary="Sensors with their latest reading, as a GeoJSON FeatureCollection")
async def list_sensors(
    conn: ConnectionDep,
    _caller: ViewerDep,
    kind: Annotated[KindName | None, Query(description="Only sensors of this kind")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    rows = await queries.list_sensors(conn, kind.value if kind else None, limit, offset)
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "id": row["sensor_id"],
                "geometry": None
                if row["lon"] is None
                else {"type": "Point", "coordinates": [row["lon"], row["lat"]]},
                "properties": {
                    "sensor_id": row["sensor_id"],
                    "kind": row["kind"],
                    "name": row["name"],
                    "status": row["status"],
                    "area_id": row["area_id"],
                    "latest": None
                    if row["ts"] is None
                    else {
                        "ts": row["ts"],
                        "received_at": row["received_at"],
                        "values": row["values"],
                        "derived": present_derived(row["derived"]),
                    },
                },
            }
            for row in rows
        ],
    }


@router.get("/{sensor_id}/readings", summary="Readings of one sensor over a time range")
async def sensor_readings(
    conn: ConnectionDep,
    _caller: ViewerDep,
    sensor_id: Annotated[str, Path(max_length=64)],
    start: Annotated[
        datetime | None, Query(alias="from", description="Inclusive, ISO 8601 with offset")
    ] = None,
    end: Annotated[
        datetime | None, Query(alias="to", description="Exclusive, ISO 8601 with offset")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> dict[str, Any]:
    if not SENSOR_ID_PATTERN.match(sensor_id):
        raise HTTPException(422, f"invalid sensor id {sensor_id!r}")
    for name, value in (("from", start), ("to", end)):
        if value is not None and value.tzinfo is None:
            raise HTTPException(422, f"'{name}' must include a UTC offset, e.g. 2026-01-01T00:00Z")
    end = end or datetime.now(UTC)
    start = start or end - DEFAULT_RANGE
    if start >= end:
        raise HTTPException(422, "'from' must be earlier than 'to'")
    if end - start > MAX_RANGE:
        raise HTTPException(422, f"time range longer than {MAX_RANGE.days} days; narrow it")
    kind_name = await queries.sensor_kind(conn, sensor_id)
    if kind_name is None:
        raise HTTPException(404, f"unknown sensor {sensor_id!r}")
    kind = get_kind(kind_name)
    rows = await queries.sensor_readings(conn, kind, sensor_id, start, end, limit)
    return {
        "sensor_id": sensor_id,
        "kind": kind.name,
        "from": start,
        "to": end,
        "units": {m.name: m.unit for m in kind.metrics},
        "readings": [
            {
                "ts": row["ts"],
                "received_at": row["received_at"],
                "seq": row["seq"],
                "values": {
                    m.name: row[m.column] for m in kind.metrics if row[m.column] is not None
                },
                "derived": present_derived(
                    {f.name: row[f.column] for f in kind.derived if row[f.column] is not None}
                ),
            }
            for row in rows
        ],
    }
