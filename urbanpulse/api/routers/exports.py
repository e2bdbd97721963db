"""Open-data exports: CSV and GeoJSON of readings for an area and time range, streamed."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any

import asyncpg
import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from urbanpulse.api.auth import ExportReaderDep
from urbanpulse.api.deps import ConnectionDep, KindName
from urbanpulse.api.errors import bad_parameter, error_responses
from urbanpulse.api.params import TimeRange, parse_time_range
from urbanpulse.core.catalogue import Kind, get_kind
from urbanpulse.storage import geo
from urbanpulse.storage.exports import stream_readings

router = APIRouter(prefix="/v1/exports", tags=["open data"])

MAX_EXPORT_RANGE = timedelta(days=31)
DEFAULT_EXPORT_RANGE = timedelta(days=1)
EXPORT_ERRORS = error_responses(401, 403, 422)


async def _checked(
    conn: asyncpg.Connection,
    kind: KindName,
    area: str | None,
    start: datetime | None,
    end: datetime | None,
) -> tuple[Kind, TimeRange]:
    span = parse_time_range(start, end, DEFAULT_EXPORT_RANGE, MAX_EXPORT_RANGE)
    if area is not None and not await geo.area_exists(conn, area):
        raise bad_parameter("area", f"unknown area {area!r} (see /v1/areas)")
    return get_kind(kind.value), span


def _filename(kind: Kind, area: str | None, span: TimeRange, suffix: str) -> str:
    day = f"{span.start:%Y%m%dT%H%M}-{span.end:%Y%m%dT%H%M}"
    return f"urbanpulse-{kind.name}-{area or 'all'}-{day}.{suffix}"


KindQuery = Annotated[KindName, Query(description="Kind of sensor (one table per kind)")]
AreaQuery = Annotated[
    str | None, Query(max_length=128, description="Area id: readings of sensors in it or below")
]
FromQuery = Annotated[datetime | None, Query(alias="from", description="Inclusive, with offset")]
ToQuery = Annotated[datetime | None, Query(alias="to", description="Exclusive, with offset")]


@router.get(
    "/readings.csv",
    summary="Readings of one kind in an area and time range as CSV (streamed)",
    description="One row per reading: sensor, event time, receipt time, area, lon/lat and one "
    "column per catalogue field in canonical units. At most 31 days per request.",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}, **EXPORT_ERRORS},
)
async def readings_csv(
    request: Request,
    conn: ConnectionDep,
    _caller: ExportReaderDep,
    kind: KindQuery,
    area: AreaQuery = None,
    start: FromQuery = None,
    end: ToQuery = None,
) -> StreamingResponse:
    k, span = await _checked(conn, kind, area, start, end)
    header = ["sensor_id", "ts", "received_at", "area_id", "lon", "lat"]
    header += [f.name for f in k.stored_fields]

    async def body() -> AsyncIterator[str]:
        yield _csv_lines([header])
        async for batch in stream_readings(request.app.state.pool, k, area, span.start, span.end):
            yield _csv_lines([_csv_row(k, r) for r in batch])

    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{_filename(k, area, span, "csv")}"'
        },
    )


def _csv_lines(rows: Sequence[Sequence[Any]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def _csv_row(kind: Kind, r: asyncpg.Record) -> list[Any]:
    row = [r["sensor_id"], r["ts"].isoformat(), r["received_at"].isoformat(), r["area_id"]]
    row += [r["lon"], r["lat"]]
    row += ["" if r[f.column] is None else r[f.column] for f in kind.stored_fields]
    return row


@router.get(
    "/readings.geojson",
    summary="Readings of one kind in an area and time range as GeoJSON (streamed)",
    description="A FeatureCollection with one Point feature per reading at its sensor's "
    "location; properties hold the sensor, times, area and every non-null field.",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/geo+json": {}}}, **EXPORT_ERRORS},
)
async def readings_geojson(
    request: Request,
    conn: ConnectionDep,
    _caller: ExportReaderDep,
    kind: KindQuery,
    area: AreaQuery = None,
    start: FromQuery = None,
    end: ToQuery = None,
) -> StreamingResponse:
    k, span = await _checked(conn, kind, area, start, end)

    async def body() -> AsyncIterator[bytes]:
        yield b'{"type":"FeatureCollection","features":['
        first = True
        async for batch in stream_readings(request.app.state.pool, k, area, span.start, span.end):
            chunk = b",".join(orjson.dumps(_feature(k, r), option=orjson.OPT_UTC_Z) for r in batch)
            yield chunk if first else b"," + chunk
            first = False
        yield b"]}"

    return StreamingResponse(
        body(),
        media_type="application/geo+json",
        headers={
            "Content-Disposition": f'attachment; filename="{_filename(k, area, span, "geojson")}"'
        },
    )


def _feature(kind: Kind, r: asyncpg.Record) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "sensor_id": r["sensor_id"],
        "ts": r["ts"],
        "received_at": r["received_at"],
        "area_id": r["area_id"],
    }
    properties.update({f.name: r[f.column] for f in kind.stored_fields if r[f.column] is not None})
    return {
        "type": "Feature",
        "geometry": None
        if r["lon"] is None
        else {"type": "Point", "coordinates": [r["lon"], r["lat"]]},
        "properties": properties,
    }
