"""Issue 12's API hygiene on the real API and stack, with real clients (httpx, websockets, the
``urbanpulse`` CLI in its own process): live tickets (single use, expiry), no key in a URL and
none in the server's log, revocation closing live sockets (through the API and the CLI),
failed authentications limited per client, caps on live clients and exports, CLI audit rows."""

from __future__ import annotations

import asyncio
import getpass
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from tests.e2e.api_support import Api, World, build_world, live_connect, live_url, running_api
from tests.e2e.conftest import ServiceProcess, eventually, settings_env
from tests.e2e.promises_support import assert_error, audit_rows_since, last_audit_id
from urbanpulse.core.settings import Settings
from urbanpulse.storage.keys import Role, create_api_key, hash_key

CLI_ACTOR = f"cli:{getpass.getuser()}"


def with_api(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(update={"api": settings.api.model_copy(update=changes)})


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with running_api(settings) as running:
        yield running


async def urbanpulse(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """``urbanpulse ARGS`` in a process of its own, against the test stack."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "urbanpulse.cli", *args],
        env={**os.environ, **settings_env(settings)},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def ticket(api_url: str, key: str) -> str:
    async with httpx.AsyncClient(base_url=api_url, headers={"X-API-Key": key}) as http:
        response = await http.post("/v1/live/tickets")
    assert response.status_code == 201, response.text
    value: str = response.json()["ticket"]
    return value


async def with_ticket(api_url: str, value: str) -> ClientConnection:
    """A connection that authenticates as browsers do: no header, the ticket first."""
    ws = await ws_connect(live_url(api_url))
    await ws.send(orjson.dumps({"type": "auth", "ticket": value}).decode())
    return ws


async def first_message(ws: ClientConnection, timeout_s: float = 10) -> dict[str, Any]:
    message: dict[str, Any] = orjson.loads(await asyncio.wait_for(ws.recv(), timeout_s))
    return message


async def closed_with(ws: ClientConnection, timeout_s: float = 30) -> tuple[int, str]:
    """The close code and reason the server ends ``ws`` with (messages before it are read)."""
    try:
        async with asyncio.timeout(timeout_s):
            async for _ in ws:
                pass
    except ConnectionClosed:
        pass
    assert ws.close_code is not None, "the server did not close the connection"
    return ws.close_code, ws.close_reason or ""


async def metric(api_url: str, name: str) -> float:
    async with httpx.AsyncClient(base_url=api_url) as http:
        text = (await http.get("/metrics")).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


# --------------------------------------------------------------------------- tickets


async def test_a_ticket_opens_one_connection_once(api: Api) -> None:
    async with api.http(None) as anonymous:
        assert_error(await anonymous.post("/v1/live/tickets"), 401, "missing API key")
    async with api.http("viewer") as viewer:
        issued = await viewer.post("/v1/live/tickets")
    assert issued.status_code == 201, issued.text
    body = issued.json()
    assert body["expires_in_s"] == 30.0 and len(body["ticket"]) >= 40

    first = await with_ticket(api.url, body["ticket"])
    try:
        assert (await first_message(first))["type"] == "subscribed"
        again = await with_ticket(api.url, body["ticket"])
        assert await closed_with(again) == (4401, "unknown or already used ticket")
        made_up = await with_ticket(api.url, "not-a-ticket")
        assert await closed_with(made_up) == (4401, "unknown or already used ticket")
        # The first connection is not disturbed by the refused ones.
        await first.send(orjson.dumps({"type": "subscribe", "kinds": ["air"]}).decode())
        assert (await first_message(first))["subscription"]["kinds"] == ["air"]
    finally:
        await first.close()


async def test_a_ticket_expires(settings: Settings, db: asyncpg.Connection) -> None:
    async with running_api(with_api(settings, live_ticket_ttl_s=1.0)) as api:
        value = await ticket(api.url, api.keys["viewer"])

        async def expired() -> bool:
            return bool(
                await db.fetchval(
                    "SELECT expires_at <= now() FROM live_tickets WHERE ticket_hash = $1",
                    hash_key(value),
                )
            )

        assert await eventually(expired, bool, timeout_s=30)
        ws = await with_ticket(api.url, value)
        code, reason = await closed_with(ws)
        assert code == 4401 and reason.startswith("expired ticket")
        # Used up all the same: it is not in the table any more.
        assert (
            await db.fetchval(
                "SELECT count(*) FROM live_tickets WHERE ticket_hash = $1", hash_key(value)
            )
            == 0
        )


# --------------------------------------------------------------------------- no key in URLs or logs


async def test_a_key_in_the_url_is_refused_and_the_server_log_never_holds_a_key(
    settings: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    """The API as its own ``urbanpulse api`` process, its log read from its output."""
    viewer = await create_api_key(db, f"{settings.kafka.topic_prefix}-url-viewer", Role.VIEWER)
    wrong = "up_0a1b2c3d_" + "W" * 43  # a key's form, unknown: its secret must not be logged
    server = ServiceProcess("api", settings, tmp_path / "api.log")
    server.start()
    url = f"http://{settings.api.host}:{settings.api.port}"
    try:

        async def up() -> bool:
            try:
                async with httpx.AsyncClient(base_url=url) as http:
                    return (await http.get("/v1/map/config")).status_code == 200
            except httpx.TransportError:
                return False

        assert await eventually(up, bool, timeout_s=60), server.log_text()
        for params in ({"key": viewer}, {"key": viewer, "kinds": "air"}, {"ticket": "abc"}):
            async with ws_connect(live_url(url, params)) as ws:
                code, reason = await closed_with(ws)
                assert code == 4401 and reason.startswith("no key or ticket in the URL"), reason
        async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": wrong}) as http:
            assert_error(await http.get("/v1/sensors"), 401, "unknown or revoked")
        async with live_connect(url, wrong) as ws:
            assert (await closed_with(ws))[0] == 4401
        # The allowed ways still work: a header, and a ticket.
        async with live_connect(url, viewer) as ws:
            assert (await first_message(ws))["type"] == "subscribed"
        ws = await with_ticket(url, await ticket(url, viewer))
        assert (await first_message(ws))["type"] == "subscribed"
        await ws.close()
    finally:
        assert server.stop() == 0
    log = server.log_text()
    assert viewer not in log and wrong[12:] not in log
    assert viewer[12:] not in log  # not even the secret part alone
    # uvicorn did log the first connection (?key=...), without its query string.
    assert '"WebSocket /v1/live?<hidden>" [accepted]' in log, log[-3000:]
    # Failed authentications are logged (repeats within 10 s held back: core.logs) with the
    # client's address and the key's prefix.
    failures = [line for line in log.splitlines() if "failed authentication" in line]
    assert failures, log[-3000:]
    assert all("127.0.0.1" in line and "up_0a1b2c3d" in line for line in failures), failures


# --------------------------------------------------------------------------- revocation


async def test_revoking_a_key_through_the_api_or_the_cli_closes_its_live_sockets(
    api: Api, settings: Settings, db: asyncpg.Connection
) -> None:
    prefix = settings.kafka.topic_prefix
    doomed = await create_api_key(db, f"{prefix}-doomed", Role.VIEWER)
    by_cli = await create_api_key(db, f"{prefix}-by-cli", Role.VIEWER)
    bystander = await create_api_key(db, f"{prefix}-bystander", Role.VIEWER)
    sockets = {
        "doomed-header": await live_connect(api.url, doomed),
        "doomed-ticket": await with_ticket(api.url, await ticket(api.url, doomed)),
        "by-cli": await live_connect(api.url, by_cli),
        "bystander": await live_connect(api.url, bystander),
    }
    try:
        for ws in sockets.values():
            assert (await first_message(ws))["type"] == "subscribed"

        async with api.http("admin") as admin:
            assert (await admin.delete(f"/v1/keys/{prefix}-doomed")).status_code == 200
        for name in ("doomed-header", "doomed-ticket"):
            assert await closed_with(sockets[name]) == (4401, "API key revoked"), name

        # The CLI is another process: the API hears of it from the database.
        done = await urbanpulse(settings, "keys", "revoke", f"{prefix}-by-cli")
        assert done.returncode == 0, done.stderr
        assert await closed_with(sockets["by-cli"]) == (4401, "API key revoked")

        # The other key's socket is still served.
        await sockets["bystander"].send(orjson.dumps({"type": "subscribe"}).decode())
        assert (await first_message(sockets["bystander"]))["type"] == "subscribed"
        assert await metric(api.url, "urbanpulse_live_revoked_closes_total") == 3
    finally:
        for ws in sockets.values():
            await ws.close()


# --------------------------------------------------------------------------- failed authentications


async def test_failed_authentications_are_limited_per_client(settings: Settings) -> None:
    limited = with_api(settings, auth_failures_max=3, auth_failure_window_s=600.0)
    async with running_api(limited) as api:
        bad = {"X-API-Key": "up_0a1b2c3d_guess"}
        async with httpx.AsyncClient(base_url=api.url, headers=bad) as guesser:
            for _ in range(2):
                assert_error(await guesser.get("/v1/sensors"), 401, "unknown")
            # The map's config names a key's role: a wrong key there is a failure too.
            config = await guesser.get("/v1/map/config")
            assert config.status_code == 200 and config.json()["role"] is None
            refused = await guesser.get("/v1/map/config")
        assert_error(refused, 429, "too many failed authentications")
        assert 0 < int(refused.headers["retry-after"]) <= 600
        # The address is refused whatever key it sends now, on the live feed too ...
        async with api.http("viewer") as viewer:
            assert_error(await viewer.get("/v1/sensors"), 429, "try again in")
        async with live_connect(api.url, api.keys["viewer"]) as ws:
            code, reason = await closed_with(ws)
            assert code == 4429 and "too many failed authentications" in reason
        # ... and another client is not (uvicorn takes a loopback proxy's X-Forwarded-For).
        other = {"X-API-Key": api.keys["viewer"], "X-Forwarded-For": "192.0.2.7"}
        async with httpx.AsyncClient(base_url=api.url, headers=other) as http:
            assert (await http.get("/v1/areas")).status_code == 200
        assert await metric(api.url, 'urbanpulse_api_auth_failures_total{via="http"}') == 3
        assert await metric(api.url, 'urbanpulse_api_refused_total{guard="auth_rate"}') == 3


# --------------------------------------------------------------------------- caps


async def test_live_connections_are_capped_in_all_and_per_key(
    settings: Settings, db: asyncpg.Connection
) -> None:
    capped = with_api(settings, live_max_clients=3, live_max_clients_per_key=2)
    async with running_api(capped) as api:
        other = await create_api_key(db, f"{settings.kafka.topic_prefix}-cap", Role.VIEWER)
        viewer = api.keys["viewer"]
        held = [await live_connect(api.url, viewer) for _ in range(2)]
        try:
            for ws in held:
                assert (await first_message(ws))["type"] == "subscribed"
            async with live_connect(api.url, viewer) as third:
                assert await closed_with(third) == (
                    1013,
                    "this API key has its 2 live connections; close one first",
                )
            held.append(await live_connect(api.url, other))
            assert (await first_message(held[-1]))["type"] == "subscribed"
            async with live_connect(api.url, api.keys["admin"]) as fourth:
                assert await closed_with(fourth) == (
                    1013,
                    "the live feed has its 3 clients; try again later",
                )
            assert await metric(api.url, 'urbanpulse_api_refused_total{guard="live_per_key"}') == 1
            assert await metric(api.url, 'urbanpulse_api_refused_total{guard="live_total"}') == 1
        finally:
            for ws in held:
                await ws.close()
        # A closed connection frees its place.
        async with live_connect(api.url, viewer) as again:
            assert (await first_message(again))["type"] == "subscribed"


async def test_concurrent_exports_are_capped(settings: Settings, db: asyncpg.Connection) -> None:
    world: World = await build_world(db, settings)
    # A day of readings every 2 s (43,200 rows, ~5 MB of CSV): more than the sockets between
    # the API and a client that reads nothing can hold, so that export stays in progress.
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(days=1)
    await db.execute(
        "INSERT INTO readings_air (sensor_id, ts, received_at, pm25) "
        "SELECT $1, t, t, 12.5 FROM generate_series($2::timestamptz, $3::timestamptz, "
        "interval '2 seconds') t ON CONFLICT DO NOTHING",
        world.sensors["a2"],
        start,
        end - timedelta(seconds=1),
    )
    span = {"kind": "air", "area": world.ward(1), "from": start.isoformat(), "to": end.isoformat()}
    async with running_api(with_api(settings, exports_max_concurrent=1)) as api:
        async with api.http("viewer") as slow, api.http("viewer") as second:
            async with slow.stream("GET", "/v1/exports/readings.csv", params=span) as held:
                assert held.status_code == 200  # headers only: its body is not read
                refused = await second.get("/v1/exports/readings.geojson", params=span)
                assert_error(refused, 429, "1 exports are running already")
                assert int(refused.headers["retry-after"]) > 0
            # The held download was abandoned: its slot is free again.

            async def export_status() -> int:
                response = await second.get("/v1/exports/readings.csv", params=span)
                return response.status_code

            assert await eventually(export_status, lambda s: s == 200, timeout_s=60) == 200
        assert await metric(api.url, 'urbanpulse_api_refused_total{guard="exports"}') >= 1


# --------------------------------------------------------------------------- CLI audit


async def test_the_cli_audits_its_key_and_sensor_writes_like_the_api(
    settings: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    prefix = settings.kafka.topic_prefix
    since = await last_audit_id(db)
    name = f"{prefix}-cli-audited"
    created = await urbanpulse(settings, "keys", "create", name, "--role", "operator")
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() not in created.stderr  # shown once, on stdout only
    revoked = await urbanpulse(settings, "keys", "revoke", name)
    assert revoked.returncode == 0, revoked.stderr
    sensors = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"sensor_id": f"{prefix}-audit-{n}", "kind": "air", "name": f"S{n}"},
                "geometry": {"type": "Point", "coordinates": [lon, -40.5]},
            }
            for n, lon in ((1, 100.51), (2, 100.52))
        ],
    }
    path = tmp_path / "sensors.geojson"
    path.write_bytes(orjson.dumps(sensors))
    imported = await urbanpulse(settings, "sensors", "import", str(path))
    assert imported.returncode == 0, imported.stderr

    rows = await audit_rows_since(db, since, [CLI_ACTOR])
    mine = [r for r in rows if r["target"].startswith(prefix)]
    assert [(r["action"], r["target"]) for r in mine] == [
        ("key.create", name),
        ("key.revoke", name),
        ("sensor.import", f"{prefix}-audit-1"),
        ("sensor.import", f"{prefix}-audit-2"),
    ]
    assert all(r["key_id"] is None for r in mine)  # a local user, not an API key
    assert mine[0]["detail"] == {"role": "operator"} and mine[1]["detail"] == {}
    assert mine[2]["detail"] == {
        "sensor_id": f"{prefix}-audit-1",
        "kind": "air",
        "lat": -40.5,
        "lon": 100.51,
        "name": "S1",
        "status": "active",
        "metadata": {},
        "source": str(path),
    }
