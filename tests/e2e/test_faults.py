"""Crash every part mid-stream: every accepted reading is stored, and stored exactly once.

The bridge and the processor run as real ``urbanpulse`` processes and are SIGKILLed; Kafka and
PostgreSQL are killed and restarted through the local stack.  All the while a gateway keeps
publishing.  At the end the stored (sensor_id, ts) pairs must be exactly those published.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg

from tests.e2e.conftest import ServiceProcess, eventually
from urbanpulse.core.settings import Settings
from urbanpulse.simulators.air import AirSensorModel
from urbanpulse.simulators.fleet import place_sensors
from urbanpulse.simulators.gateway import MqttGateway, data_topic, reading_payload
from urbanpulse.stack import LocalStack
from urbanpulse.storage import registry
from urbanpulse.storage.db import connect

TOTAL = 4000
RATE = 300.0  # readings per second, so that the faults land mid-stream


def publish_paced(gateway: MqttGateway, messages: list[tuple[str, bytes]], rate: float) -> None:
    started = time.monotonic()
    for index, (topic, payload) in enumerate(messages):
        gateway.publish(topic, payload)
        ahead = started + (index + 1) / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)


async def stored_pairs(settings: Settings, sensor_ids: list[str]) -> set[tuple[str, datetime]]:
    """A fresh connection each time: PostgreSQL itself is restarted during the test."""
    try:
        conn = await connect(settings.database)
    except (OSError, asyncpg.PostgresError):
        return set()
    try:
        rows = await conn.fetch(
            "SELECT sensor_id, ts FROM readings_air WHERE sensor_id = ANY($1::text[])", sensor_ids
        )
    finally:
        await conn.close()
    return {(r["sensor_id"], r["ts"]) for r in rows}


async def wait_until_flowing(settings: Settings, gateway: MqttGateway, probe_id: str) -> None:
    """Publish probe readings until one is stored: the bridge has subscribed (and so owns a
    persistent session the broker queues for) and the processor is consuming.  Before that
    first subscription a broker drops what is published, as MQTT specifies."""
    topic = data_topic(settings.mqtt, "air", probe_id)

    async def probe_stored() -> bool:
        gateway.publish(topic, reading_payload(datetime.now(UTC), {"pm25": 1.0}))
        return bool(await stored_pairs(settings, [probe_id]))

    assert await eventually(probe_stored, bool, timeout_s=120, interval_s=0.5)


async def test_killing_and_restarting_every_part_loses_and_doubles_nothing(
    settings: Settings,
    db: asyncpg.Connection,
    local_stack: LocalStack,
    service_process: Callable[[str], ServiceProcess],
) -> None:
    fleet = place_sensors("air", 8, seed=11, prefix=settings.kafka.topic_prefix)
    await registry.upsert(
        db, [registry.SensorRecord(s.sensor_id, "air", s.lat, s.lon) for s in fleet]
    )
    models = [AirSensorModel(sensor, seed=11) for sensor in fleet]
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    published: set[tuple[str, datetime]] = set()
    messages = []
    for i in range(TOTAL):
        model, ts = models[i % len(models)], start + timedelta(seconds=i)
        published.add((model.sensor.sensor_id, ts))
        topic = data_topic(settings.mqtt, "air", model.sensor.sensor_id)
        messages.append((topic, reading_payload(ts, model.values_at(ts))))

    bridge = service_process("bridge")
    processor = service_process("process")
    gateway = MqttGateway(settings.mqtt, client_id=f"{settings.kafka.topic_prefix}-gateway")
    await asyncio.to_thread(gateway.connect)
    await wait_until_flowing(settings, gateway, f"{settings.kafka.topic_prefix}-probe")
    publishing = asyncio.create_task(asyncio.to_thread(publish_paced, gateway, messages, RATE))

    async def progress() -> int:
        return gateway.sent

    faults = [
        (0.2, "bridge", bridge.kill, bridge.start),
        (0.4, "processor", processor.kill, processor.start),
        (
            0.6,
            "kafka",
            lambda: local_stack.stop_service("kafka", hard=True),
            lambda: local_stack.start_service("kafka"),
        ),
        (
            0.8,
            "postgres",
            lambda: local_stack.stop_service("postgres", hard=True),
            lambda: local_stack.start_service("postgres"),
        ),
    ]
    for share, _name, kill, restart in faults:
        await eventually(progress, lambda sent, share=share: sent >= share * TOTAL, timeout_s=120)
        await asyncio.to_thread(kill)
        await asyncio.to_thread(restart)
    await publishing
    await asyncio.to_thread(gateway.close)
    assert gateway.acked == gateway.sent

    sensor_ids = [s.sensor_id for s in fleet]
    stored = await eventually(
        lambda: stored_pairs(settings, sensor_ids), lambda pairs: len(pairs) >= TOTAL, timeout_s=180
    )
    missing = published - stored
    assert not missing, f"{len(missing)} readings lost, e.g. {sorted(missing)[:3]}"
    # The primary key makes a doubled row impossible; a stray extra would show up here.
    assert stored == published
    # Both services shut down cleanly on SIGTERM once the storm is over.
    assert bridge.stop() == 0, bridge.log_text()[-3000:]
    assert processor.stop() == 0, processor.log_text()[-3000:]
