"""Each area's map index hour by hour, for the map's time slider (``/v1/areas/history``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Response

from urbanpulse.api.auth import ViewerDep
from urbanpulse.api.deps import ConnectionDep
from urbanpulse.api.errors import bad_parameter, error_responses
from urbanpulse.core.areas import normalise_level
from urbanpulse.storage import geo
from urbanpulse.storage.area_history import (
    FORECAST_INDEX,
    AreaForecastHour,
    AreaHour,
    area_forecast_hours,
    area_hours,
)
from urbanpulse.storage.rollups import HOURLY, floor_to
from urbanpulse.storage.scales import SCALE_OF_KIND, Scale, kind_legend

router = APIRouter(prefix="/v1/areas", tags=["areas"])

MAX_HOURS = 7 * 24
NAME = r"^[a-z0-9_]+$"
PLAIN = r"^[^\x00-\x1f]*$"


def _scale(kind: str, index: str | None) -> Scale:
    scale = SCALE_OF_KIND.get(kind)
    if scale is None:
        raise bad_parameter("kind", f"no map scale for {kind!r}; one of {', '.join(SCALE_OF_KIND)}")
    if index is not None and index != scale.field:
        raise bad_parameter("index", f"the {kind} map is read on {scale.field!r}, not {index!r}")
    return scale


def _cell(scale: Scale, item: AreaHour) -> dict[str, Any]:
    value = round(item.value, 1)
    return {
        "value": int(value) if value.is_integer() else value,
        "band": scale.bands[scale.band_index(item.value)].key,
        "sensors": item.sensors,
    }


def frames(
    scale: Scale, items: list[AreaHour], start: datetime, hours: int
) -> list[dict[str, Any]]:
    """One frame per hour from ``start``, each area with a value in it (others: no data)."""
    by_hour: dict[datetime, dict[str, Any]] = {start + i * HOURLY.width: {} for i in range(hours)}
    for item in items:
        by_hour[item.hour][item.area_id] = _cell(scale, item)
    return [{"ts": hour, "areas": areas} for hour, areas in by_hour.items()]


def forecast_frames(
    scale: Scale, items: list[AreaForecastHour], now_hour: datetime, ahead: int
) -> list[dict[str, Any]]:
    """One frame per hour after ``now_hour``, each area with a stored forecast for it."""
    by_hour: dict[datetime, dict[str, Any]] = {
        now_hour + i * HOURLY.width: {} for i in range(1, ahead + 1)
    }
    for item in items:
        by_hour[item.valid_at][item.area_id] = {
            "value": item.value,
            "band": scale.bands[scale.band_index(item.value)].key,
            "lower": item.lower,
            "upper": item.upper,
            "method": item.method,
        }
    return [{"ts": hour, "areas": areas} for hour, areas in by_hour.items()]


@router.get(
    "/history",
    summary="Each area's map index hour by hour (the map's time slider)",
    description="One frame per UTC hour, oldest first, the last one the current (partial) hour. "
    "In each frame, per area of `level` with data, the worst hourly value of the kind's active "
    "sensors in it or below it (the highest VN_AQI, the lowest VN_WQI), its band on the map's "
    "scale and how many sensors had a value; areas without data are left out. Whole hours "
    "come from the hourly rollups (with late readings stored since), the rest from raw "
    "readings. `legend` gives each band's name and colour. With `ahead`, `forecast` has one "
    "frame per coming hour: each area's stored VN_AQI forecast (median, 10-90 % band and "
    "method, from `urbanpulse forecast run`); empty for kinds without a forecast.",
    responses=error_responses(401, 403, 422),
    response_class=Response,
)
async def area_history(
    conn: ConnectionDep,
    _caller: ViewerDep,
    kind: Annotated[
        str, Query(max_length=32, pattern=NAME, description="A kind with a map scale, e.g. air")
    ],
    index: Annotated[
        str | None,
        Query(max_length=32, pattern=NAME, description="The kind's map index (vn_aqi, wqi...)"),
    ] = None,
    hours: Annotated[
        int, Query(ge=1, le=MAX_HOURS, description="How many hours, up to 7 days (168)")
    ] = 24,
    level: Annotated[
        str, Query(max_length=64, pattern=PLAIN, description="Area level, e.g. ward")
    ] = "ward",
    ahead: Annotated[
        int,
        Query(ge=0, le=24, description="Also the stored forecast this many hours ahead (VN_AQI)"),
    ] = 0,
) -> Response:
    scale = _scale(kind, index)
    level = normalise_level(level)
    levels = await geo.area_levels(conn)
    if level not in levels:
        raise bad_parameter("level", f"no areas at level {level!r}; levels: {', '.join(levels)}")
    now = datetime.now(UTC)
    start = floor_to(now, HOURLY.width) - (hours - 1) * HOURLY.width
    items = await area_hours(conn, scale, level, start, now + timedelta(microseconds=1))
    now_hour = start + (hours - 1) * HOURLY.width
    ahead = ahead if scale.field == FORECAST_INDEX else 0
    until = now_hour + ahead * HOURLY.width
    forecasts = await area_forecast_hours(conn, level, now_hour, until) if ahead else []
    # Encoded by orjson: a week of a city's wards is some 30,000 cells, which FastAPI's
    # generic encoder takes half a second to walk (pydantic models: a fifth of one).
    body = orjson.dumps(
        {
            "kind": scale.kind,
            "index": scale.field,
            "level": level,
            "step": "1h",
            "from": start,
            "to": now,
            "worst": "highest" if scale.worst == "max" else "lowest",
            "legend": kind_legend(scale),
            "frames": frames(scale, items, start, hours),
            "forecast": forecast_frames(scale, forecasts, now_hour, ahead),
        }
    )
    return Response(body, media_type="application/json")
