"""Latency from a reading crossing a threshold to its alert stored and on Kafka.

    python -m bench.alert_latency [--episodes 50]

Runs the bridge and the processor on the embedded local stack with a one-rule file
(PM2.5 above 100 µg/m³).  Each episode publishes one reading above the limit over MQTT and
times, from the publish:
  - the reading's row stored (the baseline: the same path without alerting's part),
  - the alert stored in ``alerts`` (same transaction as the reading),
  - the "opened" event consumed from Kafka ``<prefix>.alerts``;
then a clean reading resolves the alert before the next episode.  Also reported: the platform's
own view, ``alerts.created_at - reading.received_at`` (bridge receipt to alert commit).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer

from bench.support import PROBE_RULES, say, stack_ready
from urbanpulse.bus import ensure_topics
from urbanpulse.core.logs import configure_logging
from urbanpulse.core.settings import DbRole, KafkaPrincipal, Settings
from urbanpulse.ingest.service import run_bridge
from urbanpulse.simulators.gateway import MqttGateway, data_topic, reading_payload
from urbanpulse.storage import registry
from urbanpulse.storage.db import connect
from urbanpulse.stream.service import run_processor

POLL_S = 0.002


def percentiles(label: str, values_ms: list[float]) -> None:
    values_ms = sorted(values_ms)
    p99 = values_ms[min(len(values_ms) - 1, round(0.99 * (len(values_ms) - 1)))]
    say(
        f"  {label:<46} p50 {statistics.median(values_ms):6.1f} ms   p99 {p99:6.1f} ms   "
        f"max {values_ms[-1]:6.1f} ms"
    )


async def follow_alerts(settings: Settings, seen: dict[str, float], ready: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(
        settings.kafka.topic("alerts"),
        **settings.kafka_as(KafkaPrincipal.ADMIN).client_kwargs(),
        auto_offset_reset="latest",
    )
    await consumer.start()
    try:
        await consumer.getmany(timeout_ms=500)  # joins and positions at the end
        ready.set()
        while True:
            batches = await consumer.getmany(timeout_ms=50)
            now = time.perf_counter()
            for records in batches.values():
                for record in records:
                    event = orjson.loads(record.value)
                    if event["event"] == "opened":
                        seen.setdefault(event["alert"]["alert_id"], now)
    finally:
        await consumer.stop()


async def run(settings: Settings, episodes: int) -> None:
    prefix = settings.kafka.topic_prefix
    sensor = f"{prefix}-air"
    await ensure_topics(settings.kafka_as(KafkaPrincipal.ADMIN))
    conn = await connect(settings, DbRole.WRITER)
    await registry.upsert(conn, [registry.SensorRecord(sensor, "air", 10.776, 106.700)])
    stop = asyncio.Event()
    on_kafka: dict[str, float] = {}
    following = asyncio.Event()
    parts = [
        asyncio.create_task(run_bridge(settings, stop)),
        asyncio.create_task(run_processor(settings, stop)),
        asyncio.create_task(follow_alerts(settings, on_kafka, following)),
    ]
    gateway = MqttGateway(settings.mqtt, client_id=f"{prefix}-gateway")
    await asyncio.to_thread(gateway.connect)
    topic = data_topic(settings.mqtt, "air", sensor)

    async def publish_and_wait(pm25: float, until: str, *args: object) -> datetime:
        ts = datetime.now(UTC)
        gateway.publish(topic, reading_payload(ts, {"pm25": pm25}))
        deadline = time.monotonic() + 60
        while not await conn.fetchval(until, ts, *args):
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing after 60 s: {until}")
            await asyncio.sleep(0.05)
        return ts

    stored_reading = "SELECT count(*) > 0 FROM readings_air WHERE sensor_id = $2 AND ts = $1"
    await following.wait()
    await publish_and_wait(20.0, stored_reading, sensor)  # warm: joined, assigned, flowing
    reading_ms, alert_ms, kafka_ms, internal_ms = [], [], [], []
    for _ in range(episodes):
        ts = datetime.now(UTC)
        sent = time.perf_counter()
        gateway.publish(topic, reading_payload(ts, {"pm25": 150.0}))
        reading_at = alert_at = None
        alert_id = None
        while alert_at is None:
            now = time.perf_counter()
            if reading_at is None and await conn.fetchval(stored_reading, ts, sensor):
                reading_at = now
            alert_id = await conn.fetchval(
                "SELECT alert_id FROM alerts WHERE rule_id = 'bench-pm25' AND sensor_id = $1 "
                "AND opened_at = $2",
                sensor,
                ts,
            )
            if alert_id is not None:
                alert_at = now
                reading_at = reading_at or now  # same transaction: stored together
            elif now - sent > 60:
                raise TimeoutError("no alert within 60 s")
            else:
                await asyncio.sleep(POLL_S)
        while alert_id not in on_kafka and time.perf_counter() - sent < 60:
            await asyncio.sleep(POLL_S)
        assert reading_at is not None and alert_id is not None  # the loop above ensures it
        reading_ms.append((reading_at - sent) * 1000)
        alert_ms.append((alert_at - sent) * 1000)
        kafka_ms.append((on_kafka[alert_id] - sent) * 1000)
        internal = await conn.fetchval(
            "SELECT extract(epoch FROM a.created_at - r.received_at) * 1000 FROM alerts a "
            "JOIN readings_air r ON r.sensor_id = a.sensor_id AND r.ts = a.opened_at "
            "WHERE a.alert_id = $1",
            alert_id,
        )
        internal_ms.append(float(internal))
        await publish_and_wait(
            20.0,
            "SELECT state = 'resolved' FROM alerts "
            "WHERE alert_id = $2 AND $1::timestamptz IS NOT NULL",
            alert_id,
        )
    await asyncio.to_thread(gateway.close)
    stop.set()
    parts[2].cancel()
    await asyncio.gather(*parts, return_exceptions=True)
    await conn.close()
    say(f"{episodes} episodes, one reading each crossing PM2.5 > 100 µg/m³ (idle pipeline):")
    percentiles("publish -> reading stored (baseline)", reading_ms)
    percentiles("publish -> alert stored", alert_ms)
    percentiles("publish -> alert on Kafka", kafka_ms)
    percentiles("bridge receipt -> alert committed (DB clocks)", internal_ms)


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        rules = Path(scratch) / "rules.yaml"
        rules.write_text(PROBE_RULES)
        base = Settings().isolated(f"alerts{uuid.uuid4().hex[:8]}")
        settings = base.model_copy(
            update={"alerts": base.alerts.model_copy(update={"rules_path": rules})}
        )
        settings = await stack_ready(settings)
        say(f"UrbanPulse alert latency on the local stack, run {settings.kafka.topic_prefix}")
        await run(settings, args.episodes)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--episodes", type=int, default=50, help="threshold crossings (50)")
    configure_logging("WARNING")
    sys.exit(asyncio.run(main(parser.parse_args())))
