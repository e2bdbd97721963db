"""What compressing the producers' batches buys: bytes to Kafka and the producer's CPU.

    python -m bench.compression [--readings 100000] [--per-message 20] [--sensors 200]

1. Offline (no server): the readings as the bridge sends them (one ``readings/2`` record per
   MQTT message of ``--per-message`` readings, keyed by sensor id), built into record batches of
   the bridge's size for each codec: bytes per record and per reading, and CPU microseconds per
   record to build them.
2. Against the local stack: the same records through ``urbanpulse.bus.new_producer`` with each
   codec (acks=all, idempotent, the bridge's linger and batch size), two rounds: records/s, and
   CPU seconds per 100,000 records of this (producer) process and of the Kafka broker.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from bench.support import say, stack_ready
from urbanpulse.bus import new_producer
from urbanpulse.core.envelope import Reading, readings_records
from urbanpulse.core.settings import KafkaPrincipal, Settings
from urbanpulse.ingest.records import READINGS_HEADERS, RECORD_BYTES

CODECS: dict[str, int] = {
    "none": 0,  # no codec
    "lz4": DefaultRecordBatch.CODEC_LZ4,
    "zstd": DefaultRecordBatch.CODEC_ZSTD,
}


def envelopes(count: int, per_message: int, sensors: int) -> list[tuple[bytes, bytes]]:
    """(key, value) of the records of ``count`` air readings with noisy values, as the bridge
    writes them for messages of ``per_message`` readings."""
    rng = random.Random(10)
    start = datetime.now(UTC) - timedelta(hours=1)
    out = []
    for first in range(0, count, per_message):
        sensor = f"hcm-air-{(first // per_message) % sensors:04d}"
        received = start + timedelta(milliseconds=10 * first)
        message = []
        for i in range(first, min(first + per_message, count)):
            ts = start + timedelta(milliseconds=10 * i + rng.randrange(1000))
            values = {
                "pm25": round(rng.uniform(5, 150), 1),
                "pm10": round(rng.uniform(10, 250), 1),
                "no2": round(rng.uniform(5, 120), 1),
                "co": round(rng.uniform(200, 3000), 1),
                "temperature": round(rng.uniform(24, 36), 1),
                "humidity": round(rng.uniform(50, 95), 1),
            }
            source = f"urbanpulse/v1/air/{sensor}/data"
            message.append(Reading(sensor, "air", ts, values, received, source))
        out += [(sensor.encode(), v) for v in readings_records(message, RECORD_BYTES)]
    return out


def offline(records: list[tuple[bytes, bytes]], readings: int, batch_bytes: int) -> None:
    headers = READINGS_HEADERS
    for name, codec in CODECS.items():
        total = batches = 0
        started = time.process_time()
        builder = DefaultRecordBatchBuilder(2, codec, 0, -1, -1, 0, batch_bytes)
        offset = 0
        for key, value in records:
            if builder.append(offset, 0, key, value, headers) is None:  # full: the next batch
                total, batches = total + len(builder.build()), batches + 1
                builder = DefaultRecordBatchBuilder(2, codec, 0, -1, -1, 0, batch_bytes)
                offset = 0
                builder.append(offset, 0, key, value, headers)
            offset += 1
        total, batches = total + len(builder.build()), batches + 1
        cpu = time.process_time() - started
        say(
            f"  {name:5}  {total / len(records):6.1f} bytes/record "
            f"({total / readings:5.1f}/reading) in {batches:,} batches   "
            f"{cpu / len(records) * 1e6:5.1f} µs CPU/record to build"
        )


def broker_cpu_s(settings: Settings) -> float | None:
    """CPU seconds the local stack's Kafka JVM has used, from /proc (None: not found)."""
    try:
        pid = (Path(settings.stack.data_dir) / "kafka.pid").read_text().strip()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def produce(settings: Settings, records: list[tuple[bytes, bytes]], codec: str) -> None:
    topic = settings.kafka.topic("readings")  # 12 partitions, as the bridge writes
    producer = new_producer(
        settings.kafka_as(KafkaPrincipal.BRIDGE),
        client_id=f"bench-{codec}",
        linger_ms=settings.ingest.kafka_linger_ms,
        max_batch_bytes=settings.ingest.kafka_max_batch_bytes,
        compression=None if codec == "none" else codec,
    )
    await producer.start()
    try:
        headers = READINGS_HEADERS
        await (await producer.send(topic, b"warm-up"))
        broker = broker_cpu_s(settings)
        wall, cpu = time.perf_counter(), time.process_time()
        acks = [
            await producer.send(topic, value, key=key, headers=headers) for key, value in records
        ]
        await asyncio.gather(*acks)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        after = broker_cpu_s(settings)
    finally:
        await producer.stop()
    per = 1e5 / len(records)
    kafka = f"{(after - broker) * per:5.2f}" if after is not None and broker is not None else "  ?"
    say(
        f"  {codec:5}  {len(records) / wall:8,.0f} records/s   CPU s per 100,000 records: "
        f"producer {cpu * per:5.2f}, Kafka {kafka}"
    )


async def main(args: argparse.Namespace) -> None:
    records = envelopes(args.readings, args.per_message, args.sensors)
    say(
        f"{args.readings:,} readings in {len(records):,} records "
        f"({args.per_message} per message), {args.sensors} sensors"
    )
    settings = Settings().isolated(f"compress{uuid.uuid4().hex[:8]}")
    say(f"Offline: record batches of {settings.ingest.kafka_max_batch_bytes // 1024} KB")
    offline(records, args.readings, settings.ingest.kafka_max_batch_bytes)
    settings = await stack_ready(settings)
    say("Through Kafka (acks=all), two rounds:")
    for _ in range(2):
        for codec in CODECS:
            await produce(settings, records, codec)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=100_000)
    parser.add_argument("--per-message", type=int, default=20, help="readings per MQTT message")
    parser.add_argument("--sensors", type=int, default=200)
    asyncio.run(main(parser.parse_args()))
