"""The WebSocket live feed on the real stack: Kafka -> API hub -> subscribed clients."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.e2e.api_support import Api, World, build_world, running_api
from urbanpulse.bus import ensure_topics, new_producer
from urbanpulse.core.envelope import Reading
from urbanpulse.core.settings import Settings


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    await ensure_topics(settings.kafka)
    async with running_api(settings) as running:
        yield running


def ws_url(api: Api, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return api.url.replace("http://", "ws://") + f"/v1/live?{query}"


async def next_message(ws: ClientConnection, kind: str, timeout_s: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        message = orjson.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
        if message["type"] == kind:
            return dict(message)


async def test_readings_arrive_coalesced_and_alerts_pass_through(
    api: Api, settings: Settings, db: asyncpg.Connection
) -> None:
    world: World = await build_world(db, settings)
    a1, a3 = world.sensors["a1"], world.sensors["a3"]
    producer = new_producer(settings.kafka, "live-test")
    await producer.start()
    readings_topic = settings.kafka.topic("readings")

    async def send(sensor_id: str, ts: datetime, pm25: float) -> None:
        now = datetime.now(UTC)
        value = Reading(sensor_id, "air", ts, {"pm25": pm25}, now, "test").to_json()
        await producer.send_and_wait(readings_topic, value, key=sensor_id.encode())

    try:
        async with connect(ws_url(api, key=api.keys["viewer"], areas=world.ward(1))) as ws:
            hello = await next_message(ws, "subscribed")
            assert hello["subscription"]["areas"] == [world.ward(1)]

            # The API's consumer starts at the end of the topic: ping until it follows.
            base = datetime.now(UTC) - timedelta(minutes=10)
            for attempt in range(100):
                await send(a1, base + timedelta(seconds=attempt), 1.0)
                try:
                    await next_message(ws, "readings", timeout_s=0.5)
                    break
                except TimeoutError:
                    continue
            else:
                pytest.fail("the live feed never delivered a reading")
            while True:  # drain what the pings left
                try:
                    await asyncio.wait_for(ws.recv(), 0.4)
                except TimeoutError:
                    break

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

            alert = {
                "alert_id": f"{world.prefix}-alert",
                "rule_id": "pm25_1h",
                "state": "open",
                "severity": "critical",
                "sensor_id": a1,
                "area_id": world.ward(1),
                "message_vi": "PM2.5 vượt ngưỡng",
                "message_en": "PM2.5 above the limit",
            }
            # How fast (publish to client) is measured by bench/api_latency.py, not asserted.
            await producer.send_and_wait(settings.kafka.topic("alerts"), orjson.dumps(alert))
            got = await next_message(ws, "alerts", timeout_s=5)
            assert got["alerts"] == [alert]

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
    for url, code in [
        (ws_url(api), 4401),
        (ws_url(api, key="up_wrong"), 4401),
        (ws_url(api, key=api.keys["viewer"], kinds="noise"), 4400),
        (ws_url(api, key=api.keys["viewer"], bbox="5,5,1,1"), 4400),
    ]:
        async with connect(url) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == code
            assert closed.value.rcvd.reason
