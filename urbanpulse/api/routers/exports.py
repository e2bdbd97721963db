"""Open-data exports: CSV and GeoJSON of readings for an area and time range, streamed; the
daily bulletin as JSON, CSV and a printable page.

Streamed exports hold a database connection and a core for as long as the download lasts, so at
most ``api.exports_max_concurrent`` run at once per API process; one more is a 429 with
``Retry-After`` (counted as ``urbanpulse_api_refused_total{guard="exports"}``)."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

import asyncpg
import orjson
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from urbanpulse.api.auth import ExportReaderDep
from urbanpulse.api.deps import ConnectionDep, KindName
from urbanpulse.api.errors import ApiError, bad_parameter, error_responses
from urbanpulse.api.guards import Guards
from urbanpulse.api.params import TimeRange, parse_time_range
from urbanpulse.bulletin import store
from urbanpulse.bulletin.render import csv_text, html_page
from urbanpulse.core.catalogue import Kind, get_kind
from urbanpulse.storage import geo
from urbanpulse.storage.exports import stream_readings

router = APIRouter(prefix="/v1/exports", tags=["open data"])

MAX_EXPORT_RANGE = timedelta(days=31)
DEFAULT_EXPORT_RANGE = timedelta(days=1)
EXPORT_ERRORS = error_responses(401, 403, 422)
STREAM_ERRORS = error_responses(401, 403, 422, 429)
EXPORT_RETRY_AFTER_S = 10


class _SlotStream(StreamingResponse):
    """A streamed export that gives its slot back when the response ends, however it ends."""

    def __init__(self, guards: Guards, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guards = guards

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._guards.exports.release()


def _streamed(
    request: Request, body: AsyncIterator[Any], media_type: str, filename: str
) -> StreamingResponse:
    """``body`` as a download, if an export slot is free; a 429 otherwise."""
    guards: Guards = request.app.state.guards
    if not guards.exports.take():
        guards.refused("exports")
        raise ApiError(
            429,
            f"{guards.exports.limit} exports are running already; try again shortly",
            headers={"Retry-After": str(EXPORT_RETRY_AFTER_S)},
        )
    return _SlotStream(
        guards,
        body,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


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
    responses={200: {"content": {"text/csv": {}}}, **STREAM_ERRORS},
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

    return _streamed(request, body(), "text/csv; charset=utf-8", _filename(k, area, span, "csv"))


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
    responses={200: {"content": {"application/geo+json": {}}}, **STREAM_ERRORS},
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

    return _streamed(request, body(), "application/geo+json", _filename(k, area, span, "geojson"))


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


# --- the daily bulletin -------------------------------------------------------------------------

# The printable page lives outside /v1 (a page, not an API), with the same access rule.
page_router = APIRouter(tags=["open data"])

DayPath = Annotated[date, Path(description="Local day (Vietnam), YYYY-MM-DD")]


async def _bulletin(request: Request, conn: asyncpg.Connection, day: date) -> dict[str, Any]:
    """The stored bulletin of ``day``, or one computed now (not stored) for a day without one."""
    if (problem := store.day_problem(day, datetime.now(UTC))) is not None:
        raise bad_parameter("day", problem, where="path")
    body = await store.stored(conn, day)
    if body is None:
        rules, combination = store.inputs_of(request.app.state.settings)
        body = (await store.build(conn, day, rules, combination)).to_json()
    return body


@router.get(
    "/bulletin/{day}.json",
    summary="The daily bulletin of one day: VN_AQI, VN_WQI, hours above limits, completeness",
    description="Per station and ward (the worst station): the day's VN_AQI (Decision 1459) and "
    "VN_WQI (Decision 1460) with their bands and dominant pollutant, the hours whose hourly mean "
    "broke each QCVN 05:2023 limit of the alert rules, and hours with data / 24. The stored "
    "bulletin if there is one, otherwise computed on request.",
    responses=EXPORT_ERRORS,
)
async def bulletin_json(
    request: Request, conn: ConnectionDep, _caller: ExportReaderDep, day: DayPath
) -> dict[str, Any]:
    return await _bulletin(request, conn, day)


@router.get(
    "/bulletin/{day}.csv",
    summary="The daily bulletin of one day as CSV (one row per station and ward)",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}, **EXPORT_ERRORS},
)
async def bulletin_csv(
    request: Request, conn: ConnectionDep, _caller: ExportReaderDep, day: DayPath
) -> Response:
    return Response(
        csv_text(await _bulletin(request, conn, day)),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="urbanpulse-bulletin-{day}.csv"'},
    )


@page_router.get(
    "/bulletin/{day}",
    summary="The daily bulletin as a printable page (Vietnamese or English)",
    response_class=HTMLResponse,
    responses={200: {"content": {"text/html": {}}}, **EXPORT_ERRORS},
)
async def bulletin_page(
    request: Request,
    conn: ConnectionDep,
    _caller: ExportReaderDep,
    day: DayPath,
    lang: Annotated[Literal["vi", "en"], Query(description="Page language")] = "vi",
) -> HTMLResponse:
    return HTMLResponse(html_page(await _bulletin(request, conn, day), lang))
