"""Crash every part mid-stream: every accepted reading is stored, and stored exactly once.

The bridge and the processor run as real ``urbanpulse`` processes and are SIGKILLed; Kafka and
PostgreSQL are killed and restarted through the local stack, and Mosquitto is restarted
gracefully.  All the while a gateway keeps publishing.  At the end the stored (sensor_id, ts)
pairs must be exactly those published.

A SIGKILLed Mosquitto is the one documented loss (README, Delivery contract): the readings it
acked after its last save of the persistence file.  Its test measures that window and checks
that nothing outside it is lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg

from bench.publisher import AckedPublisher, Key
from tests.e2e.conftest import ServiceProcess, eventually
from urbanpulse.core.settings import Settings
from urbanpulse.simulators.air import AirSensorModel
from urbanpulse.simulators.fleet import place_sensors
from urbanpulse.simulators.gateway import MqttGateway, data_topic, reading_payload
from urbanpulse.stack import LocalStack
from urbanpulse.stack.services.mosquitto import AUTOSAVE_CHANGES, persistence_path
from urbanpulse.storage import registry
from urbanpulse.storage.db import connect

log = logging.getLogger(__name__)

TOTAL = 4000
RATE = 300.0  # readings per second, so that the faults land mid-stream


Message = tuple[str, bytes, Key]


def publish_paced(
    gateway: MqttGateway | AckedPublisher, messages: list[Message], rate: float
) -> None:
    started = time.monotonic()
    for index, (topic, payload, key) in enumerate(messages):
        if isinstance(gateway, AckedPublisher):
            gateway.publish(topic, payload, key)
        else:
            gateway.publish(topic, payload)
        ahead = started + (index + 1) / rate - time.monotonic()
        if ahead > 0:
            # Pacing is the behaviour under test: a steady stream into which the faults land.
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


async def wait_until_flowing(
    settings: Settings, gateway: MqttGateway | AckedPublisher, probe_id: str
) -> None:
    """Publish probe readings until one is stored: the bridge has subscribed (and so owns a
    persistent session the broker queues for) and the processor is consuming.  Before that
    first subscription a broker drops what is published, as MQTT specifies."""
    topic = data_topic(settings.mqtt, "air", probe_id)

    async def probe_stored() -> bool:
        gateway.publish(topic, reading_payload(datetime.now(UTC), {"pm25": 1.0}))
        return bool(await stored_pairs(settings, [probe_id]))

    assert await eventually(probe_stored, bool, timeout_s=120, interval_s=0.5)


async def air_readings(
    settings: Settings, db: asyncpg.Connection, total: int
) -> tuple[list[str], list[Message]]:
    """``total`` readings of 8 registered air sensors: their ids and the MQTT messages."""
    fleet = place_sensors("air", 8, seed=11, prefix=settings.kafka.topic_prefix)
    await registry.upsert(
        db, [registry.SensorRecord(s.sensor_id, "air", s.lat, s.lon) for s in fleet]
    )
    models = [AirSensorModel(sensor, seed=11) for sensor in fleet]
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    messages = []
    for i in range(total):
        model, ts = models[i % len(models)], start + timedelta(seconds=i)
        topic = data_topic(settings.mqtt, "air", model.sensor.sensor_id)
        key = (model.sensor.sensor_id, ts)
        messages.append((topic, reading_payload(ts, model.values_at(ts)), key))
    return [s.sensor_id for s in fleet], messages


def restart(
    local_stack: LocalStack, name: str, hard: bool
) -> tuple[Callable[[], object], Callable[[], object]]:
    """(stop, start) of a server of the stack: a crash (SIGKILL) or a clean stop."""
    return (
        lambda: local_stack.stop_service(name, hard=hard),
        lambda: local_stack.start_service(name),
    )


Fault = tuple[float, Callable[[], object], Callable[[], object]]  # (share published, stop, start)


async def inject(faults: list[Fault], gateway: MqttGateway | AckedPublisher, total: int) -> None:
    """Stop and restart each part once ``share`` of the ``total`` readings have been published."""

    async def progress() -> int:
        return gateway.sent

    for share, stop, start in faults:
        await eventually(progress, lambda sent, share=share: sent >= share * total, timeout_s=120)
        await asyncio.to_thread(stop)
        await asyncio.to_thread(start)


async def test_killing_and_restarting_every_part_loses_and_doubles_nothing(
    settings: Settings,
    db: asyncpg.Connection,
    local_stack: LocalStack,
    service_process: Callable[[str], ServiceProcess],
) -> None:
    sensor_ids, messages = await air_readings(settings, db, TOTAL)
    published = {key for _topic, _payload, key in messages}

    bridge = service_process("bridge")
    processor = service_process("process")
    gateway = MqttGateway(settings.mqtt, client_id=f"{settings.kafka.topic_prefix}-gateway")
    await asyncio.to_thread(gateway.connect)
    await wait_until_flowing(settings, gateway, f"{settings.kafka.topic_prefix}-probe")
    publishing = asyncio.create_task(asyncio.to_thread(publish_paced, gateway, messages, RATE))

    faults: list[Fault] = [
        (0.15, bridge.kill, bridge.start),
        (0.3, processor.kill, processor.start),
        # A clean stop: Mosquitto saves its persistence file on SIGTERM, so nothing is lost.
        (0.45, *restart(local_stack, "mosquitto", hard=False)),
        (0.6, *restart(local_stack, "kafka", hard=True)),
        (0.75, *restart(local_stack, "postgres", hard=True)),
    ]
    await inject(faults, gateway, TOTAL)
    await publishing
    await asyncio.to_thread(gateway.close)
    assert gateway.acked == gateway.sent

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


async def test_a_killed_broker_loses_only_what_it_acked_after_its_last_save(
    settings: Settings,
    db: asyncpg.Connection,
    local_stack: LocalStack,
    service_process: Callable[[str], ServiceProcess],
) -> None:
    """SIGKILL Mosquitto twice: once with a backlog queued for a dead bridge, once mid-flow.

    A reading is at risk only if its PUBACK reached the gateway after the broker last wrote its
    persistence file (mtime read right after the kill): the broker saves its state in one
    synchronous write, so anything acked before that write's time is in it.  Everything else
    must be stored; the risk is bounded by the autosave count; nothing is stored twice.
    """
    sensor_ids, messages = await air_readings(settings, db, TOTAL)
    saved_state = persistence_path(local_stack.data_dir)
    at_risk: list[tuple[float, float]] = []  # (last save, kill) wall-clock windows

    def crash_broker() -> None:
        local_stack.stop_service("mosquitto", hard=True)
        killed_at = time.time()
        saved_at = saved_state.stat().st_mtime if saved_state.exists() else 0.0
        at_risk.append((saved_at, killed_at))

    bridge = service_process("bridge")
    service_process("process")
    gateway = AckedPublisher(settings.mqtt, client_id=f"{settings.kafka.topic_prefix}-gateway")
    await asyncio.to_thread(gateway.connect)
    await wait_until_flowing(settings, gateway, f"{settings.kafka.topic_prefix}-probe")
    publishing = asyncio.create_task(asyncio.to_thread(publish_paced, gateway, messages, RATE))

    def broker_back_then_bridge() -> None:
        local_stack.start_service("mosquitto")
        bridge.start()

    faults: list[Fault] = [
        # The bridge's queue grows in the broker only: the worst case for a broker crash.
        (0.2, bridge.kill, lambda: None),
        (0.45, crash_broker, broker_back_then_bridge),
        (0.75, crash_broker, lambda: local_stack.start_service("mosquitto")),
    ]
    await inject(faults, gateway, TOTAL)
    await publishing
    await asyncio.to_thread(gateway.close)
    assert gateway.acked == gateway.sent
    accepted = gateway.accepted()
    assert len(accepted) == TOTAL

    def risky(acked_at: float) -> bool:
        return any(saved < acked_at <= killed for saved, killed in at_risk)

    must_store = {key for key, acked_at in accepted.items() if not risky(acked_at)}
    stored = await eventually(
        lambda: stored_pairs(settings, sensor_ids),
        lambda pairs: must_store <= pairs,
        timeout_s=180,
    )
    missing = must_store - stored
    assert not missing, (
        f"{len(missing)} readings lost outside the window, e.g. {sorted(missing)[:3]}"
    )
    assert stored <= set(accepted), "stored a reading that was never published"
    lost = set(accepted) - stored
    # Each crash loses at most what was queued since the last save (one change per reading).
    assert len(lost) <= len(at_risk) * AUTOSAVE_CHANGES
    log.warning(
        "broker crashes: %d; readings at risk (acked after the last save): %d; lost: %d; "
        "bound: %d x %d",
        len(at_risk),
        TOTAL - len(must_store),
        len(lost),
        len(at_risk),
        AUTOSAVE_CHANGES,
    )
