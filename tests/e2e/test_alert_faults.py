"""SIGKILL the processor mid-episode: no alert is lost, none is doubled, all resolve."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import asyncpg
import orjson

from tests.e2e.conftest import ServiceProcess, eventually, read_topic
from tests.e2e.test_alerts import Gateway, register_air, send_until, with_rules
from urbanpulse.core.settings import Settings

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
        for _ in range(10):  # the episode goes on while the processor is down
            await gw.send(sensors, 160.0)
            await asyncio.sleep(0.1)
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
