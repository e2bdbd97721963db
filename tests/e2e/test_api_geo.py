"""The geo API against the real database: every endpoint, every filter, every bad parameter."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from tests.e2e.api_support import Api, World, build_world, running_api
from urbanpulse.core.settings import Settings
from urbanpulse.indices import vn_aqi


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with running_api(settings) as running:
        yield running


@pytest.fixture
async def world(db: asyncpg.Connection, settings: Settings) -> World:
    return await build_world(db, settings)


def ids(body: dict[str, Any]) -> set[str]:
    return {f["id"] for f in body["features"]}


def assert_error(response: httpx.Response, status: int, fragment: str = "") -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["status"] == status
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], list)
    assert fragment.lower() in error["message"].lower(), error["message"]


async def test_sensor_filters(api: Api, world: World) -> None:
    s = world.sensors
    async with api.http("viewer") as http:
        everything = (await http.get("/v1/sensors", params={"bbox": world.bbox()})).json()
        assert ids(everything) == set(s.values())
        assert everything["pagination"]["total"] == len(s)

        by_kind = await http.get("/v1/sensors", params={"bbox": world.bbox(), "kind": "air"})
        assert ids(by_kind.json()) == {s["a1"], s["a2"], s["a3"], s["p1"], s["r1"]}

        province = await http.get("/v1/sensors", params={"area": world.province})
        assert ids(province.json()) == set(s.values())  # wards below the province count
        ward2 = await http.get("/v1/sensors", params={"area": world.ward(2)})
        assert ids(ward2.json()) == {s["a3"], s["w1"], s["b1"]}

        pending = await http.get(
            "/v1/sensors", params={"area": world.province, "status": "pending"}
        )
        assert ids(pending.json()) == {s["p1"]}

        near = await http.get(
            "/v1/sensors",
            params={"near": f"{world.lon + 0.02},{world.lat + 0.05}", "radius": 3000},
        )
        features = near.json()["features"]
        assert features[0]["id"] == s["a1"]
        assert features[0]["properties"]["distance_m"] < 1
        assert ids(near.json()) <= {s["a1"], s["p1"], s["r1"]}
        assert s["a2"] not in ids(near.json())

        polygon = {
            "type": "Polygon",
            "coordinates": [
                [
                    [world.lon + 0.1, world.lat],
                    [world.lon + 0.2, world.lat],
                    [world.lon + 0.2, world.lat + 0.2],
                    [world.lon + 0.1, world.lat],
                ]
            ],
        }
        within = await http.get("/v1/sensors", params={"within": orjson.dumps(polygon).decode()})
        assert ids(within.json()) == {s["a3"]}  # w1 and b1 lie above the diagonal

        page1 = (await http.get("/v1/sensors", params={"area": world.province, "limit": 3})).json()
        assert page1["pagination"] == {
            "limit": 3,
            "offset": 0,
            "returned": 3,
            "total": 8,
            "next_offset": 3,
        }
        page3 = await http.get(
            "/v1/sensors", params={"area": world.province, "limit": 3, "offset": 6}
        )
        assert page3.json()["pagination"]["next_offset"] is None
        assert len(page3.json()["features"]) == 2

        a1 = next(f for f in everything["features"] if f["id"] == s["a1"])["properties"]
        assert a1["latest"]["values"] == {"pm25": 20.0 + 10 * (287 % 12)}
        assert a1["latest"]["derived"]["vn_aqi_band"]["key"] == "bad"
        assert a1["index"]["name"] == "vn_aqi" and a1["index"]["band"]["key"] == "bad"
        b1 = next(f for f in everything["features"] if f["id"] == s["b1"])["properties"]
        assert b1["index"]["band"]["key"] == "full"

        one = await http.get(f"/v1/sensors/{s['w1']}")
        assert one.json()["properties"]["index"]["band"]["key"] == "bad"
        assert_error(await http.get("/v1/sensors/nope-unknown"), 404, "unknown sensor")
        assert_error(await http.get("/v1/sensors/bad%20id"), 422, "sensor_id")


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"bbox": "1,2,3"}, "bbox"),
        ({"bbox": "10,10,5,20"}, "minLon must be less"),
        ({"bbox": "5,20,10,10"}, "minLat must be less"),
        ({"bbox": "5,10,200,20"}, "longitude"),
        ({"bbox": "a,b,c,d"}, "bbox"),
        ({"near": "106.7,10.8"}, "radius"),
        ({"radius": "100"}, "near"),
        ({"near": "106.7,95", "radius": "10"}, "latitude"),
        ({"near": "106.7,10.8", "radius": "-1"}, "radius"),
        ({"near": "106.7,10.8", "radius": "1e9"}, "radius"),
        ({"within": "{not json"}, "not valid json"),
        ({"within": '{"type": "Point", "coordinates": [1, 2]}'}, "polygon"),
        (
            {"within": '{"type":"Polygon","coordinates":[[[0,0],[1,1],[1,0],[0,1],[0,0]]]}'},
            "invalid polygon",
        ),
        ({"within": '{"type":"Polygon","coordinates":[[[0,0],[1,1]]]}'}, "polygon"),
        ({"kind": "noise"}, "kind"),
        ({"status": "sleeping"}, "status"),
        ({"area": "no-such-area"}, "unknown area"),
        ({"limit": "0"}, "limit"),
        ({"limit": "100001"}, "limit"),
        ({"offset": "-1"}, "offset"),
    ],
)
async def test_bad_sensor_parameters_get_a_4xx_with_a_message(
    api: Api, params: dict[str, str], fragment: str
) -> None:
    async with api.http("viewer") as http:
        assert_error(await http.get("/v1/sensors", params=params), 422, fragment)


async def test_clusters_by_zoom(api: Api, world: World) -> None:
    async with api.http("viewer") as http:
        coarse = (
            await http.get("/v1/sensors/clusters", params={"bbox": world.bbox(0.5), "zoom": 5})
        ).json()
        assert coarse["sensors"] == 6  # active only, by default
        [cell] = coarse["features"]
        assert cell["properties"]["count"] == 6
        assert cell["properties"]["band"]["key"] == "full"  # the worst: a bin at 95 %
        assert cell["properties"]["severity"] == 4

        fine = (
            await http.get("/v1/sensors/clusters", params={"bbox": world.bbox(), "zoom": 16})
        ).json()
        singles = {f["properties"]["sensor_id"]: f for f in fine["features"]}
        assert len(singles) == 6 and all(f["properties"]["count"] == 1 for f in fine["features"])
        assert singles[world.sensors["a2"]]["properties"]["band"]["key"] == "good"
        assert singles[world.sensors["w1"]]["properties"]["band"]["key"] == "bad"

        air = await http.get(
            "/v1/sensors/clusters",
            params={"bbox": world.bbox(), "zoom": 16, "kind": "air", "area": world.ward(1)},
        )
        assert {f["properties"]["sensor_id"] for f in air.json()["features"]} == {
            world.sensors["a1"],
            world.sensors["a2"],
        }
        assert_error(
            await http.get("/v1/sensors/clusters", params={"bbox": world.bbox(), "zoom": 23}),
            422,
            "zoom",
        )
        assert_error(await http.get("/v1/sensors/clusters", params={"zoom": 3}), 422, "bbox")
        assert_error(
            await http.get("/v1/sensors/clusters", params={"bbox": "3,3,1,1", "zoom": 3}), 422
        )


async def test_readings_raw_bucketed_and_downsampled(api: Api, world: World) -> None:
    a1 = world.sensors["a1"]
    span = {"from": world.start.isoformat(), "to": (world.end + timedelta(minutes=1)).isoformat()}
    async with api.http("viewer") as http:
        raw = (await http.get(f"/v1/sensors/{a1}/readings", params=span)).json()
        assert len(raw["readings"]) == 288 and raw["bucket"] is None
        assert raw["readings"][0]["derived"]["vn_aqi_band"]["key"] == "bad"

        hourly = (
            await http.get(f"/v1/sensors/{a1}/readings", params={**span, "bucket": "1h"})
        ).json()
        assert len(hourly["readings"]) == 24
        assert sum(r["count"] for r in hourly["readings"]) == 288
        first = hourly["readings"][0]
        assert first["values"]["pm25"] == pytest.approx(20 + 10 * 5.5)
        assert first["derived"]["vn_aqi"] == 181 and first["derived"]["vn_aqi_band"]["key"] == "bad"
        peak = (
            await http.get(
                f"/v1/sensors/{a1}/readings", params={**span, "bucket": "1h", "agg": "max"}
            )
        ).json()
        assert max(r["values"]["pm25"] for r in peak["readings"]) == 20 + 10 * (100 % 12) + 300
        low = (
            await http.get(
                f"/v1/sensors/{a1}/readings", params={**span, "bucket": "5m", "agg": "min"}
            )
        ).json()
        assert len(low["readings"]) == 288

        lttb = (
            await http.get(
                f"/v1/sensors/{a1}/readings",
                params={**span, "bucket": "5m", "points": 30, "metric": "pm25"},
            )
        ).json()
        assert lttb["downsampled"] == {
            "method": "lttb",
            "metric": "pm25",
            "points": 30,
            "from_points": 288,
        }
        assert max(r["values"]["pm25"] for r in lttb["readings"]) > 300  # the spike survives
        default_metric = (
            await http.get(f"/v1/sensors/{a1}/readings", params={**span, "points": 10})
        ).json()
        assert default_metric["downsampled"]["metric"] == "vn_aqi"
        assert len(default_metric["readings"]) == 10

        now = world.end
        bad: list[tuple[dict[str, str], int, str]] = [
            (
                {"from": now.isoformat(), "to": (now - timedelta(hours=1)).isoformat()},
                422,
                "earlier",
            ),
            ({"from": "2026-01-01T00:00:00"}, 422, "offset"),
            ({"from": "yesterday"}, 422, "from"),
            (
                {"from": (now - timedelta(days=40)).isoformat(), "to": now.isoformat()},
                422,
                "longer than 31 days",
            ),
            (
                {
                    "from": (now - timedelta(days=200)).isoformat(),
                    "to": now.isoformat(),
                    "bucket": "1m",
                },
                422,
                "buckets",
            ),
            (
                {
                    "from": (now - timedelta(days=400)).isoformat(),
                    "to": now.isoformat(),
                    "bucket": "1d",
                },
                422,
                "longer than 366 days",
            ),
            ({"bucket": "7m"}, 422, "bucket"),
            ({"bucket": "1h", "agg": "median"}, 422, "agg"),
            ({"points": "2"}, 422, "points"),
            ({"points": "10", "metric": "radon"}, 422, "radon"),
            ({"limit": "0"}, 422, "limit"),
        ]
        for params, status, fragment in bad:
            assert_error(
                await http.get(f"/v1/sensors/{a1}/readings", params=params), status, fragment
            )
        assert_error(await http.get("/v1/sensors/nobody-here/readings"), 404, "unknown sensor")


async def test_areas_with_live_summaries(api: Api, world: World) -> None:
    async with api.http("viewer") as http:
        body = (await http.get("/v1/areas")).json()
        ours = {f["id"]: f for f in body["features"] if f["id"].startswith(world.prefix)}
        assert set(ours) == {world.province, world.ward(1), world.ward(2)}
        province = ours[world.province]["properties"]
        assert ours[world.province]["geometry"]["type"] == "MultiPolygon"
        air = province["summary"]["air"]
        assert air["sensors"] == 3 and air["reporting"] == 3  # pending/retired left out
        assert air["vn_aqi_worst"] == 182 and air["vn_aqi_worst_band"]["key"] == "bad"
        assert province["summary"]["waste_bin"]["bins_over_90"] == 1
        assert province["summary"]["water"]["wqi_worst"] == 40
        assert province["band"]["key"] == "full"
        assert province["open_alerts"] == 0  # this world raised none (counted: test_api_promises)
        ward1 = ours[world.ward(1)]["properties"]
        assert ward1["summary"]["air"]["sensors"] == 2
        assert ward1["summary"]["waste_bin"]["bins_over_90"] == 0
        assert ward1["band"]["key"] == "bad"

        wards = (await http.get("/v1/areas", params={"level": "Ward"})).json()
        assert all(f["properties"]["level"] == "ward" for f in wards["features"])
        assert world.ward(2) in ids(wards)

        stale = (await http.get(f"/v1/areas/{world.ward(1)}", params={"max_age_h": 0.01})).json()
        assert stale["properties"]["summary"]["air"]["reporting"] == 0
        simple = await http.get(f"/v1/areas/{world.ward(2)}", params={"simplify_m": 100})
        assert simple.status_code == 200
        assert_error(await http.get("/v1/areas/nowhere-at-all"), 404, "unknown area")
        assert_error(await http.get("/v1/areas", params={"max_age_h": 0}), 422, "max_age_h")
        assert_error(await http.get("/v1/areas", params={"simplify_m": -1}), 422, "simplify_m")


async def test_exports_stream_csv_and_geojson(api: Api, world: World) -> None:
    span = {"from": world.start.isoformat(), "to": (world.end + timedelta(minutes=1)).isoformat()}
    async with api.http("viewer") as http:
        response = await http.get(
            "/v1/exports/readings.csv", params={**span, "kind": "air", "area": world.ward(1)}
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        assert "attachment" in response.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert len(rows) == 2 * 288
        assert {r["sensor_id"] for r in rows} == {world.sensors["a1"], world.sensors["a2"]}
        assert {"pm25", "vn_aqi", "lon", "lat", "area_id"} <= set(rows[0])

        geojson = await http.get(
            "/v1/exports/readings.geojson",
            params={**span, "kind": "waste_bin", "area": world.province},
        )
        assert geojson.status_code == 200, geojson.text
        features = geojson.json()["features"]
        assert {f["properties"]["fill"] for f in features} == {95.0, 30.0}
        assert all(f["geometry"]["type"] == "Point" for f in features)

        empty = await http.get(
            "/v1/exports/readings.geojson", params={"kind": "water", "area": world.ward(1)}
        )
        assert empty.json() == {"type": "FeatureCollection", "features": []}

        for params, fragment in [
            ({"kind": "air", "from": span["to"], "to": span["from"]}, "earlier"),
            ({"kind": "air", "from": (world.end - timedelta(days=32)).isoformat()}, "31 days"),
            ({"kind": "air", "area": "nowhere-at-all"}, "unknown area"),
            ({"kind": "noise"}, "kind"),
            ({}, "kind"),
        ]:
            assert_error(await http.get("/v1/exports/readings.csv", params=params), 422, fragment)
    async with api.http(None) as anonymous:
        denied = await anonymous.get("/v1/exports/readings.csv", params={"kind": "air"})
        assert_error(denied, 401, "API key")


async def test_public_exports_are_open_but_other_reads_are_not(settings: Settings) -> None:
    opened = settings.model_copy(
        update={"api": settings.api.model_copy(update={"public_exports": True})}
    )
    async with running_api(opened) as api, api.http(None) as anonymous:
        assert (
            await anonymous.get("/v1/exports/readings.csv", params={"kind": "air"})
        ).status_code == 200
        assert_error(await anonymous.get("/v1/sensors"), 401)
        assert (await anonymous.get("/v1/map/config")).status_code == 200


async def test_map_legend_is_the_servers_band_scales(api: Api) -> None:
    async with api.http(None) as anonymous:
        legend = (await anonymous.get("/v1/map/config")).json()["legend"]
    colours = [entry["color"] for entry in legend]
    assert len(colours) == len(set(colours))  # one entry per colour the map paints
    assert [e["key"] for e in legend[:6]] == [b.key for b in vn_aqi.BANDS]
    assert legend[0] == {"key": "good", "name_vi": "Tốt", "name_en": "Good", "color": "#00e400"}
    assert {"very_good", "no_index"} <= {e["key"] for e in legend}


async def test_admin_manages_sensors_with_audit(
    api: Api, world: World, db: asyncpg.Connection
) -> None:
    new_id = f"{world.prefix}-new"
    body = {
        "sensor_id": new_id,
        "kind": "air",
        "name": "Trạm mới",
        "lon": world.lon + 0.01,
        "lat": world.lat + 0.01,
        "metadata": {"vendor": "x"},
    }
    async with api.http("viewer") as viewer:
        assert_error(await viewer.post("/v1/sensors", json=body), 403, "admin")
    async with api.http("operator") as operator:
        assert_error(await operator.post("/v1/sensors", json=body), 403)
    async with api.http(None) as anonymous:
        assert_error(await anonymous.post("/v1/sensors", json=body), 401)
    async with api.http("admin") as admin:
        created = await admin.post("/v1/sensors", json=body)
        assert created.status_code == 201, created.text
        assert created.json()["properties"]["area_id"] == world.ward(1)
        assert_error(await admin.post("/v1/sensors", json=body), 409, "exists")
        assert_error(await admin.post("/v1/sensors", json={**body, "sensor_id": "x y"}), 422)
        assert_error(await admin.post("/v1/sensors", json={**body, "kind": "noise"}), 422)
        assert_error(
            await admin.post("/v1/sensors", json={**body, "sensor_id": f"{new_id}2", "lat": None}),
            422,
            "both",
        )

        moved = await admin.patch(
            f"/v1/sensors/{new_id}", json={"lon": world.lon + 0.15, "lat": world.lat + 0.01}
        )
        assert moved.status_code == 200, moved.text
        assert moved.json()["properties"]["area_id"] == world.ward(2)
        renamed = await admin.patch(f"/v1/sensors/{new_id}", json={"name": "Đổi tên"})
        assert renamed.json()["properties"]["name"] == "Đổi tên"
        assert_error(await admin.patch(f"/v1/sensors/{new_id}", json={"lon": 1.0}), 422, "both")
        assert_error(await admin.patch("/v1/sensors/none-such", json={"name": "x"}), 404)

        p1 = world.sensors["p1"]
        approved = await admin.post(f"/v1/sensors/{p1}/approve")
        assert approved.json()["properties"]["status"] == "active"
        assert_error(await admin.post(f"/v1/sensors/{p1}/approve"), 409, "not pending")
        retired = await admin.post(f"/v1/sensors/{new_id}/retire")
        assert retired.json()["properties"]["status"] == "retired"
        assert_error(await admin.post(f"/v1/sensors/{new_id}/retire"), 409)
        assert_error(await admin.post("/v1/sensors/none-such/retire"), 404)

    actions = await db.fetch(
        "SELECT action FROM audit_log WHERE target = ANY($1::text[]) ORDER BY audit_id",
        [new_id, world.sensors["p1"]],
    )
    assert [r["action"] for r in actions] == [
        "sensor.register",
        "sensor.update",
        "sensor.update",
        "sensor.approve",
        "sensor.retire",
    ]


async def test_admin_manages_keys_with_audit(
    api: Api, db: asyncpg.Connection, world: World
) -> None:
    name = f"{world.prefix}-ops-wall"
    async with api.http("viewer") as viewer:
        assert_error(await viewer.get("/v1/keys"), 403)
    async with api.http("admin") as admin:
        created = await admin.post("/v1/keys", json={"name": name, "role": "viewer"})
        assert created.status_code == 201, created.text
        key = created.json()["key"]
        assert_error(await admin.post("/v1/keys", json={"name": name, "role": "viewer"}), 409)
        assert_error(await admin.post("/v1/keys", json={"name": name, "role": "root"}), 422)
        listed = (await admin.get("/v1/keys")).json()["keys"]
        mine = next(k for k in listed if k["name"] == name)
        assert mine["role"] == "viewer" and "key_hash" not in mine and "key" not in mine
        async with httpx.AsyncClient(base_url=api.url, headers={"X-API-Key": key}) as holder:
            assert (await holder.get("/v1/sensors", params={"limit": 1})).status_code == 200
            revoked = await admin.delete(f"/v1/keys/{name}")
            assert revoked.json() == {"name": name, "revoked": True}
            assert_error(await holder.get("/v1/sensors"), 401, "revoked")
        assert_error(await admin.delete(f"/v1/keys/{name}"), 404)
    actions = await db.fetch(
        "SELECT action FROM audit_log WHERE target = $1 ORDER BY audit_id", name
    )
    assert [r["action"] for r in actions] == ["key.create", "key.revoke"]


async def test_every_error_has_one_shape(api: Api) -> None:
    async with api.http("viewer") as http:
        assert_error(await http.get("/v1/nothing-here"), 404)
        assert_error(await http.delete("/v1/sensors"), 405)
        invalid = await http.get("/v1/sensors", params={"kind": "noise", "limit": "x"})
        assert_error(invalid, 422, "kind")
        details = invalid.json()["error"]["details"]
        assert {tuple(d["loc"]) for d in details} == {("query", "kind"), ("query", "limit")}
    async with api.http(None) as anonymous:
        assert_error(await anonymous.get("/v1/sensors"), 401, "missing API key")
    async with httpx.AsyncClient(base_url=api.url, headers={"X-API-Key": "up_bad"}) as wrong:
        assert_error(await wrong.get("/v1/areas"), 401, "unknown")
