"""Run a scenario against a live broker: register the fleet, pace the engine, publish.

The thin I/O around the pure engine: simulated time advances ``speed`` times as fast as wall
time; every few tens of milliseconds the runner asks the engine for the messages due since the
last step and publishes them with QoS 1, through one gateway (MQTT client) per sensor kind,
each announcing its sensors' status (retained ``online``, ``offline`` at the end, and the
broker's last will if it dies).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson

from urbanpulse.core.settings import DbRole, Settings
from urbanpulse.data.areas import shipped_area_paths
from urbanpulse.simulators.engine import Outgoing, ScenarioEngine
from urbanpulse.simulators.fleet import CITY_PROVINCES
from urbanpulse.simulators.gateway import MqttGateway

log = logging.getLogger(__name__)

STEP_S = 0.05


@dataclass
class RunSummary:
    messages: int = 0
    status_messages: int = 0
    readings: int = 0
    per_kind: Counter[str] = field(default_factory=Counter)
    per_fault: Counter[str] = field(default_factory=Counter)
    keys: set[tuple[str, datetime]] = field(default_factory=set)
    wall_s: float = 0.0
    sim_start: datetime | None = None
    sim_end: datetime | None = None
    interrupted: bool = False

    def add(self, message: Outgoing) -> None:
        self.messages += 1
        self.per_kind[message.kind] += 1
        if message.fault:
            self.per_fault[message.fault] += 1
        self.readings += len(message.keys)
        self.keys.update(message.keys)

    def text(self) -> str:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.per_kind.items())) or "none"
        faults = ", ".join(f"{k} {n}" for k, n in sorted(self.per_fault.items())) or "none"
        span = f"{self.sim_start:%Y-%m-%d %H:%M}..{self.sim_end:%H:%M} UTC" if self.sim_end else ""
        return (
            f"sent {self.messages} messages ({self.readings} readings, {len(self.keys)} distinct) "
            f"+ {self.status_messages} status in {self.wall_s:.1f}s wall, simulated {span}"
            f"{' (interrupted)' if self.interrupted else ''}\n"
            f"  per kind:  {kinds}\n  per fault: {faults}"
        )


async def prepare_database(settings: Settings, engine: ScenarioEngine) -> None:
    """Import the city's shipped areas if missing, then register the fleet."""
    from urbanpulse.storage import registry
    from urbanpulse.storage.areas import import_areas_file
    from urbanpulse.storage.db import connect

    conn = await connect(settings, DbRole.WRITER)
    try:
        province = CITY_PROVINCES[engine.scenario.city]
        if not await conn.fetchval("SELECT 1 FROM areas WHERE area_id = $1", province):
            for path in shipped_area_paths():
                await import_areas_file(conn, path)
        async with conn.transaction():
            await registry.register(conn, engine.records())
    finally:
        await conn.close()


def future_warning(
    engine: ScenarioEngine, speed: float, now: datetime, skew_s: float
) -> str | None:
    """Why some readings would be rejected as future ones, or None if the run is safe."""
    wall = engine.scenario.duration / speed
    # The latest simulated time reached is ``end`` at wall time ``wall``; it must not pass
    # the real clock then (plus the platform's tolerance), nor at any moment before.
    ahead = max(engine.start - now, engine.end - (now + wall))
    if ahead > timedelta(seconds=skew_s):
        return (
            f"the run reaches simulated {engine.end:%Y-%m-%d %H:%M} UTC, up to "
            f"{ahead.total_seconds() / 60:.0f} min ahead of the real clock: the platform "
            "rejects readings more than "
            f"{skew_s / 60:.0f} min in the future; start earlier or lower --speed"
        )
    return None


async def run_engine(
    settings: Settings,
    engine: ScenarioEngine,
    speed: float,
    stop: asyncio.Event,
    *,
    on_progress: Callable[[RunSummary, datetime], None] | None = None,
) -> RunSummary:
    """Publish the engine's messages paced at ``speed``; returns what was sent."""
    summary = RunSummary(sim_start=engine.start, sim_end=engine.end)
    run_id = uuid.uuid4().hex[:6]
    gateways: dict[str, MqttGateway] = {}
    for sensor in engine.sensors:
        if sensor.kind not in gateways:
            will = (
                engine.topic(sensor.kind, sensor.sensor_id, "status"),
                orjson.dumps({"state": "offline", "reason": "gateway lost"}),
            )
            gateways[sensor.kind] = MqttGateway(
                settings.mqtt, f"{engine.prefix}-gw-{sensor.kind}-{run_id}", will=will
            )
    for gateway in gateways.values():
        await asyncio.to_thread(gateway.connect)
    started = time.monotonic()
    try:
        for status in engine.status_messages("online", engine.start):
            gateways[status.kind].publish(status.topic, status.payload, retain=True)
            summary.status_messages += 1
        final = engine.end + timedelta(seconds=1)
        done = engine.start
        while done < final:
            if stop.is_set():
                summary.interrupted = True
                break
            elapsed = time.monotonic() - started
            target = min(final, engine.start + timedelta(seconds=elapsed * speed))
            if target > done:
                for i, message in enumerate(engine.messages_between(done, target)):
                    gateways[message.kind].publish(message.topic, message.payload)
                    summary.add(message)
                    if i % 500 == 499:
                        await asyncio.sleep(0)
                done = target
                if on_progress is not None:
                    on_progress(summary, done)
            await asyncio.sleep(STEP_S)
        for status in engine.status_messages("offline", min(done, engine.end)):
            gateways[status.kind].publish(status.topic, status.payload, retain=True)
            summary.status_messages += 1
    finally:
        await asyncio.gather(*(asyncio.to_thread(g.close) for g in gateways.values()))
    summary.wall_s = time.monotonic() - started
    return summary


def now_utc() -> datetime:
    return datetime.now(UTC)
