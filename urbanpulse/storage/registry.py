"""The sensor registry: which sensors exist, of what kind, where, and whether approved."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from urbanpulse.core.catalogue import KINDS, SENSOR_ID_PATTERN
from urbanpulse.core.untrusted import is_number, preview
from urbanpulse.storage.areas import assign_sensor_areas


class RegistryFileError(ValueError):
    """A sensor registry file that cannot be loaded; each problem names its feature and field."""

    def __init__(self, *problems: str) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class SensorRecord:
    sensor_id: str
    kind: str
    lat: float | None = None
    lon: float | None = None
    name: str | None = None
    status: str = "active"
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RegisteredSensor:
    kind: str
    status: str
    area_id: str | None = None


async def lookup(
    conn: asyncpg.Connection, sensor_ids: Iterable[str]
) -> dict[str, RegisteredSensor]:
    rows = await conn.fetch(
        "SELECT sensor_id, kind, status, area_id FROM sensors WHERE sensor_id = ANY($1::text[])",
        list(set(sensor_ids)),
    )
    return {r["sensor_id"]: RegisteredSensor(r["kind"], r["status"], r["area_id"]) for r in rows}


UPSERT_SQL = """
INSERT INTO sensors (sensor_id, kind, name, location, status, metadata)
SELECT s.sensor_id, s.kind, s.name,
       CASE WHEN s.lon IS NULL THEN NULL
            ELSE ST_SetSRID(ST_MakePoint(s.lon, s.lat), 4326)::geography END,
       s.status, s.metadata
FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::float8[], $6::text[],
            $7::jsonb[]) AS s(sensor_id, kind, name, lon, lat, status, metadata)
ON CONFLICT (sensor_id) DO {on_conflict}
"""
_OVERWRITE = """UPDATE SET kind = EXCLUDED.kind, name = EXCLUDED.name,
    location = EXCLUDED.location, status = EXCLUDED.status, metadata = EXCLUDED.metadata,
    updated_at = now()"""


async def register(
    conn: asyncpg.Connection, sensors: Sequence[SensorRecord], *, overwrite: bool = True
) -> None:
    """Register sensors and place each in its area; ``overwrite=False`` only adds new ones."""
    if not sensors:
        return
    await upsert(conn, sensors, overwrite=overwrite)
    await assign_sensor_areas(conn, [s.sensor_id for s in sensors])


async def upsert(
    conn: asyncpg.Connection, sensors: Sequence[SensorRecord], *, overwrite: bool = True
) -> None:
    """Write sensor rows as given (their area is left to :func:`register`)."""
    if not sensors:
        return
    sql = UPSERT_SQL.format(on_conflict=_OVERWRITE if overwrite else "NOTHING")
    await conn.execute(
        sql,
        [s.sensor_id for s in sensors],
        [s.kind for s in sensors],
        [s.name for s in sensors],
        [s.lon for s in sensors],
        [s.lat for s in sensors],
        [s.status for s in sensors],
        [orjson.dumps(s.metadata).decode() for s in sensors],
    )


def sensors_from_geojson(document: Any) -> list[SensorRecord]:
    """Sensors from a GeoJSON FeatureCollection of Points with ``sensor_id`` and ``kind``.

    Raises :class:`RegistryFileError` naming every bad feature (by index) and every repeated
    sensor_id, so that one round of fixes is enough.
    """
    if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
        raise RegistryFileError("expected a GeoJSON FeatureCollection")
    features = document.get("features")
    if not isinstance(features, list):
        raise RegistryFileError("'features' must be an array")
    sensors: list[SensorRecord] = []
    problems: list[str] = []
    first_index: dict[str, int] = {}
    for index, feature in enumerate(features):
        try:
            sensor = _sensor_from_feature(index, feature)
        except RegistryFileError as exc:
            problems += exc.problems
            continue
        earlier = first_index.setdefault(sensor.sensor_id, index)
        if earlier != index:
            problems.append(
                f"feature {index} ({sensor.sensor_id}): sensor_id repeats feature {earlier}"
            )
        sensors.append(sensor)
    if problems:
        raise RegistryFileError(*problems)
    return sensors


def _sensor_from_feature(index: int, feature: Any) -> SensorRecord:
    where = f"feature {index}"
    props = feature.get("properties") if isinstance(feature, dict) else None
    if not isinstance(props, dict):
        raise RegistryFileError(f"{where}: missing 'properties'")
    sensor_id, kind = props.get("sensor_id"), props.get("kind")
    if not isinstance(sensor_id, str) or not SENSOR_ID_PATTERN.fullmatch(sensor_id):
        raise RegistryFileError(f"{where}: invalid or missing sensor_id {preview(sensor_id)}")
    where = f"{where} ({sensor_id})"
    if not isinstance(kind, str) or kind not in KINDS:
        raise RegistryFileError(f"{where}: unknown kind {preview(kind)}")
    geometry = feature.get("geometry")
    lon = lat = None
    if geometry is not None:
        problem = point_problem(geometry)
        if problem is not None:
            raise RegistryFileError(f"{where}: {problem}")
        lon, lat = float(geometry["coordinates"][0]), float(geometry["coordinates"][1])
    metadata = {k: v for k, v in props.items() if k not in {"sensor_id", "kind", "name", "status"}}
    status = props.get("status", "active")
    if status not in {"active", "pending", "retired"}:
        raise RegistryFileError(f"{where}: unknown status {preview(status)}")
    return SensorRecord(sensor_id, kind, lat, lon, props.get("name"), status, metadata)


def point_problem(geometry: Any) -> str | None:
    """Why ``geometry`` is not a GeoJSON Point in WGS 84 lon/lat, or None when it is one."""
    coords = geometry.get("coordinates") if isinstance(geometry, dict) else None
    if (
        not isinstance(geometry, dict)
        or geometry.get("type") != "Point"
        or not isinstance(coords, list)
        or len(coords) < 2
        or not all(is_number(c) and math.isfinite(c) for c in coords[:2])
    ):
        return f"geometry must be a WGS 84 Point [lon, lat], got {preview(geometry)}"
    lon, lat = coords[0], coords[1]
    if -180 <= lon <= 180 and -90 <= lat <= 90:
        return None
    problem = f"geometry must be a WGS 84 Point [lon, lat]; [{lon}, {lat}] is out of range"
    if 90 < abs(lat) <= 180 and abs(lon) <= 90:
        problem += f" (latitude {lat} is beyond ±90: are lon and lat swapped?)"
    return problem


def sensors_to_geojson(sensors: Iterable[SensorRecord]) -> dict[str, Any]:
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": None
                if s.lon is None
                else {"type": "Point", "coordinates": [s.lon, s.lat]},
                "properties": {
                    "sensor_id": s.sensor_id,
                    "kind": s.kind,
                    "name": s.name,
                    "status": s.status,
                    **s.metadata,
                },
            }
            for s in sensors
        ],
    }


@dataclass(frozen=True)
class SilentSince:
    """A registered, active sensor that has never sent a reading."""

    sensor_id: str
    kind: str
    area_id: str | None
    registered_at: datetime


async def never_reported(conn: asyncpg.Connection) -> list[SilentSince]:
    """Active sensors without any reading (pending ones wait for approval: not listed)."""
    rows = await conn.fetch(
        "SELECT s.sensor_id, s.kind, s.area_id, s.created_at FROM sensors s "
        "WHERE s.status = 'active' "
        "AND NOT EXISTS (SELECT 1 FROM sensor_latest l WHERE l.sensor_id = s.sensor_id)"
    )
    return [SilentSince(r["sensor_id"], r["kind"], r["area_id"], r["created_at"]) for r in rows]


async def count_pending(conn: asyncpg.Connection) -> int:
    """Sensors waiting for an operator's approval."""
    count: int = await conn.fetchval("SELECT count(*) FROM sensors WHERE status = 'pending'")
    return count
