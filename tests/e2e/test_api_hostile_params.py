"""Hostile values inside valid formats, sent by a real HTTP client to a running API: each gets
a 4xx with a message, never a 500.  Schemathesis (test_api_schemathesis.py) generates values
from the OpenAPI schema, so it rarely tries a date-time that is valid ISO 8601 yet has no UTC
date (``9999-12-31T23:59:59-01:00``), a range whose default start falls before year 1, or
numbers at float limits; those are listed here by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import orjson
import pytest

from tests.e2e.api_support import Api, build_world, live_connect, running_api
from urbanpulse.core.settings import Settings

# Valid ISO 8601, but outside the years 1 to 9999 once in UTC, or at the very edges.
NO_UTC_DATE = ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"]
EDGES = ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00+00:00"]
HUGE = "1" + "0" * 30
FLOATS = ["nan", "NaN", "inf", "-inf", "1e308", "-1e308", "1e-320", HUGE]


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with running_api(settings) as running:
        yield running


def _time_probes(path: str) -> list[tuple[str, dict[str, str]]]:
    probes: list[tuple[str, dict[str, str]]] = []
    for value in NO_UTC_DATE + EDGES:
        probes += [(path, {"kind": "air", "from": value}), (path, {"kind": "air", "to": value})]
        probes += [(path, {"kind": "air", "from": value, "to": o}) for o in NO_UTC_DATE + EDGES]
    return probes


async def test_no_hostile_parameter_causes_a_server_error(
    api: Api, settings: Settings, db: asyncpg.Connection
) -> None:
    world = await build_world(db, settings)
    sensor = world.sensors["a1"]
    probes: list[tuple[str, dict[str, str]]] = [
        *_time_probes(f"/v1/sensors/{sensor}/readings"),
        *[(f"/v1/sensors/{sensor}/readings", {"from": t, "bucket": "1m"}) for t in EDGES],
        *_time_probes("/v1/exports/readings.csv"),
        *_time_probes("/v1/exports/readings.geojson"),
        *_time_probes("/v1/alerts"),
        *[("/v1/sensors", {"bbox": box}) for box in ["1,2,3", "-180,-90,180,90", "9,9,1,1"]],
        *[("/v1/sensors", {"bbox": f"0,0,{HUGE},1"}), ("/v1/sensors", {"near": f"{HUGE},1"})],
        *[("/v1/sensors", {"near": "1,1", "radius": f}) for f in FLOATS],
        *[("/v1/areas", {"max_age_h": f}) for f in FLOATS],
        *[("/v1/areas", {"simplify_m": f}) for f in FLOATS],
        *[("/v1/areas/history", {"kind": "air", "hours": h}) for h in [HUGE, "-1", "0"]],
        *[("/v1/areas/history", {"kind": "air", "ahead": h}) for h in [HUGE, "-1"]],
        *[("/v1/areas/history", {"kind": "air", "level": lv}) for lv in ["x" * 10_000, "\ud7ff"]],
        *[("/v1/sensors", {"limit": HUGE}), ("/v1/sensors", {"offset": HUGE})],
        *[("/v1/alerts", {"offset": str(2**63)}), ("/v1/incidents", {"offset": str(2**63)})],
        *[("/v1/sensors/clusters", {"bbox": "0,0,1,1", "zoom": z}) for z in [HUGE, "-1"]],
        ("/v1/sensors", {"within": '{"type":"Polygon","coordinates":[[[0,0],[1e308,0],[0,1]]]}'}),
        ("/v1/sensors", {"within": "[" * 5000 + "]" * 5000}),
        ("/v1/sensors", {"area": "x" * 128}),
        (f"/v1/sensors/{'x' * 5000}", {}),
        (f"/v1/areas/{'x' * 5000}", {}),
        ("/v1/exports/bulletin/0001-01-01.json", {}),
        ("/v1/exports/bulletin/9999-12-31.json", {}),
        ("/bulletin/9999-12-31", {}),
        ("/bulletin/0001-01-01", {}),
    ]
    failures = []
    async with api.http("admin") as http:
        for path, params in probes:
            response = await http.get(path, params=params)
            if response.status_code >= 500:
                failures.append((path, params, response.status_code, response.text[:200]))
            elif response.status_code >= 400:
                assert response.json()["error"]["message"], (path, params)
        # The same parameter twice: one of them is used, or a 4xx says why.
        twice = await http.get("/v1/alerts", params=[("from", NO_UTC_DATE[0]), ("from", EDGES[0])])
        if twice.status_code >= 500:
            failures.append(("/v1/alerts", "from twice", twice.status_code, twice.text[:200]))
    assert failures == [], "\n".join(str(f) for f in failures)


async def test_a_date_time_with_no_utc_date_is_named_in_a_422(api: Api) -> None:
    async with api.http("viewer") as http:
        for path in ("/v1/alerts", "/v1/exports/readings.csv"):
            response = await http.get(path, params={"kind": "air", "from": NO_UTC_DATE[0]})
            assert response.status_code == 422, response.text
            message = response.json()["error"]["message"]
            assert message == "from: lies outside the years 1 to 9999 in UTC", message
        response = await http.get(
            "/v1/exports/readings.csv", params={"kind": "air", "to": EDGES[0]}
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"]["message"].startswith("to: the default range of")


async def test_a_whole_world_bbox_finds_the_sensors_in_it(
    api: Api, settings: Settings, db: asyncpg.Connection
) -> None:
    world = await build_world(db, settings)
    async with api.http("viewer") as http:
        for bbox in ("-180,-90,180,90", f"{world.lon - 179.9},-90,{world.lon + 0.2},90"):
            response = await http.get("/v1/sensors", params={"bbox": bbox, "limit": 1000})
            assert response.status_code == 200, response.text
            found = {f["properties"]["sensor_id"] for f in response.json()["features"]}
            assert world.sensors["a1"] in found, bbox


# JSON bodies as a hostile client writes them (Python's json module, which FastAPI uses, reads
# NaN, Infinity and lone surrogates), sent as raw bytes.
HOSTILE_BODIES = [
    b'{"sensor_id": "hx-1", "kind": "air", "lon": NaN, "lat": 10}',
    b'{"sensor_id": "hx-1", "kind": "air", "lon": Infinity, "lat": -Infinity}',
    b'{"sensor_id": "hx-1", "kind": "air", "lon": 1e400, "lat": 10}',
    b'{"sensor_id": "hx-1", "kind": "air", "lon": 1000000000000000000000000000000, "lat": 1}',
    b'{"sensor_id": "hx-1", "kind": "air", "name": "\\ud800"}',
    b'{"sensor_id": "hx-1", "kind": "air", "name": "a\\u0000b"}',
    b'{"sensor_id": "hx-1", "kind": "air", "metadata": {"k": "\\udfff"}}',
    b'{"sensor_id": "hx-1", "kind": "air", "metadata": {"\\u0000": 1}}',
    b'{"sensor_id": "hx-1", "kind": "air", "metadata": {"k": NaN}}',
    b'{"sensor_id": "hx-1", "kind": "air", "metadata": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"sensor_id": "hx-1", "sensor_id": "hx-2", "kind": "air"}',
    b"[" * 100_000 + b"]" * 100_000,
    b'"\\ud800"',
    b'{"gateway_id": "hx-gw", "name": "\\ud800"}',
    b'{"name": "hx-key", "role": "viewer", "extra": "\\ud800"}',
    b'{"sensor_ids": ["hx-1", "hx-1"]}',
    b'{"note": "\\ud800"}',
]


async def test_no_hostile_body_causes_a_server_error(api: Api) -> None:
    failures = []
    targets = [
        ("POST", "/v1/sensors"),
        ("PATCH", "/v1/sensors/hx-1"),
        ("POST", "/v1/keys"),
        ("POST", "/v1/gateways"),
        ("POST", "/v1/gateways/hx-gw/sensors"),
        ("POST", "/v1/alerts/1/acknowledge"),
    ]
    async with api.http("admin") as http:
        for method, path in targets:
            for body in HOSTILE_BODIES:
                response = await http.request(
                    method, path, content=body, headers={"Content-Type": "application/json"}
                )
                if response.status_code >= 500:
                    failures.append((method, path, body[:80], response.text[:200]))
    assert failures == [], "\n".join(str(f) for f in failures)


async def test_metadata_that_no_json_can_hold_is_named_in_a_422(api: Api) -> None:
    body = b'{"sensor_id": "hx-2", "kind": "air", "metadata": {"k": "\\udfff"}}'
    async with api.http("admin") as http:
        response = await http.post(
            "/v1/sensors", content=body, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    assert "metadata" in message and "cannot be stored as JSON" in message, message


async def test_no_undecodable_url_causes_a_server_error(api: Api) -> None:
    """Percent-encodings that are not UTF-8 (a lone surrogate's bytes, a bare 0xFF) in query
    values and path ids."""
    failures = []
    async with api.http("admin") as http:
        for raw in ("%ED%A0%80", "%FF", "%C0%80", "%E2%80%AE", "%F4%90%80%80"):
            for url in (
                f"/v1/sensors?area={raw}",
                f"/v1/sensors/{raw}",
                f"/v1/sensors/{raw}/readings",
                f"/v1/areas/{raw}",
                f"/v1/alerts?sensor={raw}",
                f"/v1/forecasts/air?sensor={raw}",
                f"/v1/areas/history?kind=air&level={raw}",
                f"/v1/exports/readings.csv?kind=air&area={raw}",
                f"/v1/incidents/{raw}",
                f"/v1/gateways/{raw}",
                f"/v1/boards/{raw}",
            ):
                response = await http.get(url)
                if response.status_code >= 500:
                    failures.append((url, response.status_code, response.text[:200]))
    assert failures == [], "\n".join(str(f) for f in failures)


async def test_a_hostile_live_subscription_gets_an_error_message_and_the_socket_stays(
    api: Api,
) -> None:
    hostile = [
        b"\x00\xff binary frame",
        b'{"type": "subscribe", "bbox": ' + b"[" * 1000 + b"1" + b"]" * 1000 + b"}",
        orjson.dumps({"type": "subscribe", "bbox": ["x" * 100_000, "1", "2", "3"]}),
        orjson.dumps({"type": "subscribe", "kinds": [["air"]]}),
        orjson.dumps({"type": "subscribe", "areas": {"a": 1}}),
        orjson.dumps({"type": "subscribe", "bbox": [1e308, 1, 2, 3]}),
        b'{"type": "subscribe", "kinds": "\\ud800"}',
    ]
    async with live_connect(api.url, api.keys["viewer"]) as socket:
        last = orjson.loads(await socket.recv())
        assert last["type"] == "subscribed", last
        for message in hostile:
            await socket.send(message if message.startswith(b"\x00") else message.decode())
            answer = orjson.loads(await socket.recv())
            assert answer["type"] == "error", (message[:60], answer)
            assert 0 < len(answer["message"]) < 1000, answer
        # Still subscribed, and still answering.
        await socket.send(orjson.dumps({"type": "subscribe", "kinds": ["air"]}).decode())
        last = orjson.loads(await socket.recv())
        assert last["type"] == "subscribed", last
