"""Areas: polygons with a live summary per kind, for the ops-center choropleth."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from urbanpulse.api.auth import ViewerDep
from urbanpulse.api.deps import ConnectionDep
from urbanpulse.api.errors import ApiError, error_responses
from urbanpulse.core.areas import AREA_ID_SCHEMA_PATTERN, normalise_level
from urbanpulse.storage import geo
from urbanpulse.storage.scales import MAP_SCALES, NO_DATA, SCALE_OF_KIND

router = APIRouter(prefix="/v1/areas", tags=["areas"])

METRES_PER_DEGREE = 111_320.0
MaxAge = Annotated[
    float,
    Query(gt=0, le=8760, description="Latest readings older than this many hours are left out"),
]
Simplify = Annotated[
    float,
    Query(ge=0, le=5000, description="Simplify polygons to this tolerance in metres (0: exact)"),
]


def _summary(per_kind: list[dict[str, Any]]) -> dict[str, Any]:
    """Per kind: sensors, reporting, latest_ts and the kind's index mean and worst (+ band)."""
    out: dict[str, Any] = {}
    for entry in per_kind:
        kind = entry["kind"]
        item: dict[str, Any] = {
            "sensors": entry["sensors"],
            "reporting": entry["reporting"],
            "latest_ts": entry["latest_ts"],
        }
        scale = SCALE_OF_KIND.get(kind)
        if scale is not None:
            mean, worst = entry[f"{scale.field}_mean"], entry[f"{scale.field}_worst"]
            item[f"{scale.field}_mean"] = None if mean is None else round(mean, 1)
            item[f"{scale.field}_worst"] = worst
            item[f"{scale.field}_worst_band"] = (
                None if worst is None else scale.bands[scale.band_index(worst)].to_json()
            )
        if kind == "waste_bin":
            item["bins_over_90"] = entry["bins_over_90"]
        out[kind] = item
    return out


def _colour(summary: dict[str, Any]) -> dict[str, Any]:
    """The choropleth band: the worst band of any scale in the area, else 'no data'."""
    worst: tuple[int, dict[str, Any]] | None = None
    for scale in MAP_SCALES:
        value = summary.get(scale.kind, {}).get(f"{scale.field}_worst")
        if value is None:
            continue
        index = scale.band_index(value)
        candidate = (scale.severities[index], scale.bands[index].to_json())
        if worst is None or candidate[0] > worst[0]:
            worst = candidate
    return worst[1] if worst else NO_DATA.to_json()


def _colours(summary: dict[str, Any]) -> dict[str, Any]:
    """Per kind with a scale, the band of its worst sensor in the area, else 'no data': the
    map paints one kind at a time, so a full bin never colours the air map."""
    colours: dict[str, Any] = {}
    for scale in MAP_SCALES:
        worst = summary.get(scale.kind, {}).get(f"{scale.field}_worst_band")
        colours[scale.kind] = worst or NO_DATA.to_json()
    return colours


def area_feature(area: dict[str, Any], open_alerts: dict[str, int] | None) -> dict[str, Any]:
    summary = _summary(area["per_kind"])
    return {
        "type": "Feature",
        "id": area["area_id"],
        "geometry": area["geometry"],
        "properties": {
            "area_id": area["area_id"],
            "name": area["name"],
            "level": area["level"],
            "parent_id": area["parent_id"],
            "attributes": area["properties"],
            "sensors": sum(item["sensors"] for item in summary.values()),
            "summary": summary,
            "open_alerts": None if open_alerts is None else open_alerts.get(area["area_id"], 0),
            "band": _colour(summary),
            "bands": _colours(summary),
            "label_point": area["label_point"],
        },
    }


@router.get(
    "",
    summary="Areas as GeoJSON polygons with a live summary per kind (choropleth)",
    description="Each area sums the active sensors in it and in every area below it: per kind "
    "the sensor count, how many reported recently, the mean and worst index (VN_AQI for air, "
    "VN_WQI for water, fill for waste bins) with its band, bins above 90 % and open alerts "
    "(null until the alert engine's table exists). `bands` has, per kind, the band of its "
    "worst sensor (the map's fill when it shows that kind), `band` the worst of any kind; "
    "`label_point` is a point inside the area, where the map puts its badge.",
    responses=error_responses(401, 403, 422),
)
async def list_areas(
    conn: ConnectionDep,
    _caller: ViewerDep,
    level: Annotated[
        str | None, Query(max_length=64, description="Only this level, e.g. ward, province")
    ] = None,
    max_age_h: MaxAge = 24,
    simplify_m: Simplify = 0,
) -> dict[str, Any]:
    areas = await geo.area_summaries(
        conn,
        None if level is None else normalise_level(level),
        None,
        datetime.now(UTC) - timedelta(hours=max_age_h),
        simplify_m / METRES_PER_DEGREE,
    )
    alerts = await geo.open_alerts_by_area(conn)
    return {"type": "FeatureCollection", "features": [area_feature(a, alerts) for a in areas]}


@router.get(
    "/{area_id}",
    summary="One area with its live summary",
    responses=error_responses(401, 403, 404, 422),
)
async def get_area(
    conn: ConnectionDep,
    _caller: ViewerDep,
    area_id: Annotated[str, Path(max_length=128, pattern=AREA_ID_SCHEMA_PATTERN)],
    max_age_h: MaxAge = 24,
    simplify_m: Simplify = 0,
) -> dict[str, Any]:
    areas = await geo.area_summaries(
        conn,
        None,
        area_id,
        datetime.now(UTC) - timedelta(hours=max_age_h),
        simplify_m / METRES_PER_DEGREE,
    )
    if not areas:
        raise ApiError(404, f"unknown area {area_id!r}")
    return area_feature(areas[0], await geo.open_alerts_by_area(conn))
