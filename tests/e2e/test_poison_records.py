"""Records no processor can store never stop the partition, and nothing good is lost.

Raw records are written straight to the readings topic with aiokafka, as another producer (or a
broken one) would: not JSON, JSON of another schema, another schema header, an unknown kind, a
NUL in the sensor id, a value out of range, 900 KB; a record of several readings of which
two are bad.  A record that passes every check but that
PostgreSQL refuses sits in a batch of good ones.  A sender inventing sensor ids by the thousand
meets the pending cap.  Each time the good readings are stored and the bad ones are in the
dead-letter topic with their reasons.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer

from tests.e2e.conftest import eventually, read_topic, running_service
from tests.e2e.test_alerts import register_air, with_rules
from urbanpulse.bus import ensure_topics
from urbanpulse.core.envelope import (
    READING_SCHEMA,
    READINGS_SCHEMA,
    DeadLetter,
    Reading,
    readings_records,
)
from urbanpulse.core.settings import KafkaPrincipal, Settings
from urbanpulse.ingest.records import RECORD_BYTES
from urbanpulse.storage import registry
from urbanpulse.stream.processor import StreamProcessor
from urbanpulse.stream.service import run_processor

Headers = list[tuple[str, bytes]]
HUGE = b"[" + b"0," * 450_000 + b"0]"  # 900 KB of valid JSON


def running_processor(
    settings: Settings,
) -> contextlib.AbstractAsyncContextManager[StreamProcessor]:
    return running_service(run_processor, settings, lambda p: p.assigned.wait())


@contextlib.asynccontextmanager
async def raw_producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    """A plain producer: nothing of the bridge's checks stands between it and the topic."""
    await ensure_topics(settings.kafka_as(KafkaPrincipal.ADMIN))
    producer = AIOKafkaProducer(**settings.kafka_as(KafkaPrincipal.ADMIN).client_kwargs())
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def send(
    producer: AIOKafkaProducer, settings: Settings, value: bytes, headers: Headers | None = None
) -> int:
    """Write to partition 0 (all in one partition: a stall would show); returns the offset."""
    meta = await producer.send_and_wait(
        settings.kafka.topic("readings"), value, partition=0, headers=headers
    )
    return int(meta.offset)


def envelope(sensor_id: str, ts: datetime | None = None, **changes: object) -> bytes:
    now = datetime.now(UTC)
    obj = orjson.loads(Reading(sensor_id, "air", ts or now, {"pm25": 12.0}, now, "test").to_json())
    obj.update(changes)
    return orjson.dumps(obj)


async def stored(db: asyncpg.Connection, sensor_ids: list[str]) -> int:
    count: int = await db.fetchval(
        "SELECT count(*) FROM readings_air WHERE sensor_id = ANY($1::text[])", sensor_ids
    )
    return count


async def dead_letters(settings: Settings, expected: int) -> list[DeadLetter]:
    values = await read_topic(settings, settings.kafka.topic("deadletter"), expected, 60)
    return [DeadLetter.from_json(v) for v in values]


async def test_records_of_other_producers_are_dead_lettered_and_the_partition_flows(
    settings: Settings, db: asyncpg.Connection
) -> None:
    prefix = settings.kafka.topic_prefix
    good = f"{prefix}-good"
    await register_air(db, [good])
    topic = settings.kafka.topic("readings")
    reading_header: Headers = [("schema", READING_SCHEMA)]
    bad: list[tuple[bytes, Headers | None, str]] = [
        (b"\x89PNG\r\n\x1a\n not json", None, "not a reading envelope"),
        (
            orjson.dumps({"type": "Feature", "properties": {"pm25": 3}}),
            None,
            "not a reading envelope",
        ),
        (envelope(good), [("schema", b"alert-event/1")], "schema header b'alert-event/1'"),
        (envelope(good, kind="volcano"), reading_header, "unknown kind 'volcano'"),
        (envelope("ab\x00c"), reading_header, "sensor_id 'ab\\x00c' is not"),
        (envelope(good, values={"pm25": 1e9}), reading_header, "pm25=1000000000.0 outside"),
        (envelope(good), [("schema", READINGS_SCHEMA)], "readings None is not a non-empty array"),
        (HUGE, None, f"record of {len(HUGE)} bytes is larger than the 65536 bytes"),
    ]
    async with raw_producer(settings) as producer, running_processor(settings):
        offsets = {
            await send(producer, settings, value, headers): reason for value, headers, reason in bad
        }
        await send(producer, settings, envelope(good), reading_header)
        assert await eventually(lambda: stored(db, [good]), lambda n: n == 1, 60) == 1
        letters = {d.source: d for d in await dead_letters(settings, len(bad))}
    sources = {f"kafka:{topic}/0@{offset}": reason for offset, reason in offsets.items()}
    assert sorted(letters) == sorted(sources)
    for source, reason in sources.items():
        assert reason in letters[source].reason, letters[source].reason
        assert letters[source].stage == "stream"


async def test_a_record_postgresql_refuses_is_isolated_and_its_batch_is_stored(
    settings: Settings, db: asyncpg.Connection
) -> None:
    prefix = settings.kafka.topic_prefix
    good = f"{prefix}-batch"
    await register_air(db, [good])
    start = datetime.now(UTC) - timedelta(minutes=30)
    async with raw_producer(settings) as producer:
        # Written before the processor starts, so that they come to it as one batch.
        for i in range(40):
            await send(producer, settings, envelope(good, start + timedelta(seconds=i)))
            if i == 20:
                # Valid by every catalogue rule, but seq does not fit PostgreSQL's bigint.
                late = start + timedelta(seconds=i, milliseconds=500)
                bad_offset = await send(producer, settings, envelope(good, late, seq=2**63))
        async with running_processor(settings) as processor:
            assert await eventually(lambda: stored(db, [good]), lambda n: n >= 40, 90) == 40
            [letter] = await dead_letters(settings, 1)
            # The partition keeps flowing after it.
            await send(producer, settings, envelope(good, start + timedelta(minutes=1)))
            assert await eventually(lambda: stored(db, [good]), lambda n: n == 41, 60) == 41
            assert processor.counters.isolated == 1
    assert letter.source == f"kafka:{settings.kafka.topic('readings')}/0@{bad_offset}"
    assert letter.reason.startswith("refused when stored alone: DataError"), letter.reason
    assert orjson.loads(letter.raw)["seq"] == 2**63


async def test_bad_readings_of_a_record_are_dead_lettered_alone_and_their_siblings_stored(
    settings: Settings, db: asyncpg.Connection
) -> None:
    """A record of ten readings in the bridge's format (as another producer might write it):
    one beyond the catalogue, one PostgreSQL refuses; the eight others are stored."""
    several = f"{settings.kafka.topic_prefix}-several"
    await register_air(db, [several])
    now = datetime.now(UTC)
    readings = [
        Reading(several, "air", now - timedelta(minutes=30 - i), {"pm25": 10.0 + i}, now, "t", i)
        for i in range(10)
    ]
    readings[3] = replace(readings[3], seq=2**63)  # does not fit PostgreSQL's bigint
    readings[6] = replace(readings[6], values={"pm25": 1e9})  # beyond the catalogue
    [value] = readings_records(readings, RECORD_BYTES)
    async with raw_producer(settings) as producer, running_processor(settings) as processor:
        offset = await send(producer, settings, value, [("schema", READINGS_SCHEMA)])
        assert await eventually(lambda: stored(db, [several]), lambda n: n >= 8, 90) == 8
        refused, beyond = sorted(await dead_letters(settings, 2), key=lambda d: d.reason)
        assert processor.counters.isolated == 1
    stored_seqs = await db.fetch("SELECT seq FROM readings_air WHERE sensor_id = $1", several)
    assert sorted(r["seq"] for r in stored_seqs) == [0, 1, 2, 4, 5, 7, 8, 9]
    source = f"kafka:{settings.kafka.topic('readings')}/0@{offset}"
    assert refused.source == beyond.source == source
    assert refused.reason.startswith(
        "reading [3] of the record: refused when stored alone: DataError"
    ), refused.reason
    assert orjson.loads(refused.raw)["readings"][3]["seq"] == 2**63
    assert beyond.reason.startswith("reading [6] of the record: values.pm25=1000000000.0 outside")
    assert orjson.loads(beyond.raw)["values"] == {"pm25": 1e9}  # that reading alone


async def test_invented_sensor_ids_meet_the_pending_cap_and_raise_no_alert(
    settings: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    prefix = settings.kafka.topic_prefix
    loud = f"{prefix}-loud"
    await register_air(db, [loud])
    invented = [f"{prefix}-x{i}" for i in range(1000)]
    # Other tests share the database: the cap is what is pending now plus 100.
    cap = await registry.count_pending(db) + 100
    settings = with_rules(settings, tmp_path, offline="2s")
    settings.stream = settings.stream.model_copy(
        update={"pending_cap": cap, "pending_per_minute": 10_000}
    )
    # Every refusal is to be read back here, so the dead-letter rate cap (its own tests:
    # test_processor_deadletters.py) is set out of the way.
    settings.ingest = settings.ingest.model_copy(update={"dead_letter_rate_per_source": 10_000})
    async with raw_producer(settings) as producer, running_processor(settings) as processor:
        for sensor_id in [loud, *invented]:  # 300 µg/m³: an episode, for registered sensors
            await send(producer, settings, envelope(sensor_id, values={"pm25": 300.0}))
        assert await eventually(lambda: stored(db, [loud]), lambda n: n == 1, 60) == 1
        letters = await dead_letters(settings, 900)
        # The registered sensor alerts (on its reading, then by going silent): the rules run.
        alerting = await eventually(
            lambda: db.fetch("SELECT rule_id FROM alerts WHERE sensor_id = $1", loud),
            lambda rows: len(rows) == 2,
            60,
        )
        ticks = processor.counters.timer_ticks

        async def timer_ticks() -> int:
            return processor.counters.timer_ticks

        await eventually(timer_ticks, lambda n: n >= ticks + 3, 30)
    assert sorted(r["rule_id"] for r in alerting) == ["offline-air", "pm25-episode"]
    pending = await db.fetch(
        "SELECT sensor_id, status FROM sensors WHERE sensor_id = ANY($1::text[])", invented
    )
    assert len(pending) == 100 and {r["status"] for r in pending} == {"pending"}
    assert await stored(db, invented) == 100  # their readings are kept, for an operator
    assert len(letters) == 900
    assert {orjson.loads(d.raw)["sensor_id"] for d in letters} == set(invented[100:])
    reasons = {d.reason.split(": ", 1)[1] for d in letters}
    assert reasons == {f"the cap of {cap} sensors pending approval is reached"}
    assert processor.counters.pending_refused == 900
    no_alerts = await db.fetchval(
        "SELECT count(*) FROM alerts WHERE sensor_id = ANY($1::text[])", invented
    )
    assert no_alerts == 0
