"""What a reading costs on its way through Kafka's readings topic, in-process, without servers.

    python -m bench.record_cost [--readings 20000] [--rounds 5]

Two sides, each timed on its own in CPU microseconds per reading (``time.process_time``, best
of ``--rounds``), for gateways that send one reading per MQTT message and for gateways that
batch 20:

- **make**: the bridge's :class:`~urbanpulse.ingest.records.RecordMaker` turning MQTT messages
  into Kafka records (decode and validate the payload, then encode the records);
- **decode**: the processor's first step, :func:`urbanpulse.stream.batch.decode`, turning those
  very records (the bridge's real output, headers included) back into readings.

Neither side talks to Kafka, so the figures leave out aiokafka and the broker, whose cost is
per record too.  Run it on two commits to compare them: it uses only their public functions.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from urbanpulse.core.metrics import Metrics
from urbanpulse.core.settings import Settings
from urbanpulse.ingest.mqtt_source import IncomingMessage
from urbanpulse.ingest.records import BridgeCounters, OutgoingRecord, RecordMaker
from urbanpulse.stream import batch
from urbanpulse.stream.steps import ConsumedRecord
from urbanpulse.stream.validate import RecordLimits

PARTITIONS = 12
SENSORS = 500


def messages(settings: Settings, readings: int, per_message: int) -> list[IncomingMessage]:
    """MQTT messages of air sensors as gateways send them, ``readings`` readings in all."""
    received = datetime.now(UTC)
    start = received - timedelta(days=1)
    root = settings.mqtt.topic_root
    out = []
    for first in range(0, readings, per_message):
        sensor = f"bench-{(first // per_message) % SENSORS:05d}"
        items = [
            {
                "ts": start + timedelta(seconds=index),
                "values": {"pm25": 12.5 + index % 7, "pm10": 20.0, "co": 400.0, "no2": 31.0},
                "seq": index,
            }
            for index in range(first, min(first + per_message, readings))
        ]
        payload = orjson.dumps(items[0] if per_message == 1 else items)
        out.append(IncomingMessage(f"{root}/air/{sensor}/data", payload, first, 1, received))
    return out


def consumed(records: list[OutgoingRecord]) -> list[ConsumedRecord]:
    """The bridge's records as the processor receives them."""
    return [
        ConsumedRecord(r.topic, offset % PARTITIONS, offset, r.value, tuple(r.headers))
        for offset, r in enumerate(records)
    ]


def best_cpu_seconds(work: Callable[[], Any], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        began = time.process_time()
        work()
        best = min(best, time.process_time() - began)
    return best


def measure(settings: Settings, readings: int, per_message: int, rounds: int) -> str:
    sent = messages(settings, readings, per_message)
    maker = RecordMaker(settings, BridgeCounters(Metrics()))

    def make() -> list[OutgoingRecord]:
        return [record for message in sent for record in maker.records(message)]

    made = make()
    records = consumed(made)
    limits = RecordLimits.from_settings(settings)
    owned = range(PARTITIONS)

    def decode() -> batch.Decoded:
        return batch.decode(records, datetime.now(UTC), limits, PARTITIONS, owned)

    decoded = decode()
    if len(decoded.readings) != readings or decoded.dead_letters:
        raise SystemExit(
            f"the processor read {len(decoded.readings)} of {readings} readings "
            f"({len(decoded.dead_letters)} dead letters): the bench is wrong"
        )
    make_us = best_cpu_seconds(make, rounds) / readings * 1e6
    decode_us = best_cpu_seconds(decode, rounds) / readings * 1e6
    size = sum(len(r.value) for r in made) / readings
    return (
        f"{per_message:>3} per message: {len(made):>6} records, {size:6.1f} B/reading; "
        f"make {make_us:6.2f} us/reading, decode {decode_us:6.2f} us/reading, "
        f"both {make_us + decode_us:6.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description="CPU microseconds per reading to make the bridge's Kafka records and to "
        "decode them in the processor, with 1 and 20 readings per MQTT message (no servers)."
    )
    parser.add_argument("--readings", type=int, default=20_000, help="readings per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the best one counts")
    args = parser.parse_args()
    settings = Settings()
    for per_message in (1, 20):
        print(measure(settings, args.readings, per_message, args.rounds))  # noqa: T201


if __name__ == "__main__":
    main()
