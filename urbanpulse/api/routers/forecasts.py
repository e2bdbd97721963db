"""Forecasts: PM2.5 and VN_AQI 1-24 h ahead, bins' time to 90 %, trucks' collection lists.

The job ``urbanpulse forecast run`` computes and stores them; these routes only read.  Each
air horizon carries the ``method`` it was served by: the model where it beat persistence on
the hours it was validated on, persistence elsewhere.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from urbanpulse.api.auth import ViewerDep
from urbanpulse.api.deps import ConnectionDep, SettingsDep
from urbanpulse.api.errors import ApiError, bad_parameter, error_responses
from urbanpulse.forecast import store
from urbanpulse.forecast.collection import BinStop, collection_order, urgency
from urbanpulse.indices.vn_aqi import band_for
from urbanpulse.storage import geo

router = APIRouter(prefix="/v1/forecasts", tags=["forecasts"])

PLAIN = r"^[^\x00-\x1f]*$"
SensorParam = Annotated[
    str | None, Query(max_length=64, pattern=PLAIN, description="Air station's sensor id")
]
AreaParam = Annotated[
    str | None, Query(max_length=128, pattern=PLAIN, description="Area id (a ward)")
]
ERRORS = error_responses(401, 403, 404, 422)


def _exactly_one(**given: str | None) -> tuple[str, str]:
    chosen = [(name, value) for name, value in given.items() if value is not None]
    if len(chosen) != 1:
        names = " or ".join(f"'{n}'" for n in given)
        raise bad_parameter(next(iter(given)), f"give exactly one of {names}")
    return chosen[0]


async def _known_area(conn: Any, area: str) -> None:
    if not await geo.area_exists(conn, area):
        raise bad_parameter("area", f"unknown area {area!r} (see /v1/areas)")


def _aqi(value: int | None) -> dict[str, Any] | None:
    return None if value is None else {"value": value, "band": band_for(value).key}


def _horizon(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "horizon_h": row["horizon_h"],
        "valid_at": row["valid_at"],
        "method": row["method"],
        "skill": row["skill"],
        "pm25": {"lower": row["pm25_lower"], "median": row["pm25"], "upper": row["pm25_upper"]},
        "vn_aqi": {
            "lower": _aqi(row["vn_aqi_lower"]),
            "median": _aqi(row["vn_aqi"]),
            "upper": _aqi(row["vn_aqi_upper"]),
        },
    }


@router.get(
    "/air",
    summary="PM2.5 and the VN_AQI it implies, 1-24 h ahead with a 10-90 % band, per horizon "
    "served by the model or (where the model had no skill) by persistence",
    responses=ERRORS,
)
async def air(
    conn: ConnectionDep, _caller: ViewerDep, sensor: SensorParam = None, area: AreaParam = None
) -> dict[str, Any]:
    name, subject = _exactly_one(sensor=sensor, area=area)
    if name == "sensor":
        kind = await store.sensor_kind(conn, subject)
        if kind is None:
            raise bad_parameter("sensor", f"unknown sensor {subject!r}")
        if kind != "air":
            raise bad_parameter("sensor", f"{subject!r} is a {kind} sensor, not an air station")
    else:
        await _known_area(conn, subject)
    rows = await store.air_forecast(conn, name, subject)
    if not rows:
        raise ApiError(
            404, f"no forecast for {name} {subject!r} yet (is `urbanpulse forecast run` running?)"
        )
    first = rows[0]
    return {
        name: subject,
        "issued_at": first["issued_at"],
        "origin": first["origin"],
        "unit": "µg/m³",
        "horizons": [_horizon(r) for r in rows],
    }


def _bin(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "sensor_id": row["sensor_id"],
        "fill": row["fill"],
        "slope_per_h": row.get("slope_per_h"),
        "hours_to_90": row["hours_to_full"],
        "full_at": row["full_at"],
    }


@router.get(
    "/bins",
    summary="When each bin will reach 90 % (robust slope of its fill since it was emptied)",
    responses=ERRORS,
)
async def bins(conn: ConnectionDep, _caller: ViewerDep, area: AreaParam = None) -> dict[str, Any]:
    if area is not None:
        await _known_area(conn, area)
    rows = await store.bin_forecasts(conn, area)
    return {"area": area, "bins": [{**_bin(r), "area_id": r["area_id"]} for r in rows]}


@router.get(
    "/collection",
    summary="Each truck round's collection list: bins due within the round, most urgent "
    "first, then nearest",
    responses=ERRORS,
)
async def collection(
    conn: ConnectionDep,
    settings: SettingsDep,
    _caller: ViewerDep,
    truck: Annotated[
        str | None, Query(max_length=64, pattern=PLAIN, description="Truck's sensor id")
    ] = None,
    area: AreaParam = None,
) -> dict[str, Any]:
    name, subject = _exactly_one(truck=truck, area=area)
    if name == "truck":
        if await store.sensor_kind(conn, subject) != "waste_truck":
            raise bad_parameter("truck", f"no waste truck {subject!r}")
        trucks = [subject]
        rows = await store.bins_by_truck(conn, truck=subject)
    else:
        await _known_area(conn, subject)
        trucks = await store.trucks_in(conn, subject)
        rows = await store.bins_by_truck(conn, area_id=subject)
    within = settings.forecast.collect_within_h
    rounds = []
    for truck_id in trucks:
        mine = {r["sensor_id"]: r for r in rows if r["truck"] == truck_id}
        stops = [BinStop(s, r["hours_to_full"], r["distance_m"]) for s, r in mine.items()]
        ordered = collection_order(stops, within)
        rounds.append(
            {
                "truck": truck_id,
                "stops": [
                    {
                        **_bin(mine[s.sensor_id]),
                        "urgency": urgency(s.hours_to_full or 0.0),
                        "distance_m": s.distance_m,
                    }
                    for s in ordered
                ],
            }
        )
    return {"collect_within_h": within, "rounds": rounds}
