"""Sensors: the map's GeoJSON layer, clusters by zoom, reading history, and registry admin."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Path, Query
from pydantic import AfterValidator, BaseModel, Field, model_validator

from urbanpulse.api.auth import AdminDep, ViewerDep, audit
from urbanpulse.api.deps import ConnectionDep, KindName
from urbanpulse.api.errors import ApiError, bad_parameter, error_responses
from urbanpulse.api.indices import present_derived
from urbanpulse.api.lttb import lttb_indices
from urbanpulse.api.params import (
    BBOX_PATTERN,
    POINT_PATTERN,
    Agg,
    Bucket,
    parse_bbox,
    parse_point,
    parse_polygon,
    parse_time_range,
)
from urbanpulse.api.values import present_values
from urbanpulse.core.catalogue import SENSOR_ID_PATTERN, SENSOR_ID_SCHEMA_PATTERN, Kind, get_kind
from urbanpulse.indices.bands import round_half_up
from urbanpulse.storage import geo, queries, registry, sensor_admin
from urbanpulse.storage.scales import NO_DATA, NO_INDEX, band_of_code, sensor_index

router = APIRouter(prefix="/v1/sensors", tags=["sensors"])

MAX_RANGE = timedelta(days=31)  # raw readings
MAX_BUCKETED_RANGE = timedelta(days=366)
MAX_BUCKETS = 50_000
DEFAULT_RANGE = timedelta(hours=24)
MAX_RADIUS_M = 200_000
CLUSTER_CELL_PX = 48  # on-screen size of a clustering cell, in 256-pixel-tile pixels

Status = Literal["active", "pending", "retired"]
SensorIdPath = Annotated[str, Path(max_length=64, description="Sensor id")]
READ_ERRORS = error_responses(401, 403, 422)
ONE_SENSOR_ERRORS = error_responses(401, 403, 404, 422)
WRITE_ERRORS = error_responses(401, 403, 404, 409, 422)


# --------------------------------------------------------------------------- filters


def sensor_filter(
    kind: Annotated[KindName | None, Query(description="Only sensors of this kind")] = None,
    area: Annotated[
        str | None,
        Query(max_length=128, description="Only sensors in this area or any area below it"),
    ] = None,
    status: Annotated[Status | None, Query(description="Only sensors in this state")] = None,
    bbox: Annotated[
        str | None,
        Query(
            pattern=BBOX_PATTERN,
            description="minLon,minLat,maxLon,maxLat (WGS 84 degrees)",
            examples=["106.6,10.7,106.8,10.85"],
        ),
    ] = None,
    near: Annotated[
        str | None,
        Query(pattern=POINT_PATTERN, description="lon,lat: with radius, sensors around a point"),
    ] = None,
    radius: Annotated[
        float | None,
        Query(gt=0, le=MAX_RADIUS_M, description="Metres around 'near' (on the spheroid)"),
    ] = None,
    within: Annotated[
        str | None,
        Query(description="A GeoJSON Polygon or MultiPolygon (URL-encoded JSON text)"),
    ] = None,
) -> geo.SensorFilter:
    point = parse_point(near, "near")
    if (point is None) != (radius is None):
        name = "radius" if point is not None else "near"
        raise bad_parameter(name, "'near' and 'radius' go together: give both or neither")
    box = parse_bbox(bbox)
    return geo.SensorFilter(
        kind=kind.value if kind else None,
        area_id=area,
        status=status,
        bbox=None if box is None else (box.min_lon, box.min_lat, box.max_lon, box.max_lat),
        near=point,
        radius_m=radius,
        within_geojson=parse_polygon(within),
    )


async def _checked(conn: ConnectionDep, f: geo.SensorFilter) -> geo.SensorFilter:
    if f.area_id is not None and not await geo.area_exists(conn, f.area_id):
        raise bad_parameter("area", f"unknown area {f.area_id!r} (see /v1/areas)")
    return f


def _check_sensor_id(sensor_id: str) -> None:
    if not SENSOR_ID_PATTERN.fullmatch(sensor_id):
        raise bad_parameter("sensor_id", f"invalid sensor id {sensor_id!r}", where="path")


def sensor_feature(row: dict[str, Any]) -> dict[str, Any]:
    """A sensor as a GeoJSON Feature with its latest reading (newest by event time)."""
    properties: dict[str, Any] = {
        "sensor_id": row["sensor_id"],
        "kind": row["kind"],
        "name": row["name"],
        "status": row["status"],
        "area_id": row["area_id"],
        "metadata": row.get("metadata") or {},
        "latest": None
        if row["ts"] is None
        else {
            "ts": row["ts"],
            "received_at": row["received_at"],
            "values": present_values(row["kind"], row["values"]),
            "derived": present_derived(row["derived"]),
        },
        "index": sensor_index(row["kind"], row["values"], row["derived"]),
    }
    if row.get("distance_m") is not None:
        properties["distance_m"] = round(row["distance_m"], 1)
    return {
        "type": "Feature",
        "id": row["sensor_id"],
        "geometry": None
        if row["lon"] is None
        else {"type": "Point", "coordinates": [row["lon"], row["lat"]]},
        "properties": properties,
    }


# --------------------------------------------------------------------------- reads


@router.get(
    "",
    summary="Sensors with their latest reading, as a GeoJSON FeatureCollection",
    description="Filters combine with AND. Spatial filters run in PostGIS on the indexed "
    "location: `bbox`, `near`+`radius` (metres, nearest first) and `within` (GeoJSON polygon). "
    "Each feature carries its latest values (newest event time), derived indices with bands "
    "and `index`: the value that colours it on the map.",
    responses=READ_ERRORS,
)
async def list_sensors(
    conn: ConnectionDep,
    _caller: ViewerDep,
    filters: Annotated[geo.SensorFilter, Depends(sensor_filter)],
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> dict[str, Any]:
    f = await _checked(conn, filters)
    total, rows = await geo.find_sensors(conn, f, limit, offset)
    return {
        "type": "FeatureCollection",
        "features": [sensor_feature(row) for row in rows],
        "pagination": {
            "limit": limit,
            "offset": offset,
            "returned": len(rows),
            "total": total,
            "next_offset": offset + len(rows) if offset + len(rows) < total else None,
        },
    }


@router.get(
    "/clusters",
    summary="Sensors aggregated on a grid that suits a zoom level, for the map",
    description="Sensors inside `bbox` snapped to a grid of about 48 screen pixels at `zoom` "
    "(Web Mercator, 256-pixel tiles) with ST_SnapToGrid. Each cell is a Feature with its "
    "count, mean position, grid point (`cell`, one cell apart from its neighbours) and the band "
    "of its worst sensor; a cell holding one sensor names it.",
    responses=READ_ERRORS,
)
async def sensor_clusters(
    conn: ConnectionDep,
    _caller: ViewerDep,
    bbox: Annotated[
        str,
        Query(pattern=BBOX_PATTERN, description="minLon,minLat,maxLon,maxLat of the view"),
    ],
    zoom: Annotated[int, Query(ge=0, le=22, description="Web Mercator zoom level")],
    kind: Annotated[KindName | None, Query()] = None,
    area: Annotated[str | None, Query(max_length=128)] = None,
    status: Annotated[Status | None, Query()] = "active",
) -> dict[str, Any]:
    box = parse_bbox(bbox)
    assert box is not None
    f = await _checked(
        conn,
        geo.SensorFilter(
            kind=kind.value if kind else None,
            area_id=area,
            status=status,
            bbox=(box.min_lon, box.min_lat, box.max_lon, box.max_lat),
        ),
    )
    cell = 360.0 / (2**zoom) * CLUSTER_CELL_PX / 256
    rows = await geo.sensor_clusters(conn, f, cell)
    features = []
    for row in rows:
        worst = band_of_code(row["code"])
        if worst is None:
            band, severity = (NO_DATA if row["reporting"] == 0 else NO_INDEX), None
        else:
            severity, band = worst
        single = row["count"] == 1
        features.append(
            {
                "type": "Feature",
                "id": row["sensor_id"] if single else None,
                "geometry": {"type": "Point", "coordinates": [row["lon"], row["lat"]]},
                "properties": {
                    "count": row["count"],
                    "cell": [row["cell_lon"], row["cell_lat"]],
                    "reporting": row["reporting"],
                    "kinds": sorted(row["kinds"]),
                    "sensor_id": row["sensor_id"] if single else None,
                    "name": row["name"] if single else None,
                    "kind": row["kind"] if single else None,
                    "severity": severity,
                    "band": band.to_json(),
                },
            }
        )
    return {
        "type": "FeatureCollection",
        "zoom": zoom,
        "cell_degrees": cell,
        "sensors": sum(r["count"] for r in rows),
        "features": features,
    }


@router.get("/{sensor_id}", summary="One sensor as a GeoJSON Feature", responses=ONE_SENSOR_ERRORS)
async def get_sensor(
    conn: ConnectionDep, _caller: ViewerDep, sensor_id: SensorIdPath
) -> dict[str, Any]:
    _check_sensor_id(sensor_id)
    row = await geo.get_sensor(conn, sensor_id)
    if row is None:
        raise ApiError(404, f"unknown sensor {sensor_id!r}")
    return sensor_feature(row)


@router.get(
    "/{sensor_id}/readings",
    summary="Readings of one sensor over a time range: raw, or bucketed with time_bucket",
    description="Raw readings by default (at most 31 days). With `bucket` (1m, 5m, 1h, 1d) "
    "each row is the `agg` (avg, min, max) of every numeric field over one time bucket "
    "(at most 366 days and 50,000 buckets); 1h and 1d read whole buckets from the hourly and "
    "daily rollups, and only partial or not yet rolled-up buckets from raw readings (the same "
    "numbers), so a year charts quickly. `points` downsamples to that many rows with "
    "LTTB on `metric` (default: the kind's index, else its first metric), for charts.",
    responses=ONE_SENSOR_ERRORS,
)
async def sensor_readings(
    conn: ConnectionDep,
    _caller: ViewerDep,
    sensor_id: SensorIdPath,
    start: Annotated[
        datetime | None, Query(alias="from", description="Inclusive, ISO 8601 with offset")
    ] = None,
    end: Annotated[
        datetime | None, Query(alias="to", description="Exclusive, ISO 8601 with offset")
    ] = None,
    bucket: Annotated[Bucket | None, Query(description="Aggregate into time buckets")] = None,
    agg: Annotated[Agg, Query(description="Aggregate within each bucket")] = Agg.AVG,
    points: Annotated[
        int | None, Query(ge=3, le=10_000, description="Downsample with LTTB to this many rows")
    ] = None,
    metric: Annotated[
        str | None, Query(max_length=64, description="The field LTTB preserves")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> dict[str, Any]:
    _check_sensor_id(sensor_id)
    span = parse_time_range(
        start, end, DEFAULT_RANGE, MAX_RANGE if bucket is None else MAX_BUCKETED_RANGE
    )
    if bucket is not None and (span.end - span.start) / bucket.interval > MAX_BUCKETS:
        raise bad_parameter("bucket", f"more than {MAX_BUCKETS} buckets; use a coarser bucket")
    kind_name = await queries.sensor_kind(conn, sensor_id)
    if kind_name is None:
        raise ApiError(404, f"unknown sensor {sensor_id!r}")
    kind = get_kind(kind_name)
    if metric is not None and metric not in _field_names(kind):
        known = ", ".join(sorted(_field_names(kind)))
        raise bad_parameter("metric", f"{kind.name} has no numeric field {metric!r}; {known}")
    if bucket is None:
        rows = await queries.sensor_readings(conn, kind, sensor_id, span.start, span.end, limit)
        readings = [_raw_reading(kind, row) for row in rows]
    else:
        rows = await queries.bucketed_readings(
            conn, kind, sensor_id, span.start, span.end, bucket.interval, agg.value, limit
        )
        readings = [_bucket_reading(kind, row) for row in rows]
    downsampled = None
    if points is not None:
        target = metric or _default_metric(kind)
        readings, downsampled = _downsample(kind, readings, target, points)
    return {
        "sensor_id": sensor_id,
        "kind": kind.name,
        "from": span.start,
        "to": span.end,
        "bucket": bucket.value if bucket else None,
        "agg": agg.value if bucket else None,
        "units": {m.name: m.unit for m in kind.metrics},
        "downsampled": downsampled,
        "readings": readings,
    }


def _raw_reading(kind: Kind, row: Any) -> dict[str, Any]:
    return {
        "ts": row["ts"],
        "received_at": row["received_at"],
        "seq": row["seq"],
        "values": _values(kind, row),
        "derived": present_derived(
            {f.name: row[f.column] for f in kind.derived if row[f.column] is not None}
        ),
    }


def _bucket_reading(kind: Kind, row: Any) -> dict[str, Any]:
    derived: dict[str, Any] = {}
    for field in kind.derived:
        value = row[field.column] if field.sql_type != "text" else None
        if value is not None:
            derived[field.name] = round_half_up(value) if field.sql_type == "integer" else value
    return {
        "ts": row["bucket"],
        "count": row["n"],
        "values": _values(kind, row),
        "derived": present_derived(derived),
    }


def _values(kind: Kind, row: Any) -> dict[str, Any]:
    measured = {m.name: row[m.column] for m in kind.metrics if row[m.column] is not None}
    return present_values(kind.name, measured)


def _downsample(
    kind: Kind, readings: list[dict[str, Any]], metric: str, points: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    section = "values" if metric in kind.by_name else "derived"
    having = [r for r in readings if isinstance(r[section].get(metric), int | float)]
    xs = [r["ts"].timestamp() for r in having]
    ys = [float(r[section][metric]) for r in having]
    kept = [having[i] for i in lttb_indices(xs, ys, points)]
    return kept, {
        "method": "lttb",
        "metric": metric,
        "points": len(kept),
        "from_points": len(having),
    }


# --------------------------------------------------------------------------- admin writes


def _writable_as_json(value: dict[str, Any]) -> dict[str, Any]:
    """Metadata that can be stored: Python's JSON reader accepts lone surrogates (``"\\ud800"``),
    which no UTF-8 JSON can hold, so writing them raised (a 500)."""
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        raise ValueError(f"cannot be stored as JSON: {exc}") from None
    return value


Metadata = Annotated[dict[str, Any], AfterValidator(_writable_as_json)]


class SensorCreate(BaseModel):
    sensor_id: str = Field(pattern=SENSOR_ID_SCHEMA_PATTERN, max_length=64)
    kind: KindName
    name: str | None = Field(default=None, max_length=200)
    lon: float | None = Field(default=None, ge=-180, le=180)
    lat: float | None = Field(default=None, ge=-90, le=90)
    status: Literal["active", "pending"] = "active"
    metadata: Metadata = Field(default_factory=dict)

    @model_validator(mode="after")
    def _both_coordinates(self) -> SensorCreate:
        if (self.lon is None) != (self.lat is None):
            raise ValueError("give both lon and lat, or neither")
        return self


class SensorUpdate(BaseModel):
    name: str | None = Field(default=None, max_length=200)
    lon: float | None = Field(default=None, ge=-180, le=180)
    lat: float | None = Field(default=None, ge=-90, le=90)
    status: Status | None = None
    metadata: Metadata | None = None

    @model_validator(mode="after")
    def _both_coordinates(self) -> SensorUpdate:
        if ("lon" in self.model_fields_set) != ("lat" in self.model_fields_set) or (
            (self.lon is None) != (self.lat is None)
        ):
            raise ValueError("give both lon and lat (or both null to clear the location)")
        return self


@router.post(
    "",
    status_code=201,
    summary="Register a sensor (admin; audited)",
    responses=WRITE_ERRORS,
)
async def register_sensor(
    conn: ConnectionDep, caller: AdminDep, body: SensorCreate
) -> dict[str, Any]:
    async with conn.transaction():
        if await sensor_admin.sensor_row(conn, body.sensor_id) is not None:
            raise ApiError(409, f"sensor {body.sensor_id!r} already exists; PATCH to change it")
        record = registry.SensorRecord(
            body.sensor_id,
            body.kind.value,
            body.lat,
            body.lon,
            body.name,
            body.status,
            body.metadata,
        )
        await registry.register(conn, [record], overwrite=False)
        await audit(conn, caller, "sensor.register", body.sensor_id, body.model_dump(mode="json"))
    return await _feature_or_404(conn, body.sensor_id)


@router.patch("/{sensor_id}", summary="Update a sensor (admin; audited)", responses=WRITE_ERRORS)
async def update_sensor(
    conn: ConnectionDep, caller: AdminDep, sensor_id: SensorIdPath, body: SensorUpdate
) -> dict[str, Any]:
    _check_sensor_id(sensor_id)
    changes = body.model_dump(mode="json", exclude_unset=True)
    async with conn.transaction():
        if await sensor_admin.sensor_row(conn, sensor_id) is None:
            raise ApiError(404, f"unknown sensor {sensor_id!r}")
        await sensor_admin.update_sensor(conn, sensor_id, changes)
        await audit(conn, caller, "sensor.update", sensor_id, changes)
    return await _feature_or_404(conn, sensor_id)


@router.post(
    "/{sensor_id}/retire",
    summary="Retire a sensor: kept with its history, no longer active (admin; audited)",
    responses=WRITE_ERRORS,
)
async def retire_sensor(
    conn: ConnectionDep, caller: AdminDep, sensor_id: SensorIdPath
) -> dict[str, Any]:
    return await _set_status(conn, caller, sensor_id, "retired", ("active", "pending"))


@router.post(
    "/{sensor_id}/approve",
    summary="Approve a pending sensor, making it active (admin; audited)",
    responses=WRITE_ERRORS,
)
async def approve_sensor(
    conn: ConnectionDep, caller: AdminDep, sensor_id: SensorIdPath
) -> dict[str, Any]:
    return await _set_status(conn, caller, sensor_id, "active", ("pending",))


async def _set_status(
    conn: ConnectionDep,
    caller: AdminDep,
    sensor_id: str,
    status: str,
    allowed_from: tuple[str, ...],
) -> dict[str, Any]:
    _check_sensor_id(sensor_id)
    async with conn.transaction():
        row = await sensor_admin.sensor_row(conn, sensor_id)
        if row is None:
            raise ApiError(404, f"unknown sensor {sensor_id!r}")
        if row["status"] not in allowed_from:
            raise ApiError(409, f"sensor {sensor_id!r} is {row['status']}, not {allowed_from[0]}")
        await sensor_admin.update_sensor(conn, sensor_id, {"status": status})
        action = "sensor.approve" if status == "active" else "sensor.retire"
        await audit(conn, caller, action, sensor_id, {"from": row["status"], "to": status})
    return await _feature_or_404(conn, sensor_id)


async def _feature_or_404(conn: ConnectionDep, sensor_id: str) -> dict[str, Any]:
    row = await geo.get_sensor(conn, sensor_id)
    if row is None:
        raise ApiError(404, f"unknown sensor {sensor_id!r}")
    return sensor_feature(row)


def _field_names(kind: Kind) -> set[str]:
    return {name for name, _column in queries.numeric_fields(kind)}


def _default_metric(kind: Kind) -> str:
    numeric = [d.name for d in kind.derived if d.sql_type != "text"]
    return numeric[0] if numeric else kind.metrics[0].name
