"""README promises no other test checks, on the real stack: every ``/v1/alerts`` filter narrows
the list of alerts the pipeline raised; ``/healthz`` answers 503 naming the dependency that is
down; a live client that never reads is closed with 1013; and a gateway's batch with good and
bad readings keeps the good ones and dead-letters the bad one by item and field."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from tests.conftest import free_ports
from tests.e2e.api_support import Api, World, build_world, live_url, running_api
from tests.e2e.conftest import (
    Pipeline,
    eventually,
    read_topic,
    running_pipeline,
    with_rules_file,
)
from tests.e2e.promises_support import assert_error
from urbanpulse.alerts.model import Alert, AlertEvent, AlertState, EventType
from urbanpulse.bus import ensure_topics, new_producer
from urbanpulse.core.envelope import DeadLetter
from urbanpulse.core.settings import KafkaPrincipal, Settings
from urbanpulse.core.vocabulary import Severity
from urbanpulse.simulators.gateway import MqttGateway, data_topic, reading_payload
from urbanpulse.storage import registry
from urbanpulse.storage.keys import Role, create_api_key
from urbanpulse.stream.alerting import event_json

# --------------------------------------------------------------------------- alert filters

RULES = """
version: 1
defaults: {cooldown: 1h}
rules:
  - id: {p}-pm25
    kind: air
    metric: pm25
    above: 100
    severity: warning
    citation: "test limit"
  - id: {p}-bin-full
    kind: waste_bin
    metric: fill
    at_least: 90
    severity: critical
    citation: "test limit"
  - id: {p}-ph-low
    kind: water
    metric: ph
    below: 6
    severity: info
    citation: "test limit"
"""


def with_rules(settings: Settings, tmp_path: Path) -> Settings:
    rules = RULES.replace("{p}", settings.kafka.topic_prefix)
    return with_rules_file(settings, tmp_path, rules, check_interval_s=0.3)


async def alerts_by_sensor(db: asyncpg.Connection, world: World) -> dict[str, dict[str, Any]]:
    rows = await db.fetch(
        "SELECT * FROM alerts WHERE sensor_id = ANY($1::text[])", list(world.sensors.values())
    )
    return {r["sensor_id"]: dict(r) for r in rows}


async def test_every_alert_filter_narrows_the_list(
    settings: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    world = await build_world(db, settings)
    settings = with_rules(settings, tmp_path)
    prefix = settings.kafka.topic_prefix
    s = world.sensors
    now = datetime.now(UTC).replace(microsecond=0)
    earlier = now - timedelta(hours=2)
    # (sensor, kind, event time, values): five alerts, one sensor within every limit.
    published = [
        (s["a1"], "air", earlier, {"pm25": 180.0}),  # ward 1, warning, two hours ago
        (s["a2"], "air", now, {"pm25": 20.0}),  # no alert
        (s["a3"], "air", now, {"pm25": 200.0}),  # ward 2, warning
        (s["b1"], "waste_bin", now, {"fill": 95.0}),  # ward 2, critical
        (s["b2"], "waste_bin", now, {"fill": 92.0}),  # ward 1, critical
        (s["w1"], "water", now, {"ph": 5.0}),  # ward 2, info
    ]
    async with running_pipeline(settings) as pipeline:
        gateway = MqttGateway(settings.mqtt, client_id=f"{prefix}-gw")
        await asyncio.to_thread(gateway.connect)
        for sensor_id, kind, ts, values in published:
            gateway.publish(data_topic(settings.mqtt, kind, sensor_id), reading_payload(ts, values))
        await asyncio.to_thread(gateway.close)
        raised = await eventually(lambda: alerts_by_sensor(db, world), lambda a: len(a) == 5)
        assert set(raised) == {s["a1"], s["a3"], s["b1"], s["b2"], s["w1"]}
        assert raised[s["a1"]]["opened_at"] == earlier

        operator = await create_api_key(db, f"{prefix}-operator", Role.OPERATOR)
        async with pipeline.http(operator) as http:
            ack = raised[s["b2"]]["alert_id"]
            assert (await http.post(f"/v1/alerts/{ack}/acknowledge", json={})).status_code == 200
            done = raised[s["a3"]]["alert_id"]
            assert (await http.post(f"/v1/alerts/{done}/resolve", json={})).status_code == 200
        await _check_filters(pipeline, db, world, prefix, now - timedelta(hours=1))


async def _check_filters(
    pipeline: Pipeline, db: asyncpg.Connection, world: World, prefix: str, cut: datetime
) -> None:
    s = world.sensors
    mine = {a["alert_id"]: a for a in (await alerts_by_sensor(db, world)).values()}

    def sensors(*short: str) -> set[str]:
        return {s[name] for name in short}

    # (query, what every alert listed must satisfy, which of ours it must list)
    cases: list[tuple[dict[str, str], Callable[[dict[str, Any]], bool], set[str]]] = [
        ({"state": "open"}, lambda a: a["state"] == "open", sensors("a1", "b1", "w1")),
        ({"state": "acknowledged"}, lambda a: a["state"] == "acknowledged", sensors("b2")),
        ({"state": "resolved"}, lambda a: a["state"] == "resolved", sensors("a3")),
        ({"severity": "critical"}, lambda a: a["severity"] == "critical", sensors("b1", "b2")),
        ({"severity": "info"}, lambda a: a["severity"] == "info", sensors("w1")),
        ({"kind": "waste_bin"}, lambda a: a["kind"] == "waste_bin", sensors("b1", "b2")),
        ({"kind": "air"}, lambda a: a["kind"] == "air", sensors("a1", "a3")),
        ({"area": world.ward(1)}, lambda a: a["area_id"] == world.ward(1), sensors("a1", "b2")),
        (
            {"area": world.ward(2)},
            lambda a: a["area_id"] == world.ward(2),
            sensors("a3", "b1", "w1"),
        ),
        # An area holds the alerts of the areas below it, as in /v1/areas' open_alerts.
        (
            {"area": world.province},
            lambda a: a["area_id"] in {world.ward(1), world.ward(2), world.province},
            sensors("a1", "a3", "b1", "b2", "w1"),
        ),
        (
            {"rule": f"{prefix}-pm25"},
            lambda a: a["rule_id"] == f"{prefix}-pm25",
            sensors("a1", "a3"),
        ),
        ({"sensor": s["w1"]}, lambda a: a["sensor_id"] == s["w1"], sensors("w1")),
        (
            {"from": cut.isoformat()},
            lambda a: datetime.fromisoformat(a["opened_at"]) >= cut,
            sensors("a3", "b1", "b2", "w1"),
        ),
        (
            {"to": cut.isoformat()},
            lambda a: datetime.fromisoformat(a["opened_at"]) < cut,
            sensors("a1"),
        ),
        (
            {"state": "open", "kind": "air", "area": world.ward(1)},
            lambda a: (a["state"], a["kind"], a["area_id"]) == ("open", "air", world.ward(1)),
            sensors("a1"),
        ),
    ]
    async with pipeline.http() as http:
        for query, holds, expected in cases:
            response = await http.get("/v1/alerts", params={**query, "limit": 1000})
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["total"] == len(body["alerts"]), "more alerts than one page"
            listed = body["alerts"]
            assert all(holds(a) for a in listed), query
            assert {a["sensor_id"] for a in listed if a["alert_id"] in mine} == expected, query
        # The province's count on the choropleth is the list's count of alerts not resolved.
        areas = (await http.get("/v1/areas", params={"level": "province"})).json()["features"]
        [province] = [f for f in areas if f["id"] == world.province]
        active = await http.get("/v1/alerts", params={"area": world.province, "state": "open"})
        acked = await http.get(
            "/v1/alerts", params={"area": world.province, "state": "acknowledged"}
        )
        assert province["properties"]["open_alerts"] == (
            active.json()["total"] + acked.json()["total"]
        )
        assert_error(await http.get("/v1/alerts", params={"severity": "fatal"}), 422, "severity")
        assert_error(await http.get("/v1/alerts", params={"kind": "noise"}), 422, "kind")
        unknown = await http.get("/v1/alerts", params={"area": f"{prefix}-nowhere"})
        assert_error(unknown, 422, "unknown area")


# --------------------------------------------------------------------------- /healthz


class Relay:
    """A TCP relay in front of the database, cut and restored like a failing network link."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        [self.port] = free_ports(1)
        self.server: asyncio.Server | None = None
        self.links: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._link, "127.0.0.1", self.port)

    async def cut(self) -> None:
        """Stop listening and break every open link."""
        assert self.server is not None
        self.server.close()
        for writer in self.links:
            writer.transport.abort()
        self.links.clear()
        await self.server.wait_closed()

    async def _link(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.links += [client_w, server_w]
        await asyncio.gather(
            self._pipe(client_r, server_w), self._pipe(server_r, client_w), return_exceptions=True
        )

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()


async def health(api: Api) -> httpx.Response:
    async with api.http(None) as anonymous:  # /healthz is always open
        return await anonymous.get("/healthz")


def servers(body: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The status and the two server checks; the ``ingest`` check (is data flowing?) has its
    own tests in test_health.py, and here only has to be there."""
    checks = dict(body["checks"])
    assert "ingest" in checks, body
    del checks["ingest"]
    return body["status"], checks


ALL_OK = ("ok", {"database": "ok", "kafka": "ok"})


async def test_healthz_is_503_naming_the_dependency_that_is_down(settings: Settings) -> None:
    async with running_api(settings) as api:
        response = await health(api)
        assert (response.status_code, servers(response.json())) == (200, ALL_OK)

    [closed_port] = free_ports(1)
    kafka = settings.kafka_as(KafkaPrincipal.ADMIN).model_copy(
        update={"bootstrap_servers": f"127.0.0.1:{closed_port}"}
    )
    async with running_api(settings.model_copy(update={"kafka": kafka})) as api:
        response = await health(api)
        assert response.status_code == 503, response.text
        assert servers(response.json()) == ("degraded", {"database": "ok", "kafka": "unreachable"})

    relay = Relay(settings.database.port)
    await relay.start()
    database = settings.database.model_copy(update={"port": relay.port})
    try:
        async with running_api(settings.model_copy(update={"database": database})) as api:
            assert (await health(api)).status_code == 200
            await relay.cut()
            response = await eventually(lambda: health(api), lambda r: r.status_code != 200)
            assert response.status_code == 503, response.text
            assert servers(response.json()) == (
                "degraded",
                {"database": "unreachable", "kafka": "ok"},
            )
            await relay.start()  # the link comes back: so does the health
            response = await eventually(lambda: health(api), lambda r: r.status_code == 200)
            assert servers(response.json()) == ALL_OK
    finally:
        await relay.cut()


# --------------------------------------------------------------------------- slow live client

PADDING = "x" * 20_000  # a long alert text: fills the slow client's buffers in fewer alerts


def padded_alert_event(number: int) -> bytes:
    """An alerts-topic record made by the processor's own serializer, with a long text."""
    at = datetime.now(UTC)
    alert = Alert(
        alert_id=f"slow-{number}",
        rule_id="slow-client",
        subject=f"slow-{number}",
        kind="air",
        severity=Severity.WARNING,
        state=AlertState.OPEN,
        opened_at=at,
        last_triggered_at=at,
        value=None,
        threshold=None,
        message_vi="chậm",
        message_en=PADDING,
    )
    return event_json(AlertEvent(EventType.OPENED, alert), at)


class StalledClient:
    """A WebSocket client (websockets' own protocol, sans I/O) whose socket nobody reads until
    the test says so, behind a small fixed receive buffer: a wall screen that froze, or a phone
    on a poor link.  (An asyncio client library keeps reading into memory whatever the
    application does, so it cannot stall like this.)"""

    def __init__(self, url: str, key: str) -> None:
        self.protocol = ClientProtocol(parse_uri(url), max_size=None)
        self.key = key
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)  # before connect
        self.sock.setblocking(False)
        self.loop = asyncio.get_running_loop()
        self.events: list[Any] = []

    async def open(self, host: str, port: int) -> None:
        await self.loop.sock_connect(self.sock, (host, port))
        request = self.protocol.connect()
        request.headers["X-API-Key"] = self.key
        self.protocol.send_request(request)
        await self._flush()
        while self.protocol.state is State.CONNECTING:
            await self._receive()
        assert self.protocol.state is State.OPEN, self.protocol.handshake_exc

    async def next_message(self, timeout_s: float = 10) -> dict[str, Any]:
        """The next text message, read as a client that keeps up would."""
        async with asyncio.timeout(timeout_s):
            while True:
                while self.events:
                    event = self.events.pop(0)
                    if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                        message: dict[str, Any] = orjson.loads(event.data)
                        return message
                if not await self._receive():
                    raise AssertionError("the server closed the connection")

    async def read_until_closed(self, timeout_s: float) -> tuple[int, Close | None]:
        """Read everything the server sent: (data frames, the close frame if one came)."""
        frames = 0
        async with asyncio.timeout(timeout_s):
            while self.protocol.state is not State.CLOSED:
                if not await self._receive():
                    break
                frames += sum(isinstance(e, Frame) and e.opcode is Opcode.TEXT for e in self.events)
                self.events.clear()
                await self._flush()  # answers pings and the closing handshake
        return frames, self.protocol.close_rcvd

    async def _receive(self) -> bool:
        data = await self.loop.sock_recv(self.sock, 1 << 16)
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        self.events += self.protocol.events_received()
        return bool(data)

    async def _flush(self) -> None:
        for chunk in self.protocol.data_to_send():
            if chunk:
                await self.loop.sock_sendall(self.sock, chunk)

    def close(self) -> None:
        self.sock.close()


async def test_a_live_client_that_never_reads_is_closed_with_1013(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="urbanpulse.api.routers.live")
    await ensure_topics(settings.kafka_as(KafkaPrincipal.ADMIN))
    producer = new_producer(settings.kafka_as(KafkaPrincipal.ADMIN), "slow-client-test")
    await producer.start()
    alerts_topic = settings.kafka.topic("alerts")
    published = 0

    async def publish(count: int) -> None:
        nonlocal published
        for _ in range(count):
            published += 1
            await producer.send(alerts_topic, padded_alert_event(published))
        await producer.flush()

    def dropped() -> bool:  # the API's side of it: this test's API has no other client
        return any("dropping a client" in r.getMessage() for r in caplog.records)

    try:
        async with running_api(settings) as api:
            host, port = api.url.removeprefix("http://").split(":")
            slow = StalledClient(live_url(api.url), api.keys["viewer"])
            try:
                await slow.open(host, int(port))
                assert (await slow.next_message())["type"] == "subscribed"
                # The API's consumer starts at the end of the topic: publish until it follows.
                for _ in range(100):
                    await publish(1)
                    try:
                        if (await slow.next_message(timeout_s=0.5))["type"] == "alerts":
                            break
                    except TimeoutError:
                        continue
                else:
                    pytest.fail("the live feed never delivered an alert")
                # From now on the client reads nothing while many events are pushed, until
                # the API gives up on it.
                await eventually(lambda: publish(100), lambda _: dropped(), timeout_s=120)
                assert dropped(), "the API never dropped the client that does not read"
                frames, close = await slow.read_until_closed(timeout_s=60)
            finally:
                slow.close()
            assert frames > 0, "nothing was sent before the API gave up"
            assert close is not None, "the connection ended without a close frame"
            assert close.code == 1013
            assert "too slow" in close.reason
    finally:
        await producer.stop()


# --------------------------------------------------------------------------- a mixed batch


async def test_a_batch_with_good_and_bad_readings_keeps_the_good_and_names_the_bad(
    settings: Settings, db: asyncpg.Connection, pipeline: Pipeline
) -> None:
    sensor_id = f"{settings.kafka.topic_prefix}-batch"
    await registry.upsert(db, [registry.SensorRecord(sensor_id, "air", 10.77, 106.70)])
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
    batch = [
        {"ts": start.isoformat(), "values": {"pm25": 31.5, "no2": 40.0}, "seq": 1},
        {"ts": (start + timedelta(minutes=1)).isoformat(), "values": {"pm25": -4.0}, "seq": 2},
        {"ts": (start + timedelta(minutes=2)).isoformat(), "values": {"pm25": 33.0}, "seq": 3},
    ]
    payload = orjson.dumps(batch)
    topic = data_topic(settings.mqtt, "air", sensor_id)
    gateway = MqttGateway(settings.mqtt, client_id=f"{settings.kafka.topic_prefix}-gw")
    await asyncio.to_thread(gateway.connect)
    gateway.publish(topic, payload)
    await asyncio.to_thread(gateway.close)
    assert gateway.acked == 1

    async def stored() -> list[tuple[datetime, float, float | None]]:
        rows = await db.fetch(
            "SELECT ts, pm25, no2 FROM readings_air WHERE sensor_id = $1 ORDER BY ts", sensor_id
        )
        return [(r["ts"], r["pm25"], r["no2"]) for r in rows]

    expected = [(start, 31.5, 40.0), (start + timedelta(minutes=2), 33.0, None)]
    assert await eventually(stored, lambda rows: len(rows) >= 2) == expected

    [dead] = [
        DeadLetter.from_json(value)
        for value in await read_topic(settings, settings.kafka.topic("deadletter"), 1)
    ]
    # The item's index in the array and the field: the catalogue's range for PM2.5 is 0..2000.
    [reason] = dead.reasons
    assert reason.startswith("[1] values.pm25=-4.0 outside the possible range 0..2000"), reason
    assert (dead.source, dead.stage, dead.raw) == (topic, "ingest", payload)
    assert (pipeline.bridge.counters.readings, pipeline.bridge.counters.dead_letters) == (2, 1)
    assert await stored() == expected
