"""The WebSocket live feed on the real stack: Kafka -> API hub -> subscribed clients.

Alerts are raised for real: a reading published over MQTT goes through the bridge, the processor
and its rules (``rules/default.yaml``) to the alerts topic, and from there to the clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.e2e.api_support import Api, World, build_world, live_connect, running_api
from tests.e2e.conftest import running_pipeline
from urbanpulse.alerts.model import Alert, AlertEvent, AlertState, EventType
from urbanpulse.bus import ensure_topics, new_producer
from urbanpulse.core.envelope import Reading, readings_records
from urbanpulse.core.settings import KafkaPrincipal, Settings
from urbanpulse.core.vocabulary import Severity
from urbanpulse.ingest.records import READINGS_HEADERS, RECORD_BYTES
from urbanpulse.simulators.gateway import MqttGateway, data_topic, reading_payload
from urbanpulse.storage.keys import Role, create_api_key
from urbanpulse.stream.alerting import event_json

# rules/default.yaml, "bin-fire": a bin's temperature above 60 °C, critical.
BIN_FIRE = "bin-fire"
HOT, COOL = {"temperature": 75.0, "fill": 40.0}, {"temperature": 30.0, "fill": 40.0}


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    await ensure_topics(settings.kafka_as(KafkaPrincipal.ADMIN))
    async with running_api(settings) as running:
        yield running


async def next_message(ws: ClientConnection, kind: str, timeout_s: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        message = orjson.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
        if message["type"] == kind:
            return dict(message)


async def alert_event_for(
    ws: ClientConnection, sensor_id: str, rule_id: str, timeout_s: float = 60
) -> dict[str, Any]:
    """The first alert event of ``rule_id`` for ``sensor_id`` (others, e.g. offline, pass)."""
    deadline = time.monotonic() + timeout_s
    while True:
        message = await next_message(ws, "alerts", deadline - time.monotonic())
        for event in message["alerts"]:
            alert = event["alert"]
            if alert["sensor_id"] == sensor_id and alert["rule_id"] == rule_id:
                return dict(event)


async def follow(ws: ClientConnection, send: Any) -> None:
    """The API's consumer starts at the end of the topics once placed: ``send()`` readings
    until one comes through, then drain what the pings left."""
    deadline = time.monotonic() + 60
    while True:
        await send()
        try:
            await next_message(ws, "readings", timeout_s=0.5)
            break
        except TimeoutError:
            if time.monotonic() > deadline:
                pytest.fail("the live feed never delivered a reading")
    while True:
        try:
            await asyncio.wait_for(ws.recv(), 0.4)
        except TimeoutError:
            break


class Gateway:
    """A field gateway of the test: publishes its sensors' readings over MQTT (QoS 1)."""

    def __init__(self, settings: Settings, kind: str) -> None:
        self.settings, self.kind = settings, kind
        client_id = f"{settings.kafka.topic_prefix}-gw-{kind}"
        self.mqtt = MqttGateway(settings.mqtt, client_id=client_id)

    async def send(self, sensor_id: str, values: dict[str, float]) -> None:
        topic = data_topic(self.settings.mqtt, self.kind, sensor_id)
        self.mqtt.publish(topic, reading_payload(datetime.now(UTC), values))


@contextlib.asynccontextmanager
async def gateway(settings: Settings, kind: str) -> AsyncIterator[Gateway]:
    gw = Gateway(settings, kind)
    await asyncio.to_thread(gw.mqtt.connect)
    try:
        yield gw
    finally:
        await asyncio.to_thread(gw.mqtt.close)


def bridge_record(reading: Reading) -> bytes:
    """The record the bridge writes for an MQTT message of this one reading."""
    [value] = readings_records([reading], RECORD_BYTES)
    return value


async def test_readings_arrive_coalesced_and_subscriptions_change(
    api: Api, settings: Settings, db: asyncpg.Connection
) -> None:
    world: World = await build_world(db, settings)
    a1, a3 = world.sensors["a1"], world.sensors["a3"]
    producer = new_producer(settings.kafka_as(KafkaPrincipal.ADMIN), "live-test")
    await producer.start()
    readings_topic = settings.kafka.topic("readings")

    async def send(sensor_id: str, ts: datetime, pm25: float) -> None:
        now = datetime.now(UTC)
        value = bridge_record(Reading(sensor_id, "air", ts, {"pm25": pm25}, now, "test"))
        await producer.send_and_wait(
            readings_topic, value, key=sensor_id.encode(), headers=READINGS_HEADERS
        )

    try:
        async with live_connect(api.url, api.keys["viewer"], {"areas": world.ward(1)}) as ws:
            hello = await next_message(ws, "subscribed")
            assert hello["subscription"]["areas"] == [world.ward(1)]

            base = datetime.now(UTC) - timedelta(minutes=10)
            pings = iter(range(1000))
            await follow(ws, lambda: send(a1, base + timedelta(seconds=next(pings)), 1.0))

            # A burst for one sensor arrives coalesced: few messages, the newest value last.
            newest = datetime.now(UTC)
            for n in range(50):
                await send(a1, newest - timedelta(seconds=50 - n), float(n))
            await send(a3, newest, 999.0)  # ward 2: not subscribed
            received: list[dict[str, Any]] = []
            while not received or received[-1]["values"]["pm25"] != 49.0:
                received += (await next_message(ws, "readings", timeout_s=5))["readings"]
            assert all(r["sensor_id"] == a1 for r in received)
            assert len(received) < 50
            assert received[-1]["lon"] == pytest.approx(world.lon + 0.02)

            # Subscriptions change on the fly; bad ones are answered, not fatal.
            await ws.send(orjson.dumps({"type": "subscribe", "kinds": ["noise"]}).decode())
            assert "unknown kind" in (await next_message(ws, "error"))["message"]
            await ws.send(orjson.dumps({"type": "subscribe", "areas": [world.ward(2)]}).decode())
            assert (await next_message(ws, "subscribed"))["subscription"]["areas"] == [
                world.ward(2)
            ]
            await send(a3, newest + timedelta(seconds=1), 5.0)
            [latest] = (await next_message(ws, "readings"))["readings"]
            assert latest["sensor_id"] == a3
    finally:
        await producer.stop()


async def test_the_feed_refuses_bad_keys_and_bad_subscriptions(api: Api) -> None:
    viewer = api.keys["viewer"]
    for key, params, code in [
        (None, {}, 4401),  # no key and no ticket: its first message is no auth message
        ("up_0a1b2c3d_wrong", {}, 4401),
        (viewer, {"kinds": "noise"}, 4400),
        (viewer, {"bbox": "5,5,1,1"}, 4400),
    ]:
        async with live_connect(api.url, key, params) as ws:
            if key is None:
                await ws.send(orjson.dumps({"type": "subscribe"}).decode())
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == code
            assert closed.value.rcvd.reason


async def test_an_alert_raised_by_a_published_reading_reaches_the_subscribed_clients(
    settings: Settings, db: asyncpg.Connection
) -> None:
    """Issue 15: real alert events (``{"event", "at", "alert"}``) reached filtered clients
    never, and others blank."""
    world: World = await build_world(db, settings)
    bin1 = world.sensors["b1"]  # in ward 2
    viewer = await create_api_key(db, f"{world.prefix}-live-viewer", Role.VIEWER)
    async with (
        running_pipeline(settings) as pipeline,
        gateway(settings, "waste_bin") as gw,
        live_connect(pipeline.api_url, viewer, {"areas": world.ward(2)}) as ward2,
        live_connect(pipeline.api_url, viewer, {"kinds": "waste_bin"}) as bins,
    ):
        await next_message(ward2, "subscribed")
        await next_message(bins, "subscribed")
        await follow(ward2, lambda: gw.send(bin1, COOL))
        await gw.send(bin1, HOT)
        for ws in (ward2, bins):
            event = await alert_event_for(ws, bin1, BIN_FIRE)
            alert = event["alert"]
            assert event["event"] == "opened"
            assert (alert["state"], alert["severity"]) == ("open", "critical")
            assert alert["area_id"] == world.ward(2) and alert["kind"] == "waste_bin"
            assert alert["message_en"].startswith("Possible bin fire: Temperature 75")
            assert alert["message_vi"].startswith("Nghi cháy thùng rác: Nhiệt độ 75")
            assert bin1 in alert["message_en"]
            stored = await db.fetchrow(
                "SELECT alert_id, state FROM alerts WHERE sensor_id = $1 AND rule_id = $2",
                bin1,
                BIN_FIRE,
            )
            assert stored is not None and tuple(stored) == (alert["alert_id"], "open")


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


async def test_bad_records_on_either_topic_do_not_stop_the_feed(
    api: Api, settings: Settings, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 9: one record the hub could not read ended its consumer task, silently."""
    world: World = await build_world(db, settings)
    a1 = world.sensors["a1"]
    producer = new_producer(settings.kafka_as(KafkaPrincipal.ADMIN), "live-test")
    await producer.start()
    readings_topic, alerts_topic = settings.kafka.topic("readings"), settings.kafka.topic("alerts")

    def reading(ts: datetime, pm25: float) -> bytes:  # sent without a header: read by content
        return bridge_record(Reading(a1, "air", ts, {"pm25": pm25}, datetime.now(UTC), "test"))

    good = reading(datetime.now(UTC), 7.0)
    bad_readings = [
        b"\xff not json",
        good.replace(b'"location":null', b'"location":["x","y"]'),
        good.replace(b'"sensor_id":"' + a1.encode() + b'"', b'"sensor_id":' + _deep(1020)),
        good.replace(b'"source":"test"', b'"source":"' + b"x" * 200_000 + b'"'),
    ]
    bad_alerts = [
        b"{",
        orjson.dumps({"alert_id": "flat", "sensor_id": a1, "message_en": "hand-written"}),
        b'{"event": "opened", "at": ' + _deep(1020) + b"}",
    ]
    now = datetime.now(UTC)
    real_alert = Alert(
        alert_id=f"{world.prefix}-real",
        rule_id="pm25-24h-qcvn",
        subject=a1,
        kind="air",
        severity=Severity.WARNING,
        state=AlertState.OPEN,
        opened_at=now,
        last_triggered_at=now,
        value=61.0,
        threshold=45.0,
        message_vi="Bụi mịn PM2.5 vượt quy chuẩn",
        message_en="PM2.5 above the national limit",
        sensor_id=a1,
        area_id=world.ward(1),
        metric="pm25",
    )
    try:
        async with live_connect(api.url, api.keys["viewer"], {"areas": world.ward(1)}) as ws:
            await next_message(ws, "subscribed")
            base = datetime.now(UTC) - timedelta(minutes=10)
            pings = iter(range(1000))
            await follow(
                ws,
                lambda: producer.send_and_wait(
                    readings_topic, reading(base + timedelta(seconds=next(pings)), 1.0)
                ),
            )
            with caplog.at_level(logging.WARNING, logger="urbanpulse.api.live"):
                for value in bad_readings:
                    await producer.send_and_wait(readings_topic, value, key=a1.encode())
                for value in bad_alerts:
                    await producer.send_and_wait(alerts_topic, value)
                # After them, on the same partitions: a real reading and a real alert event.
                await producer.send_and_wait(readings_topic, good, key=a1.encode())
                record = event_json(AlertEvent(EventType.OPENED, real_alert), now)
                await producer.send_and_wait(alerts_topic, record)
                alerts: list[dict[str, Any]] = []
                readings: list[dict[str, Any]] = []
                async with asyncio.timeout(60):
                    while not alerts or not any(r["values"]["pm25"] == 7.0 for r in readings):
                        message = orjson.loads(await ws.recv())
                        alerts += message.get("alerts", [])
                        readings += message.get("readings", [])
                [event] = alerts
                assert event["alert"]["alert_id"] == real_alert.alert_id
                assert event["alert"]["message_en"] == "PM2.5 above the national limit"
        skipped = [r.getMessage() for r in caplog.records if "skipped a record" in r.getMessage()]
        assert skipped and readings_topic in skipped[0]  # logged once per interval
        assert all(len(line) < 1000 for line in skipped)
    finally:
        await producer.stop()
