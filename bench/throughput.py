"""End-to-end throughput and latency on the embedded local stack, with a naive baseline.

    python -m bench.throughput [--readings 20000] [--sensors 200]

1. Publishes N air readings over MQTT (QoS 1) as fast as the gateway can, and measures how long
   the bridge and processor take until every one is in TimescaleDB (readings/s end to end).
2. Measures the latency from publish to stored row with probe readings sent one at a time.
3. Baseline: the same rows written one INSERT per reading (what a naive sink does), against the
   processor's batched, idempotent write.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

from bench.support import percentile, say, stack_ready
from urbanpulse.core.catalogue import get_kind
from urbanpulse.core.envelope import Reading
from urbanpulse.core.logs import configure_logging
from urbanpulse.core.settings import Settings
from urbanpulse.ingest.service import run_bridge
from urbanpulse.simulators.air import AirSensorModel
from urbanpulse.simulators.fleet import place_sensors
from urbanpulse.simulators.gateway import MqttGateway, data_topic, reading_payload
from urbanpulse.storage.db import connect
from urbanpulse.storage.writer import column_arrays, columns_of, write_readings
from urbanpulse.stream.service import run_processor

PROBES = 50


async def count_rows(settings: Settings, prefix: str) -> int:
    conn = await connect(settings.database)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM readings_air WHERE sensor_id LIKE $1", f"{prefix}-%"
        )
        return count
    finally:
        await conn.close()


async def wait_for_rows(settings: Settings, prefix: str, expected: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    stored = 0
    while time.monotonic() < deadline:
        stored = await count_rows(settings, prefix)
        if stored >= expected:
            break
        await asyncio.sleep(0.05)
    return stored


async def end_to_end(settings: Settings, readings: int, sensors: int) -> None:
    prefix = settings.kafka.topic_prefix
    fleet = place_sensors("air", sensors, seed=9, prefix=prefix)
    models = [AirSensorModel(s, seed=9) for s in fleet]
    start = datetime.now(UTC) - timedelta(days=1)
    payloads = [
        (
            data_topic(settings.mqtt, "air", models[i % sensors].sensor.sensor_id),
            reading_payload(
                start + timedelta(seconds=i // sensors),
                models[i % sensors].values_at(start),
            ),
        )
        for i in range(readings)
    ]
    stop = asyncio.Event()
    parts = [
        asyncio.create_task(run_bridge(settings, stop)),
        asyncio.create_task(run_processor(settings, stop)),
    ]
    await asyncio.sleep(3)  # let the consumer join its group before timing starts
    gateway = MqttGateway(settings.mqtt, client_id=f"{prefix}-gateway")
    await asyncio.to_thread(gateway.connect)
    began = time.perf_counter()
    for topic, payload in payloads:
        gateway.publish(topic, payload)
    published = time.perf_counter()
    stored = await wait_for_rows(settings, prefix, readings, timeout_s=600)
    done = time.perf_counter()
    say(
        f"end to end: {readings} readings from {sensors} sensors stored in {done - began:.2f}s "
        f"-> {stored / (done - began):,.0f} readings/s "
        f"(publishing alone took {published - began:.2f}s; stored {stored}/{readings})"
    )

    delays = []
    probe_sensor = models[0].sensor.sensor_id
    for i in range(PROBES):
        ts = start + timedelta(hours=1, seconds=i)
        before = await count_rows(settings, prefix)
        sent = time.perf_counter()
        gateway.publish(
            data_topic(settings.mqtt, "air", probe_sensor), reading_payload(ts, {"pm25": 1.0})
        )
        await wait_for_rows(settings, prefix, before + 1, timeout_s=30)
        delays.append((time.perf_counter() - sent) * 1000)
    await asyncio.to_thread(gateway.close)
    delays.sort()
    say(
        f"latency publish -> stored row ({PROBES} probes, idle pipeline): "
        f"p50 {statistics.median(delays):.0f} ms, "
        f"p99 {percentile(delays, 0.99):.0f} ms, "
        f"max {delays[-1]:.0f} ms"
    )
    stop.set()
    await asyncio.gather(*parts)


async def storage_baseline(settings: Settings, rows: int) -> None:
    prefix = f"{settings.kafka.topic_prefix}-sink"
    now = datetime.now(UTC) - timedelta(days=2)
    fleet = place_sensors("air", 50, seed=5, prefix=prefix)
    model = AirSensorModel(fleet[0], seed=5)
    readings = [
        Reading(
            fleet[i % 50].sensor_id,
            "air",
            now + timedelta(seconds=i),
            model.values_at(now),
            now,
            "bench",
        )
        for i in range(rows)
    ]
    conn = await connect(settings.database)
    try:
        began = time.perf_counter()
        for chunk in range(0, rows, 2000):
            async with conn.transaction():
                await write_readings(conn, readings[chunk : chunk + 2000])
        batched = time.perf_counter() - began

        air = get_kind("air")
        columns = [name for name, _ in columns_of(air)]
        placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
        naive_sql = (
            f"INSERT INTO {air.table} ({', '.join(columns)}) VALUES ({placeholders}) "
            "ON CONFLICT DO NOTHING"
        )
        began = time.perf_counter()
        for r in readings:  # one statement and one commit per reading, as a naive sink does
            copy = Reading(f"{r.sensor_id}-naive", r.kind, r.ts, r.values, r.received_at, r.source)
            await conn.execute(naive_sql, *(column[0] for column in column_arrays(air, [copy])))
        naive = time.perf_counter() - began
    finally:
        await conn.close()
    say(
        f"storage sink, {rows} rows: batched idempotent write {rows / batched:,.0f} rows/s; "
        f"naive row-by-row INSERT {rows / naive:,.0f} rows/s ({naive / batched:.1f}x slower)"
    )


async def main(args: argparse.Namespace) -> None:
    settings = Settings().isolated(f"bench{uuid.uuid4().hex[:8]}")
    settings = await stack_ready(settings)
    say(
        f"UrbanPulse benchmark on the local stack ({settings.stack.data_dir}), "
        f"run {settings.kafka.topic_prefix}"
    )
    await end_to_end(settings, args.readings, args.sensors)
    await storage_baseline(settings, args.baseline_rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--readings", type=int, default=20_000, help="readings end to end (20000)")
    parser.add_argument("--sensors", type=int, default=200, help="simulated sensors (200)")
    parser.add_argument(
        "--baseline-rows", type=int, default=5_000, help="rows for the sink comparison (5000)"
    )
    configure_logging("WARNING")
    asyncio.run(main(parser.parse_args()))
