"""No single message can stop the city's ingest (issue 9), on the real servers.

Each hostile message is sent by a real MQTT client from outside the platform, then a good
reading from another sensor; the good one must be stored, the hostile one must be in the
dead-letter topic with its reason (or, above the broker's limit, refused by Mosquitto itself),
and the bridge must be the same running task throughout: no crash, no restart, no stall.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import paho.mqtt.client as mqtt
import pytest
from aiokafka import AIOKafkaProducer

from tests.e2e.conftest import Pipeline, eventually, read_readings, read_topic
from urbanpulse.bus import ensure_topics
from urbanpulse.core.envelope import DeadLetter
from urbanpulse.core.mqtt_login import Identity, broker_port, new_client
from urbanpulse.core.settings import KafkaPrincipal, MqttSettings, Settings
from urbanpulse.ingest.bridge import MqttBridge
from urbanpulse.simulators.gateway import data_topic, reading_payload
from urbanpulse.storage import registry

# orjson parses at most 1024 levels of nesting.
ORJSON_MAX_DEPTH = 1024


class OutsideClient:
    """A real MQTT 3.1.1 client, as most field gateways are, waiting for each message's PUBACK.

    (Over MQTT v5, Mosquitto 2.0.11 answers a payload above its limit with PUBACK reason 0x95,
    which paho takes as a protocol error: see README, "Limits at the door".)
    """

    def __init__(self, settings: MqttSettings, client_id: str) -> None:
        self._client = new_client(settings, Identity.PUBLISHER, client_id, protocol=mqtt.MQTTv311)
        self._answers: dict[int, int] = {}
        self._answered = threading.Condition()
        self._client.on_publish = self._on_publish
        self._client.connect(settings.host, broker_port(settings), keepalive=30)
        self._client.loop_start()

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        with self._answered:
            self._answers[mid] = reason.value
            self._answered.notify_all()

    def publish(self, topic: str, payload: bytes) -> int:
        """Publish with QoS 1 and return the broker's PUBACK reason code."""
        info = self._client.publish(topic, payload, qos=1)
        with self._answered:
            assert self._answered.wait_for(lambda: info.mid in self._answers, timeout=120)
            return self._answers.pop(info.mid)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def outside(settings: Settings) -> Iterator[tuple[OutsideClient, OutsideClient]]:
    """A hostile client and a well-behaved one, on their own connections."""
    prefix = settings.kafka.topic_prefix
    hostile = OutsideClient(settings.mqtt, f"{prefix}-hostile")
    good = OutsideClient(settings.mqtt, f"{prefix}-good")
    yield hostile, good
    hostile.close()
    good.close()


def nested(depth: int) -> bytes:
    return b"[" * depth + b"1" + b"]" * depth


def reading_array(count: int, ts: datetime) -> bytes:
    item = {"ts": ts, "values": {"pm25": 12.5, "pm10": 20.25}}
    return orjson.dumps([item] * count, option=orjson.OPT_UTC_Z)


@dataclass(frozen=True)
class Hostile:
    name: str
    payload: bytes
    reason: str  # a fragment of the expected dead letter's reason


def hostile_messages(settings: Settings, ts: datetime) -> list[Hostile]:
    """Messages that reach the bridge, each of which once could stall or crash it."""
    ingest = settings.ingest
    escaped_controls = b'{"ts": "' + b"\\u0000" * 40_000 + b'", "values": {"pm25": 1}}'
    cases = [
        # Multi-megabyte, below the broker's limit: the bridge's own limit refuses it.
        Hostile("array-3MB", reading_array(45_000, ts), f"limit of {ingest.max_payload_bytes}"),
        Hostile("array-100000-items", b"[" + b",".join([b"0"] * 100_000) + b"]", "100000 readings"),
        Hostile("depth-17", nested(ingest.max_nesting_depth + 1), "nests deeper than the limit"),
        Hostile("depth-1023", nested(ORJSON_MAX_DEPTH - 1), "nests deeper than the limit"),
        Hostile("depth-1024", nested(ORJSON_MAX_DEPTH), "nests deeper than the limit"),
        Hostile("depth-1025", nested(ORJSON_MAX_DEPTH + 1), "malformed JSON: depth limit"),
        Hostile("control-bytes", bytes(range(32)) * 6000, "malformed JSON"),
        Hostile("escaped-control-chars", escaped_controls, "is not an ISO 8601 timestamp"),
        Hostile("invalid-utf8", b'{"ts": "\xff\xfe' + b"\xc3" * 100_000 + b'"}', "malformed JSON"),
    ]
    for case in cases:
        assert len(case.payload) < ingest.broker_message_size_limit, case.name
    return cases


def bridge_task() -> asyncio.Task[Any]:
    """The task running the pipeline's bridge (``running_pipeline`` never restarts it)."""
    [task] = [t for t in asyncio.all_tasks() if t.get_coro().__qualname__ == "run_bridge"]
    return task


async def test_no_hostile_message_stops_ingest(
    settings: Settings,
    db: asyncpg.Connection,
    pipeline: Pipeline,
    outside: tuple[OutsideClient, OutsideClient],
) -> None:
    hostile_client, good_client = outside
    ts = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    cases = hostile_messages(settings, ts)
    good_ids = [f"{settings.kafka.topic_prefix}-good-{i}" for i in range(len(cases) + 1)]
    await registry.upsert(db, [registry.SensorRecord(s, "air", 10.78, 106.70) for s in good_ids])
    bridge = bridge_task()

    async def stored(sensor_id: str) -> int:
        count: int = await db.fetchval(
            "SELECT count(*) FROM readings_air WHERE sensor_id = $1", sensor_id
        )
        return count

    async def good_one_after(sensor_id: str) -> None:
        topic = data_topic(settings.mqtt, "air", sensor_id)
        assert (
            await asyncio.to_thread(good_client.publish, topic, reading_payload(ts, {"pm25": 9.0}))
            == 0
        )
        assert await eventually(lambda: stored(sensor_id), lambda n: n == 1) == 1, sensor_id
        assert bridge_task() is bridge and not bridge.done()
        assert pipeline.bridge.connected.is_set()

    # Above the broker's limit: Mosquitto acks it and drops it, so it never reaches the bridge.
    # The broker forwards messages in the order it accepted them: had it forwarded this one,
    # the bridge would have taken it before the good one that follows.
    too_large = reading_array(100_000, ts)  # the 7 MB array of the bug report
    assert len(too_large) > settings.ingest.broker_message_size_limit
    topic = data_topic(settings.mqtt, "air", f"{settings.kafka.topic_prefix}-hostile-huge")
    assert await asyncio.to_thread(hostile_client.publish, topic, too_large) == 0
    await good_one_after(good_ids[-1])
    assert pipeline.bridge.counters.messages == 1  # only the good one reached the bridge

    for case, good_id in zip(cases, good_ids, strict=False):
        topic = data_topic(settings.mqtt, "air", f"{settings.kafka.topic_prefix}-{case.name}")
        assert await asyncio.to_thread(hostile_client.publish, topic, case.payload) == 0
        await good_one_after(good_id)

    values = await read_topic(settings, settings.kafka.topic("deadletter"), len(cases))
    dead = {d.source.rsplit("/", 2)[-2]: d for d in map(DeadLetter.from_json, values)}
    assert len(dead) == len(cases) == len(values)
    for case in cases:
        letter = dead[f"{settings.kafka.topic_prefix}-{case.name}"]
        assert case.reason in letter.reason, (case.name, letter.reason)
        assert letter.stage == "ingest"
        assert letter.raw_size == len(case.payload)
        assert letter.raw_sha256 == hashlib.sha256(case.payload).hexdigest()
        assert case.payload.startswith(letter.raw)
    counters = pipeline.bridge.counters
    assert counters.dead_letters == len(cases)
    assert counters.rejected_oversize == 1
    assert counters.rejected_too_many == 1
    assert counters.rejected_too_deep == 3
    assert counters.rejected_malformed == 3
    assert counters.rejected_invalid == 1
    assert counters.rejected_crash == counters.kafka_refused == counters.dead_letters_capped == 0


async def test_a_record_kafka_refuses_for_good_is_replaced_by_a_small_dead_letter(
    settings: Settings, outside: tuple[OutsideClient, OutsideClient]
) -> None:
    """Kafka refusing a record (here: larger than the producer's max_request_size) is permanent
    for that record: it becomes a small dead letter instead of being retried forever."""
    hostile_client, good_client = outside
    await ensure_topics(settings.kafka_as(KafkaPrincipal.ADMIN))
    producer = AIOKafkaProducer(
        **settings.kafka_as(KafkaPrincipal.BRIDGE).client_kwargs(),
        acks="all",
        enable_idempotence=True,
        max_request_size=4000,  # a reading fits; a dead letter with a 10 kB prefix does not
    )
    await producer.start()
    bridge = MqttBridge(settings, producer)
    stop = asyncio.Event()
    running = asyncio.create_task(bridge.run(stop))
    try:
        await asyncio.wait_for(bridge.connected.wait(), 30)
        ts = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
        prefix = settings.kafka.topic_prefix
        mixed = orjson.dumps(
            [{"ts": ts, "values": {"pm25": 5.0}}, {"ts": "x" * 10_000, "values": {"pm25": 1}}],
            option=orjson.OPT_UTC_Z,
        )
        topic = data_topic(settings.mqtt, "air", f"{prefix}-mixed")
        assert await asyncio.to_thread(hostile_client.publish, topic, mixed) == 0
        after = data_topic(settings.mqtt, "air", f"{prefix}-after")
        payload = reading_payload(ts, {"pm25": 7.0})
        assert await asyncio.to_thread(good_client.publish, after, payload) == 0

        readings = await read_readings(settings, 2)
        assert sorted(r.sensor_id for r in readings) == [f"{prefix}-after", f"{prefix}-mixed"], (
            bridge.counters
        )
        [value] = await read_topic(settings, settings.kafka.topic("deadletter"), 1)
        letter = DeadLetter.from_json(value)
        assert "Kafka refused the record" in letter.reason
        assert "MessageSizeTooLargeError" in letter.reason
        assert letter.raw_size == len(mixed)
        assert letter.raw_sha256 == hashlib.sha256(mixed).hexdigest()
        assert letter.raw == mixed[:1024]
        assert bridge.counters.kafka_refused == 1
        assert bridge.counters.kafka_dropped == 0
        assert not running.done()
    finally:
        stop.set()
        await running
        await producer.stop()
