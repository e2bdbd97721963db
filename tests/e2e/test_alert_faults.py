"""SIGKILL the processor mid-episode: no alert is lost, none is doubled, all resolve."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import asyncpg
import orjson

from tests.e2e.conftest import ServiceProcess, eventually, read_topic
from tests.e2e.test_alerts import Gateway, register_air, send_until, with_rules
from urbanpulse.bus import TopicCounter
from urbanpulse.core.settings import KafkaPrincipal, Settings

SENSORS = 6


async def test_killing_the_processor_mid_episode_neither_loses_nor_doubles_alerts(
    settings: Settings,
    db: asyncpg.Connection,
    tmp_path: Path,
    service_process: Callable[[str], ServiceProcess],
) -> None:
    prefix = settings.kafka.topic_prefix
    sensors = [f"{prefix}-air-{i}" for i in range(SENSORS)]
    await register_air(db, sensors)
    # The processes get their settings (these rules among them) from the environment.
    settings.alerts = with_rules(settings, tmp_path).alerts
    bridge = service_process("bridge")
    processor = service_process("process")
    gw = Gateway(settings)
    await asyncio.to_thread(gw.mqtt.connect)
    try:
        await send_until(gw, settings, sensors[:1], 20.0, lambda _: True)
        await eventually(
            lambda: db.fetchval(
                "SELECT count(*) FROM sensor_latest WHERE sensor_id = ANY($1::text[])", sensors
            ),
            lambda n: n >= 1,
            timeout_s=120,
            interval_s=0.5,
        )
        # The episode starts; the processor dies as soon as the first alert is stored.
        await send_until(gw, settings, sensors, 150.0, lambda rows: len(rows) >= 1, 60)
        await asyncio.to_thread(processor.kill)
        # The episode goes on while the processor is down: the sensors keep reporting until the
        # bridge has put ten more readings of each on Kafka, for the next processor to catch up
        # (records: the bridge writes one per MQTT message, here of one reading each).
        readings_topic = settings.kafka.topic("readings")
        async with TopicCounter(settings.kafka_as(KafkaPrincipal.ADMIN)) as topics:
            before = await topics.total(readings_topic)

            async def report_and_count() -> int:
                await gw.send(sensors, 160.0)
                return await topics.total(readings_topic)

            on_kafka = await eventually(
                report_and_count, lambda n: n >= before + 10 * SENSORS, timeout_s=60
            )
        assert on_kafka >= before + 10 * SENSORS, bridge.log_text()[-3000:]
        processor.start()
        rows = await send_until(gw, settings, sensors, 170.0, lambda r: len(r) >= SENSORS, 120)
        # Kill it again with every alert open, then let the episode end.
        await asyncio.to_thread(processor.kill)
        processor.start()
        rows = await send_until(
            gw,
            settings,
            sensors,
            15.0,
            lambda r: len(r) >= SENSORS and all(x["state"] == "resolved" for x in r),
            120,
        )
    finally:
        await asyncio.to_thread(gw.mqtt.close)
    log = processor.log_text()[-3000:]
    assert len(rows) == SENSORS, log
    assert sorted(r["sensor_id"] for r in rows) == sorted(sensors)
    assert {(r["state"], r["trigger_count"], r["resolved_by"]) for r in rows} == {
        ("resolved", 1, "system")
    }
    values = await read_topic(settings, settings.kafka.topic("alerts"), 2 * SENSORS, 30)
    events = [orjson.loads(v) for v in values]
    opened = [e["alert"]["alert_id"] for e in events if e["event"] == "opened"]
    resolved = [e["alert"]["alert_id"] for e in events if e["event"] == "resolved"]
    assert sorted(set(opened)) == sorted(r["alert_id"] for r in rows)
    assert sorted(set(resolved)) == sorted(r["alert_id"] for r in rows)
    assert processor.stop() == 0, processor.log_text()[-3000:]
    assert bridge.stop() == 0


async def test_alert_events_held_in_the_outbox_survive_a_kill_and_go_out_exactly_once(
    settings: Settings,
    db: asyncpg.Connection,
    tmp_path: Path,
    service_process: Callable[[str], ServiceProcess],
) -> None:
    """SIGKILL the processor after the alerts committed and before their events were sent.

    The relay of the first processor is held (``outbox_relay_delay_s``), so its events can only
    be in the ``alert_outbox`` table when it dies; the next processor sends each exactly once.
    """
    prefix = settings.kafka.topic_prefix
    sensors = [f"{prefix}-air-ob{i}" for i in range(SENSORS)]
    await register_air(db, sensors)
    settings.alerts = with_rules(settings, tmp_path).alerts
    held = settings.model_copy(
        update={"stream": settings.stream.model_copy(update={"outbox_relay_delay_s": 3600.0})}
    )
    bridge = service_process("bridge")
    processor = ServiceProcess("process", held, tmp_path / "held-process.log")
    processor.start()
    gw = Gateway(settings)
    await asyncio.to_thread(gw.mqtt.connect)
    try:
        rows = await send_until(gw, settings, sensors, 150.0, lambda r: len(r) == SENSORS, 120)
    finally:
        await asyncio.to_thread(gw.mqtt.close)
    assert len(rows) == SENSORS, processor.log_text()[-3000:]
    queued = await db.fetch("SELECT event_id, payload FROM alert_outbox")
    await asyncio.to_thread(processor.kill)
    queued_ids = sorted(r["event_id"] for r in queued)
    queued_alerts = sorted(orjson.loads(r["payload"])["alert"]["alert_id"] for r in queued)
    assert queued_alerts == sorted(r["alert_id"] for r in rows)  # one "opened" per alert
    alerts_topic = settings.kafka.topic("alerts")
    async with TopicCounter(settings.kafka_as(KafkaPrincipal.ADMIN)) as topics:
        assert await topics.total(alerts_topic) == 0  # nothing left before the kill

        restarted = service_process("process")  # relay not held: it drains what was left
        values = await read_topic(settings, alerts_topic, len(queued), 120)
        assert (
            await eventually(
                lambda: db.fetchval("SELECT count(*) FROM alert_outbox"), lambda n: n == 0
            )
            == 0
        )
        assert await topics.total(alerts_topic) == len(queued)  # and nothing more
    events = [orjson.loads(v) for v in values]
    assert sorted(e["event_id"] for e in events) == queued_ids
    assert {e["event"] for e in events} == {"opened"}
    assert restarted.stop() == 0, restarted.log_text()[-3000:]
    assert bridge.stop() == 0
