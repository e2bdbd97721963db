"""Two bridges share the readings through an MQTT 5 shared subscription (issue 10), on the real
Mosquitto and Kafka: each reading reaches Kafka once, both bridges carry a share, and a bridge
that is away, or killed, gets what the broker queued for its session when it comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from tests.e2e.conftest import ServiceProcess, eventually, read_readings, running_service
from tests.e2e.test_faults import publish_paced, stored_pairs
from urbanpulse.bus import TopicCounter
from urbanpulse.core.settings import KafkaPrincipal, Settings
from urbanpulse.ingest.bridge import MqttBridge
from urbanpulse.ingest.service import run_bridge
from urbanpulse.simulators.gateway import MqttGateway, data_topic, reading_payload
from urbanpulse.storage import registry
from urbanpulse.stream.processor import StreamProcessor
from urbanpulse.stream.service import run_processor

SENSORS = 20


def instance(settings: Settings, number: int) -> Settings:
    """The settings of bridge instance ``number``: same share group, its own session."""
    group = f"{settings.kafka.topic_prefix}-bridge"
    mqtt = settings.mqtt.model_copy(update={"bridge_instance": str(number), "share_group": group})
    return settings.model_copy(update={"mqtt": mqtt})


def readings(settings: Settings, count: int, first: int = 0) -> list[tuple[str, bytes, str, str]]:
    """(topic, payload, sensor_id, ts): ``count`` distinct readings, one per message."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    out = []
    for index in range(first, first + count):
        sensor_id = f"{settings.kafka.topic_prefix}-s{index % SENSORS:02d}"
        ts = start + timedelta(seconds=index)
        payload = reading_payload(ts, {"pm25": float(index % 50)})
        out.append(
            (data_topic(settings.mqtt, "air", sensor_id), payload, sensor_id, ts.isoformat())
        )
    return out


def running_bridge(settings: Settings) -> contextlib.AbstractAsyncContextManager[MqttBridge]:
    return running_service(run_bridge, settings, lambda bridge: bridge.connected.wait())


async def publish(settings: Settings, messages: list[tuple[str, bytes, str, str]]) -> None:
    gateway = MqttGateway(settings.mqtt, client_id=f"{settings.kafka.topic_prefix}-gateway")
    await asyncio.to_thread(gateway.connect)
    for topic, payload, _, _ in messages:
        gateway.publish(topic, payload)
    await asyncio.to_thread(gateway.close)
    assert gateway.acked == len(messages)


async def readings_on_kafka(settings: Settings, expected: int) -> list[tuple[str, str]]:
    """(sensor_id, ts) of every reading on the readings topic, once ``expected`` arrived."""
    readings = await read_readings(settings, expected, timeout_s=120)
    return [(reading.sensor_id, reading.ts.isoformat()) for reading in readings]


async def test_two_bridges_share_the_readings_and_a_returning_one_gets_its_queue(
    settings: Settings,
) -> None:
    first, second = instance(settings, 1), instance(settings, 2)
    batch = readings(settings, 2000)
    async with running_bridge(first) as one:
        async with running_bridge(second) as two:
            await publish(settings, batch)
            on_kafka = await readings_on_kafka(settings, len(batch))
            # Every reading once: nothing doubled by delivery to both bridges, nothing lost.
            assert sorted(on_kafka) == sorted((s, ts) for _, _, s, ts in batch)
            assert one.counters.messages > 0 and two.counters.messages > 0
            assert one.counters.messages + two.counters.messages == len(batch)

        # Bridge 2 is away (its session stays with the broker): publish more meanwhile.
        later = readings(settings, 1000, first=len(batch))
        await publish(settings, later)  # every message routed: to bridge 1, or queued
        async with running_bridge(second) as returning:
            on_kafka = await readings_on_kafka(settings, len(batch) + len(later))
            assert sorted(on_kafka) == sorted((s, ts) for _, _, s, ts in batch + later)
            # Mosquitto queued a share of what was published while bridge 2 was away for its
            # session, and handed it over when the same instance came back (README).
            assert returning.counters.messages > 0
    async with TopicCounter(settings.kafka_as(KafkaPrincipal.ADMIN)) as topics:
        # One record per MQTT message (of one reading each here): none doubled either.
        assert await topics.total(settings.kafka.topic("readings")) == len(batch) + len(later)


async def test_killing_one_of_two_bridges_mid_stream_loses_and_doubles_nothing(
    settings: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    total = 3000
    messages = readings(settings, total)
    sensor_ids = sorted({sensor_id for _, _, sensor_id, _ in messages})
    await registry.upsert(db, [registry.SensorRecord(s, "air", 10.78, 106.70) for s in sensor_ids])
    published = {(s, datetime.fromisoformat(ts)) for _, _, s, ts in messages}
    bridges = [
        ServiceProcess("bridge", instance(settings, n), tmp_path / f"bridge-{n}.log")
        for n in (1, 2)
    ]
    stop = asyncio.Event()
    processors: asyncio.Queue[StreamProcessor] = asyncio.Queue()
    processing = asyncio.create_task(run_processor(settings, stop, processors))
    try:
        for bridge in bridges:
            bridge.start()

        async def both_subscribed() -> bool:
            return all("bridge subscribed to" in bridge.log_text() for bridge in bridges)

        assert await eventually(both_subscribed, bool, timeout_s=120), bridges[1].log_text()
        processor = await asyncio.wait_for(processors.get(), 60)
        await asyncio.wait_for(processor.assigned.wait(), 60)

        gateway = MqttGateway(settings.mqtt, client_id=f"{settings.kafka.topic_prefix}-gateway")
        await asyncio.to_thread(gateway.connect)
        paced = [
            (topic, payload, (s, datetime.fromisoformat(ts))) for topic, payload, s, ts in messages
        ]
        publishing = asyncio.create_task(asyncio.to_thread(publish_paced, gateway, paced, 300.0))

        async def sent() -> int:
            return gateway.sent

        await eventually(sent, lambda n: n >= total * 0.3, timeout_s=120)
        await asyncio.to_thread(bridges[1].kill)  # SIGKILL: its in-flight messages unacked
        await eventually(sent, lambda n: n >= total * 0.6, timeout_s=120)
        bridges[1].start()  # the same instance, so the same session
        await publishing
        await asyncio.to_thread(gateway.close)
        assert gateway.acked == total

        stored = await eventually(
            lambda: stored_pairs(settings, sensor_ids),
            lambda pairs: len(pairs) >= total,
            timeout_s=180,
        )
        assert stored == published, f"{len(published - stored)} readings lost"
        # The broker kept the killed bridge's session: it resumed it on return.
        assert "session resumed: True" in bridges[1].log_text()
        for bridge in bridges:
            assert bridge.stop() == 0, bridge.log_text()[-3000:]
    finally:
        for bridge in bridges:
            bridge.ensure_stopped()
        stop.set()
        await processing
