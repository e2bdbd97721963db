"""The README's roles on the real API: viewer reads; operator also acknowledges and resolves
alerts; admin also manages sensors and keys; every write is audited; a missing or unknown key is
a 401 and a role too low a 403, both in the one error shape; ``public_read`` opens reads (never
writes) and ``public_exports`` only the exports."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from tests.e2e.api_support import Api, World, build_world, running_api
from tests.e2e.promises_support import (
    assert_error,
    audit_rows_since,
    key_owner,
    last_audit_id,
    open_alert,
)
from urbanpulse.core.settings import Settings
from urbanpulse.storage.keys import Role, create_api_key, revoke_api_key

Write = tuple[str, str, dict[str, Any] | None]  # method, path, JSON body
Read = tuple[str, dict[str, Any]]  # path, query parameters


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with running_api(settings) as running:
        yield running


@pytest.fixture
async def world(db: asyncpg.Connection, settings: Settings) -> World:
    return await build_world(db, settings)


def with_api(settings: Settings, **flags: bool) -> Settings:
    return settings.model_copy(update={"api": settings.api.model_copy(update=flags)})


def admin_writes(world: World, admin_name: str) -> list[Write]:
    """Every sensor and key route: an admin's business only (listing keys included)."""
    a1, p1 = world.sensors["a1"], world.sensors["p1"]
    new_sensor = {
        "sensor_id": f"{world.prefix}-refused",
        "kind": "air",
        "lon": world.lon + 0.01,
        "lat": world.lat + 0.01,
    }
    return [
        ("POST", "/v1/sensors", new_sensor),
        ("PATCH", f"/v1/sensors/{a1}", {"name": "renamed"}),
        ("POST", f"/v1/sensors/{a1}/retire", None),
        ("POST", f"/v1/sensors/{p1}/approve", None),
        ("POST", "/v1/keys", {"name": f"{world.prefix}-refused-key", "role": "admin"}),
        ("GET", "/v1/keys", None),
        (
            "DELETE",
            f"/v1/keys/{admin_name}",
            None,
        ),  # were it allowed, the admin would be locked out
    ]


def alert_writes(alert_id: str) -> list[Write]:
    return [
        ("POST", f"/v1/alerts/{alert_id}/acknowledge", {"note": "on my way"}),
        ("POST", f"/v1/alerts/{alert_id}/resolve", {"note": "done"}),
    ]


async def send(http: httpx.AsyncClient, write: Write) -> httpx.Response:
    method, path, body = write
    return await http.request(method, path, json=body)


async def sensor_state(conn: asyncpg.Connection, world: World) -> list[tuple[Any, ...]]:
    rows = await conn.fetch(
        "SELECT sensor_id, name, status FROM sensors WHERE sensor_id LIKE $1 ORDER BY sensor_id",
        f"{world.prefix}-%",
    )
    return [tuple(r) for r in rows]


async def test_an_operator_acknowledges_and_resolves_alerts_with_notes(
    api: Api, world: World, db: asyncpg.Connection
) -> None:
    operator = await key_owner(db, api.keys["operator"])
    rule = f"{world.prefix}-roles"
    first = await open_alert(db, rule, world.sensors["a1"])
    second = await open_alert(db, rule, world.sensors["a3"])
    before = await last_audit_id(db)
    async with api.http("operator") as http:
        acked = await http.post(f"/v1/alerts/{first}/acknowledge", json={"note": "Đội 3 đang tới"})
        assert acked.status_code == 200, acked.text
        body = acked.json()
        assert body["state"] == "acknowledged"
        assert (body["acknowledged_by"], body["acknowledged_note"]) == (
            operator.name,
            "Đội 3 đang tới",
        )
        assert body["acknowledged_at"] is not None
        assert (body["resolved_at"], body["resolved_by"], body["resolved_note"]) == (None,) * 3
        assert (await http.get(f"/v1/alerts/{first}")).json() == body

        resolved = await http.post(f"/v1/alerts/{first}/resolve", json={"note": "bụi đã tan"})
        assert resolved.status_code == 200, resolved.text
        after = resolved.json()
        assert after["state"] == "resolved"
        assert (after["resolved_by"], after["resolved_note"]) == (operator.name, "bụi đã tan")
        assert datetime.fromisoformat(after["resolved_at"]) >= datetime.fromisoformat(
            after["acknowledged_at"]
        )
        # Resolving keeps who acknowledged it and why.
        assert (after["acknowledged_by"], after["acknowledged_note"]) == (
            operator.name,
            "Đội 3 đang tới",
        )

        # An open alert may be resolved directly, without a note.
        direct = await http.post(f"/v1/alerts/{second}/resolve", json={})
        assert direct.status_code == 200, direct.text
        assert direct.json()["state"] == "resolved"
        assert direct.json()["resolved_by"] == operator.name
        assert direct.json()["acknowledged_by"] is None

        assert_error(await http.post(f"/v1/alerts/{second}/acknowledge", json={}), 409, "open")
        listed = (await http.get("/v1/alerts", params={"rule": rule})).json()
        assert {a["alert_id"]: a["state"] for a in listed["alerts"]} == {
            first: "resolved",
            second: "resolved",
        }

    def row(action: str, target: str, note: str | None) -> dict[str, Any]:
        return {
            "key_id": operator.key_id,
            "actor": operator.name,
            "action": action,
            "target": target,
            "detail": {"note": note},
        }

    assert await audit_rows_since(db, before, [operator.name]) == [
        row("alert.acknowledge", first, "Đội 3 đang tới"),
        row("alert.resolve", first, "bụi đã tan"),
        row("alert.resolve", second, None),
    ]


async def test_a_viewer_may_read_but_not_act_on_alerts_nor_administer(
    api: Api, world: World, db: asyncpg.Connection
) -> None:
    viewer = await key_owner(db, api.keys["viewer"])
    admin = await key_owner(db, api.keys["admin"])
    alert_id = await open_alert(db, f"{world.prefix}-roles", world.sensors["a1"])
    sensors_before = await sensor_state(db, world)
    before = await last_audit_id(db)
    async with api.http("viewer") as http:
        assert (await http.get(f"/v1/alerts/{alert_id}")).json()["state"] == "open"
        for write in alert_writes(alert_id):
            assert_error(await send(http, write), 403, "needs operator")
        for write in admin_writes(world, admin.name):
            assert_error(await send(http, write), 403, "needs admin")
        assert (await http.get(f"/v1/alerts/{alert_id}")).json()["state"] == "open"
    assert await sensor_state(db, world) == sensors_before
    assert await audit_rows_since(db, before, [viewer.name]) == []
    async with api.http("admin") as http:  # the admin key was not revoked
        names = {k["name"] for k in (await http.get("/v1/keys")).json()["keys"]}
    assert f"{world.prefix}-refused-key" not in names


async def test_an_operator_may_not_manage_sensors_or_keys(
    api: Api, world: World, db: asyncpg.Connection
) -> None:
    operator = await key_owner(db, api.keys["operator"])
    admin = await key_owner(db, api.keys["admin"])
    sensors_before = await sensor_state(db, world)
    before = await last_audit_id(db)
    async with api.http("operator") as http:
        for write in admin_writes(world, admin.name):
            error = assert_error(await send(http, write), 403, "needs admin")
            assert "operator" in error["message"]
    assert await sensor_state(db, world) == sensors_before
    assert await audit_rows_since(db, before, [operator.name]) == []
    async with api.http("admin") as http:
        assert (await http.get("/v1/keys")).status_code == 200


async def test_a_missing_unknown_or_revoked_key_is_a_401(
    api: Api, world: World, db: asyncpg.Connection
) -> None:
    alert_id = await open_alert(db, f"{world.prefix}-roles", world.sensors["a1"])
    calls: list[Write] = [
        ("GET", "/v1/sensors", None),
        ("GET", "/v1/areas", None),
        ("GET", "/v1/alerts", None),
        ("GET", f"/v1/sensors/{world.sensors['a1']}/readings", None),
        ("GET", "/v1/exports/readings.csv?kind=air", None),
        *alert_writes(alert_id),
        *admin_writes(world, "anyone"),
    ]
    revoked_name = f"{world.prefix}-gone"
    revoked = await create_api_key(db, revoked_name, Role.ADMIN)
    assert await revoke_api_key(db, revoked_name)
    async with api.http(None) as anonymous:
        for call in calls:
            response = await send(anonymous, call)
            assert_error(response, 401, "missing API key")
            assert response.headers["www-authenticate"] == "Bearer"
    for key, fragment in [("up_00000000_not-a-key", "unknown"), (revoked, "revoked")]:
        async with httpx.AsyncClient(base_url=api.url, headers={"X-API-Key": key}) as wrong:
            for call in calls:
                assert_error(await send(wrong, call), 401, fragment)
    # The other documented way to present a key.
    bearer = {"Authorization": f"Bearer {api.keys['viewer']}"}
    async with httpx.AsyncClient(base_url=api.url, headers=bearer) as http:
        assert (await http.get("/v1/alerts", params={"limit": 1})).status_code == 200
    async with api.http("admin") as http:
        assert (await http.get(f"/v1/alerts/{alert_id}")).json()["state"] == "open"


async def live_refusal(url: str) -> int | None:
    """The close code the live feed answers a connection with (None: it was accepted)."""
    async with ws_connect(url.replace("http://", "ws://") + "/v1/live") as ws:
        # Without public_read the first message must be an auth message: this one is not.
        await ws.send(orjson.dumps({"type": "subscribe"}).decode())
        try:
            first = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
        assert first["type"] == "subscribed"
        return None


async def test_public_read_opens_every_read_but_no_write(
    settings: Settings, db: asyncpg.Connection
) -> None:
    world = await build_world(db, settings)
    alert_id = await open_alert(db, f"{world.prefix}-public", world.sensors["a1"])
    span = {"from": world.start.isoformat(), "to": (world.end + timedelta(minutes=1)).isoformat()}
    async with running_api(with_api(settings, public_read=True)) as api:
        async with api.http(None) as anonymous:
            sensors = await anonymous.get("/v1/sensors", params={"area": world.ward(1)})
            assert sensors.status_code == 200, sensors.text
            assert {f["id"] for f in sensors.json()["features"]} >= {world.sensors["a1"]}
            reads: list[Read] = [
                ("/v1/areas", {}),
                (f"/v1/areas/{world.ward(1)}", {}),
                (f"/v1/sensors/{world.sensors['a1']}", {}),
                (f"/v1/sensors/{world.sensors['a1']}/readings", span),
                ("/v1/sensors/clusters", {"bbox": world.bbox(), "zoom": 10}),
                ("/v1/alerts", {"rule": f"{world.prefix}-public"}),
                (f"/v1/alerts/{alert_id}", {}),
                ("/v1/exports/readings.csv", {**span, "kind": "air", "area": world.ward(1)}),
            ]
            for path, params in reads:
                response = await anonymous.get(path, params=params)
                assert response.status_code == 200, (path, response.text)
            assert await live_refusal(api.url) is None

            for write in [*alert_writes(alert_id), *admin_writes(world, "anyone")]:
                assert_error(await send(anonymous, write), 401, "missing API key")
            assert (await anonymous.get(f"/v1/alerts/{alert_id}")).json()["state"] == "open"
        # A key that is presented must still be a valid one, and roles still hold.
        bad = {"X-API-Key": "up_00000000_not-a-key"}
        async with httpx.AsyncClient(base_url=api.url, headers=bad) as wrong:
            assert_error(await wrong.get("/v1/sensors"), 401, "unknown")
        async with api.http("viewer") as viewer:
            assert_error(await send(viewer, alert_writes(alert_id)[0]), 403, "needs operator")


async def test_public_exports_open_only_the_exports(
    settings: Settings, db: asyncpg.Connection
) -> None:
    world = await build_world(db, settings)
    alert_id = await open_alert(db, f"{world.prefix}-exports", world.sensors["a1"])
    span = {"from": world.start.isoformat(), "to": (world.end + timedelta(minutes=1)).isoformat()}
    export = {**span, "kind": "air", "area": world.ward(1)}
    async with (
        running_api(with_api(settings, public_exports=True)) as api,
        api.http(None) as anonymous,
    ):
        csv_export = await anonymous.get("/v1/exports/readings.csv", params=export)
        assert csv_export.status_code == 200, csv_export.text
        # a1 and a2, every 5 minutes for a day, after the header line.
        assert len(csv_export.text.splitlines()) == 1 + 2 * 288
        geojson = await anonymous.get("/v1/exports/readings.geojson", params=export)
        assert geojson.status_code == 200, geojson.text
        assert len(geojson.json()["features"]) == 2 * 288

        closed: list[Read] = [
            ("/v1/sensors", {}),
            ("/v1/areas", {}),
            (f"/v1/sensors/{world.sensors['a1']}", {}),
            (f"/v1/sensors/{world.sensors['a1']}/readings", span),
            ("/v1/sensors/clusters", {"bbox": world.bbox(), "zoom": 10}),
            ("/v1/alerts", {}),
            (f"/v1/alerts/{alert_id}", {}),
        ]
        for path, params in closed:
            assert_error(await anonymous.get(path, params=params), 401, "missing API key")
        assert await live_refusal(api.url) == 4401
        for write in [*alert_writes(alert_id), *admin_writes(world, "anyone")]:
            assert_error(await send(anonymous, write), 401, "missing API key")


# Every route that changes something, as the OpenAPI document lists it.
WRITE_ROUTES = {
    ("POST", "/v1/sensors"),
    ("PATCH", "/v1/sensors/{sensor_id}"),
    ("POST", "/v1/sensors/{sensor_id}/retire"),
    ("POST", "/v1/sensors/{sensor_id}/approve"),
    ("POST", "/v1/alerts/{alert_id}/acknowledge"),
    ("POST", "/v1/alerts/{alert_id}/resolve"),
    ("POST", "/v1/keys"),
    ("DELETE", "/v1/keys/{name}"),
    ("POST", "/v1/gateways"),
    ("POST", "/v1/gateways/{gateway_id}/sensors"),
    ("DELETE", "/v1/gateways/{gateway_id}"),
}
# POSTs that change nothing anyone else sees, so not audited: a live-feed ticket is a 30 s
# credential for the caller's own next connection (the map asks for one on every reconnect).
NOT_WRITES = {("POST", "/v1/live/tickets")}


def route_of(method: str, path: str) -> tuple[str, str]:
    """The documented route a concrete request path belongs to."""
    for route_method, template in WRITE_ROUTES:
        pattern = re.sub(r"\\{[^/]+\\}", "[^/]+", re.escape(template))
        if route_method == method and re.fullmatch(pattern, path):
            return route_method, template
    raise AssertionError(f"{method} {path} is no documented write route")


async def test_every_write_route_leaves_one_audit_row_naming_who_and_what(
    api: Api, world: World, db: asyncpg.Connection
) -> None:
    async with api.http("viewer") as http:
        spec = (await http.get("/openapi.json")).json()
    documented = {
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method in operations
        if method in {"post", "put", "patch", "delete"}
    }
    assert documented - NOT_WRITES == WRITE_ROUTES, "a write route was added: audit it and test it"

    admin = await key_owner(db, api.keys["admin"])
    operator = await key_owner(db, api.keys["operator"])
    new_sensor, new_key = f"{world.prefix}-audited", f"{world.prefix}-audited-key"
    gateway = f"{world.prefix}-audited-gw"
    p1 = world.sensors["p1"]
    alert_id = await open_alert(db, f"{world.prefix}-audit", world.sensors["a1"])
    body = {"sensor_id": new_sensor, "kind": "air", "lon": world.lon + 0.01, "lat": world.lat}
    # (who, request, status, what the same request again gets, action, target, detail)
    steps: list[tuple[str, Write, int, int | None, str, str, dict[str, Any]]] = [
        ("admin", ("POST", "/v1/sensors", body), 201, 409, "sensor.register", new_sensor, body),
        (
            "admin",
            ("PATCH", f"/v1/sensors/{new_sensor}", {"name": "Trạm A"}),
            200,
            None,  # the same change again is a change again
            "sensor.update",
            new_sensor,
            {"name": "Trạm A"},
        ),
        (
            "admin",
            ("POST", f"/v1/sensors/{p1}/approve", None),
            200,
            409,
            "sensor.approve",
            p1,
            {"from": "pending", "to": "active"},
        ),
        (
            "admin",
            ("POST", f"/v1/sensors/{new_sensor}/retire", None),
            200,
            409,
            "sensor.retire",
            new_sensor,
            {"from": "active", "to": "retired"},
        ),
        (
            "operator",
            alert_writes(alert_id)[0],
            200,
            409,
            "alert.acknowledge",
            alert_id,
            {"note": "on my way"},
        ),
        (
            "operator",
            alert_writes(alert_id)[1],
            200,
            409,
            "alert.resolve",
            alert_id,
            {"note": "done"},
        ),
        (
            "admin",
            ("POST", "/v1/keys", {"name": new_key, "role": "viewer"}),
            201,
            409,
            "key.create",
            new_key,
            {"role": "viewer"},
        ),
        ("admin", ("DELETE", f"/v1/keys/{new_key}", None), 200, 404, "key.revoke", new_key, {}),
        (
            "admin",
            ("POST", "/v1/gateways", {"gateway_id": gateway, "name": "Cổng A"}),
            201,
            409,
            "gateway.create",
            gateway,
            {"name": "Cổng A"},
        ),
        (
            "admin",
            ("POST", f"/v1/gateways/{gateway}/sensors", {"sensor_ids": [p1]}),
            200,
            None,  # binding a sensor the gateway holds already is no error
            "gateway.bind",
            gateway,
            {"sensors": [p1]},
        ),
        (
            "admin",
            ("DELETE", f"/v1/gateways/{gateway}", None),
            200,
            409,
            "gateway.revoke",
            gateway,
            {},
        ),
    ]
    covered = set()
    actors = [admin.name, operator.name]
    for role, write, status, again, action, target, detail in steps:
        owner = admin if role == "admin" else operator
        before = await last_audit_id(db)
        async with api.http(role) as http:
            response = await send(http, write)
            assert response.status_code == status, response.text
            if again is not None:  # a refused write leaves no row
                assert_error(await send(http, write), again)
        [row] = await audit_rows_since(db, before, actors)
        assert (row["key_id"], row["actor"], row["action"], row["target"]) == (
            owner.key_id,
            owner.name,
            action,
            target,
        )
        assert detail.items() <= row["detail"].items(), row["detail"]
        covered.add(route_of(write[0], write[1]))
    assert covered == WRITE_ROUTES
