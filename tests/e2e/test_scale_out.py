"""Processors scale out in one consumer group (issue 10), on the real Mosquitto, Kafka and
TimescaleDB: state per partition, one owner per area, incidents grouped under a lock.

1. Two processors share an area's sensors: its area rule alerts once and its storm is one
   incident, though neither processor sees all of its sensors.
2. Two bridges (shared subscription) and two processors as separate ``urbanpulse`` processes;
   while readings stream, a processor stops and comes back and a third joins (rebalances): every
   reading sent is stored exactly once, every alert event expected is on Kafka exactly once.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiokafka.admin import AIOKafkaAdminClient
from shapely.geometry import MultiPolygon, box

from tests.e2e.conftest import (
    ServiceProcess,
    eventually,
    read_topic,
    running_service,
    with_rules_file,
)
from tests.e2e.test_bridges_shared import instance, running_bridge
from tests.e2e.test_faults import publish_paced, stored_pairs
from urbanpulse.alerts.model import area_subject
from urbanpulse.bus import TopicCounter
from urbanpulse.core.areas import AreaRecord
from urbanpulse.core.settings import KafkaPrincipal, Settings
from urbanpulse.simulators.gateway import MqttGateway, data_topic, reading_payload
from urbanpulse.storage import registry
from urbanpulse.storage.areas import upsert_areas
from urbanpulse.stream.partition_state import partition_for
from urbanpulse.stream.processor import StreamProcessor
from urbanpulse.stream.service import run_processor

RULES = """
version: 1
defaults: {cooldown: 1s}
rules:
  - {id: pm25-hi, kind: air, metric: pm25, above: 50, clear_below: 40, severity: warning,
     citation: test}
  - {id: area-pm25, kind: air, scope: area, metric: pm25, above: 50,
     area: {more_than: "1/2", min_sensors: 3, fresh_within: 1h}, severity: critical,
     citation: test}
"""


def with_rules(settings: Settings, tmp_path: Path) -> Settings:
    return with_rules_file(
        settings,
        tmp_path,
        RULES,
        check_interval_s=0.5,
        incident_min_members=10,
        incident_window_s=300.0,
    )


async def one_ward(db: asyncpg.Connection, prefix: str, sensors: int) -> tuple[str, list[str]]:
    """A ward far out at sea and ``sensors`` air sensors in it."""
    rng = random.Random(uuid.uuid4().int)
    x, y = round(rng.uniform(110, 170), 3), round(rng.uniform(-55, -15), 3)
    ward = f"{prefix}-w"
    await upsert_areas(
        db, [AreaRecord(ward, "Phường 1", "ward", None, MultiPolygon([box(x, y, x + 1, y + 1)]))]
    )
    ids = [f"{prefix}-s{i:02d}" for i in range(sensors)]
    await registry.register(
        db,
        [registry.SensorRecord(s, "air", y + 0.5, x + 0.01 * (i + 1)) for i, s in enumerate(ids)],
    )
    return ward, ids


async def group_shape(settings: Settings) -> tuple[str, int]:
    """The processors' consumer group as its coordinator sees it: state and member count."""
    admin = AIOKafkaAdminClient(**settings.kafka_as(KafkaPrincipal.ADMIN).client_kwargs())
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([settings.kafka.consumer_group])
        [(_error, _group, state, _protocol_type, _protocol, members, *_)] = response.groups
        return state, len(members)
    finally:
        await admin.close()


def events_of(values: list[bytes]) -> list[dict[str, object]]:
    return [orjson.loads(v) for v in values]


def about(event: dict[str, Any], sensors: list[str], area_id: str | None = None) -> bool:
    """Whether an event is about one of ``sensors``, or about the area ``area_id`` (its area
    alert, or an incident grouped in it)."""
    if "alert" in event:
        subject = event["alert"]["subject"]
        return bool(subject in sensors or (area_id and subject == area_subject(area_id)))
    return bool(area_id and event["incident"]["area_id"] == area_id)


async def test_two_processors_raise_one_area_alert_and_one_incident(
    settings: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    settings = with_rules(settings, tmp_path)
    ward, sensors = await one_ward(db, settings.kafka.topic_prefix, 12)
    running = lambda: running_service(  # noqa: E731
        run_processor, settings, lambda p: p.assigned.wait()
    )
    async with running_bridge(settings), running() as first, running() as second:
        processors: list[StreamProcessor] = [first, second]

        async def balanced() -> bool:  # both in the group, 6 partitions each
            return all(len(p.partitions) == 6 for p in processors)

        assert await eventually(balanced, bool, timeout_s=120)
        # The ward's sensors come through both processors' partitions.
        homes = {partition_for(s, 12) for s in sensors}
        assert all(homes & p.partitions for p in processors)

        gateway = MqttGateway(settings.mqtt, client_id=f"{settings.kafka.topic_prefix}-gw")
        await asyncio.to_thread(gateway.connect)
        now = datetime.now(UTC)
        for sensor in sensors:  # every sensor above 50: 12 alerts, the whole ward
            gateway.publish(
                data_topic(settings.mqtt, "air", sensor), reading_payload(now, {"pm25": 80.0})
            )
        await asyncio.to_thread(gateway.close)

        topic = settings.kafka.topic("alerts")
        expected = len(sensors) + 2  # the sensors' alerts, the area's, the incident's opening

        async def announced() -> list[dict[str, object]]:
            async with TopicCounter(settings.kafka_as(KafkaPrincipal.ADMIN)) as topics:
                total = await topics.total(topic)
            return events_of(await read_topic(settings, topic, total, timeout_s=30))

        await eventually(announced, lambda e: len(e) >= expected, timeout_s=120)

        # Let both processors' timers run a few more times: a second owner would announce now.
        async def ticks() -> list[int]:
            return [p.counters.timer_ticks for p in processors]

        before = await ticks()
        await eventually(
            ticks,
            lambda now: all(n >= t + 4 for n, t in zip(now, before, strict=True)),
            timeout_s=60,
        )
        events = await announced()

    # The incident may open with 10 members and grow (incident_updated): one opening only.
    # The processors evaluate every area of the shared test database: events about other
    # tests' sensors and areas are not this test's to count.
    kinds = Counter(
        (e["event"], e["alert"]["rule_id"] if "alert" in e else "incident")  # type: ignore[index]
        for e in events
        if e["event"] != "incident_updated" and about(e, sensors, ward)
    )
    assert kinds == {
        ("opened", "pm25-hi"): len(sensors),
        ("opened", "area-pm25"): 1,
        ("incident_opened", "incident"): 1,
    }, kinds
    assert len({e["event_id"] for e in events}) == len(events)
    rows = await db.fetch("SELECT member_count FROM incidents WHERE area_id = $1", ward)
    assert [r["member_count"] for r in rows] == [len(sensors)]
    area_alerts = await db.fetchval(
        "SELECT count(*) FROM alerts WHERE subject = $1", f"area:{ward}"
    )
    assert area_alerts == 1


SENSORS = 24
PER_SENSOR = 150  # readings each, one a second of event time
EPISODE = range(60, 80)  # the readings above 50: one alert opened and resolved per sensor
RATE = 50.0  # messages/s: 72 s of readings, time for three rebalances while they stream


def episode_readings(settings: Settings) -> list[tuple[str, bytes, tuple[str, datetime]]]:
    """(topic, payload, (sensor, ts)), sensors interleaved: a sensor's next reading comes
    ``SENSORS`` messages later, so reordering between two bridges stays inside the episode's
    plateaus and cannot make or hide an edge."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    out = []
    for step in range(PER_SENSOR):
        ts = start + timedelta(seconds=step)
        pm25 = 90.0 if step in EPISODE else 10.0
        for n in range(SENSORS):
            sensor = f"{settings.kafka.topic_prefix}-r{n:02d}"
            topic = data_topic(settings.mqtt, "air", sensor)
            out.append((topic, reading_payload(ts, {"pm25": pm25}), (sensor, ts)))
    return out


async def test_rebalances_store_every_reading_once_and_announce_every_alert_once(
    settings: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    settings = with_rules(settings, tmp_path)
    messages = episode_readings(settings)
    sensors = sorted({key[0] for _, _, key in messages})
    await registry.register(db, [registry.SensorRecord(s, "air", 10.78, 106.70) for s in sensors])

    def service(command: str, name: str, config: Settings) -> ServiceProcess:
        return ServiceProcess(command, config, tmp_path / f"{name}.log")

    bridges = [service("bridge", f"bridge-{n}", instance(settings, n)) for n in (1, 2)]
    processors = [service("process", f"processor-{n}", settings) for n in (1, 2, 3)]
    everyone = bridges + processors
    try:
        for part in bridges + processors[:2]:
            part.start()

        async def started() -> bool:
            subscribed = all("bridge subscribed to" in b.log_text() for b in bridges)
            return subscribed and all("processor assigned" in p.log_text() for p in processors[:2])

        assert await eventually(started, bool, timeout_s=120), processors[0].log_text()[-3000:]

        gateway = MqttGateway(settings.mqtt, client_id=f"{settings.kafka.topic_prefix}-gw")
        await asyncio.to_thread(gateway.connect)
        publishing = asyncio.create_task(asyncio.to_thread(publish_paced, gateway, messages, RATE))

        async def sent() -> int:
            return gateway.sent

        async def rebalanced(members: int) -> None:
            """The group is stable again, with ``members`` processors, each assigned."""
            shape = await eventually(
                lambda: group_shape(settings), lambda s: s == ("Stable", members), timeout_s=120
            )
            logs = [p.log_text()[-2000:] for p in processors if p.process is not None]
            assert shape == ("Stable", members), logs

        total = len(messages)
        await eventually(sent, lambda n: n >= total * 0.1, timeout_s=120)
        assert await asyncio.to_thread(processors[1].stop) == 0  # SIGTERM: a clean leave
        await rebalanced(1)  # processor 1 takes every partition
        processors[1].start()  # back: a rebalance
        await rebalanced(2)
        processors[2].start()  # a third joins: another
        await rebalanced(3)
        assert gateway.sent < total, "the rebalances should happen while readings stream"
        await publishing
        await asyncio.to_thread(gateway.close)
        assert gateway.acked == total

        published = {key for _, _, key in messages}
        stored = await eventually(
            lambda: stored_pairs(settings, sensors),
            lambda pairs: len(pairs) >= total,
            timeout_s=240,
        )
        assert stored == published, f"{len(published - stored)} readings lost"
        rows = await db.fetchval(
            "SELECT count(*) FROM readings_air WHERE sensor_id = ANY($1::text[])", sensors
        )
        assert rows == total

        topic = settings.kafka.topic("alerts")
        expected = 2 * len(sensors)  # each sensor: opened, resolved
        events = events_of(await read_topic(settings, topic, expected, timeout_s=120))
        for part in processors:
            assert part.stop() == 0, part.log_text()[-3000:]
        # After every processor stopped (their relays drained): nothing more came.
        async with TopicCounter(settings.kafka_as(KafkaPrincipal.ADMIN)) as topics:
            assert await topics.total(topic) == len(events)
        # Each sensor's own alert events; ten or more at once also make an incident (its own
        # events), and other tests' areas are evaluated too: not counted here.
        per_alert = Counter(
            (e["event"], e["alert"]["subject"])  # type: ignore[index]
            for e in events
            if "alert" in e and about(e, sensors)
        )
        assert per_alert == {
            (event, sensor): 1 for sensor in sensors for event in ("opened", "resolved")
        }, per_alert
        # The third processor's partitions came with their state from the database.
        assert "alert state seeded for partitions" in processors[2].log_text()
        for bridge in bridges:
            assert bridge.stop() == 0, bridge.log_text()[-3000:]
    finally:
        for part in everyone:
            part.ensure_stopped()
