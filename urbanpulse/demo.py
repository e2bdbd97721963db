"""``urbanpulse demo``: the whole platform in one process on the embedded local stack.

Brings the stack up, registers a simulated fleet in Ho Chi Minh City, runs bridge, processor,
API and simulator together and prints a live line of counts until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TextIO, TypeVar

from urbanpulse.api.server import check_port_free, serve_api
from urbanpulse.bus import TopicCounter, ensure_topics
from urbanpulse.core.settings import Settings
from urbanpulse.data.areas import shipped_area_paths
from urbanpulse.ingest.bridge import MqttBridge
from urbanpulse.ingest.service import run_bridge
from urbanpulse.simulators.fleet import CENTRAL_HCMC, place_sensors
from urbanpulse.simulators.gateway import SimulationPlan
from urbanpulse.simulators.live import run_simulation
from urbanpulse.stack import LocalStack, format_states
from urbanpulse.storage import registry
from urbanpulse.storage.areas import import_areas_file
from urbanpulse.storage.db import connect
from urbanpulse.storage.keys import Role, create_api_key
from urbanpulse.storage.schema import migrate
from urbanpulse.stream.processor import StreamProcessor
from urbanpulse.stream.service import run_processor

log = logging.getLogger(__name__)

T = TypeVar("T")


# How the demo's fleet and its rate are shared among the families.
FLEET_SHARES = {
    "air": 0.4,
    "water": 0.1,
    "waste_bin": 0.3,
    "waste_truck": 0.05,
    "traffic_camera": 0.15,
}


@dataclass
class _Published:
    by_kind: dict[str, int]

    def updater(self, kind: str) -> Callable[[int], None]:
        def update(sent: int) -> None:
            self.by_kind[kind] = sent

        return update

    @property
    def total(self) -> int:
        return sum(self.by_kind.values())


@dataclass(frozen=True)
class DemoOptions:
    sensors: int = 50
    rate: float = 100.0
    seed: int = 1
    keep_stack: bool = False


async def run_demo(
    settings: Settings, options: DemoOptions, stop: asyncio.Event, out: TextIO
) -> None:
    check_port_free(settings.api.host, settings.api.port)  # before starting anything
    if settings.api.map_bbox is None:  # the demo's fleet stands in central Ho Chi Minh City
        box = CENTRAL_HCMC
        api = settings.api.model_copy(
            update={"map_bbox": (box.west, box.south, box.east, box.north)}
        )
        settings = settings.model_copy(update={"api": api})
    stack = LocalStack(settings)
    await asyncio.to_thread(stack.ensure_installed)
    already_running = all(state.running for state in stack.status())
    started = time.monotonic()
    states = await asyncio.to_thread(stack.up)
    out.write(f"local stack ready in {time.monotonic() - started:.1f}s\n{format_states(states)}\n")
    try:
        await _run_platform(settings, options, stop, out)
    finally:
        if options.keep_stack or already_running:
            out.write("leaving the local stack running (`urbanpulse stack down` stops it)\n")
        else:
            out.write("stopping the local stack\n")
            await asyncio.to_thread(stack.down)


async def _run_platform(
    settings: Settings, options: DemoOptions, stop: asyncio.Event, out: TextIO
) -> None:
    fleets = {
        kind: place_sensors(
            kind, max(1, round(share * options.sensors)), options.seed, prefix="demo"
        )
        for kind, share in FLEET_SHARES.items()
    }
    conn = await connect(settings.database)
    try:
        await migrate(conn)
        for path in shipped_area_paths():
            report = await import_areas_file(conn, path)
            out.write(f"areas: {report.summary()}\n")
        await registry.register(
            conn,
            [
                registry.SensorRecord(
                    s.sensor_id, s.kind, s.lat, s.lon, f"Simulated {s.kind} {s.index}"
                )
                for fleet in fleets.values()
                for s in fleet
            ],
        )
        # A fresh viewer key per run for the wall display; keys are stored hashed, so the
        # one printed here is the only copy.
        wall_key = await create_api_key(conn, f"demo-wall-{int(time.time())}", Role.VIEWER)
    finally:
        await conn.close()
    await ensure_topics(settings.kafka)

    bridges: asyncio.Queue[MqttBridge] = asyncio.Queue()
    processors: asyncio.Queue[StreamProcessor] = asyncio.Queue()
    published_by_kind = dict.fromkeys(fleets, 0)
    published = _Published(published_by_kind)

    parts: dict[str, Coroutine[Any, Any, Any]] = {
        "bridge": run_bridge(settings, stop, bridges),
        "processor": run_processor(settings, stop, processors),
        "api": serve_api(settings, stop),
    }
    for kind, fleet in fleets.items():
        plan = SimulationPlan(fleet, FLEET_SHARES[kind] * options.rate, seed=options.seed)
        parts[f"simulator {kind}"] = run_simulation(
            settings.mqtt, kind, plan, stop, published.updater(kind)
        )
    tasks = {asyncio.create_task(coro, name=name): name for name, coro in parts.items()}
    by_name = {name: task for task, name in tasks.items()}
    try:
        bridge = await _started(bridges, by_name["bridge"])
        processor = await _started(processors, by_name["processor"])
    except BaseException:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    api = f"http://{settings.api.host}:{settings.api.port}"
    out.write(
        f"UrbanPulse is running: {sum(map(len, fleets.values()))} simulated sensors of "
        f"{len(fleets)} families at {options.rate:g} readings/s\n"
        f"  map      {api}/map/?key={wall_key}\n"
        f"  API      {api}/v1/sensors  (send 'X-API-Key: {wall_key}')\n  docs     {api}/docs\n"
        f"  health   {api}/healthz\nPress Ctrl-C to stop.\n"
    )
    watcher = asyncio.create_task(_print_counts(settings, stop, out, published, bridge, processor))
    try:
        done, _ = await asyncio.wait(
            [*tasks, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
        )
        failed = [t for t in done if t in tasks and t.exception() is not None]
        for task in failed:
            log.error("%s failed: %r", tasks[task], task.exception())
    finally:
        stop.set()
        watcher.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        out.write("\nstopped: " + _summary(published.total, bridge, processor) + "\n")


async def _started(queue: asyncio.Queue[T], task: asyncio.Task[Any]) -> T:
    """The part put on ``queue`` once running; raises what stopped ``task`` if it died first."""
    getter = asyncio.create_task(queue.get())
    await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
    if getter.done():
        return getter.result()
    getter.cancel()
    task.result()  # raises the failure
    raise RuntimeError(f"{task.get_name()} stopped before it started")


async def _print_counts(
    settings: Settings,
    stop: asyncio.Event,
    out: TextIO,
    published: _Published,
    bridge: MqttBridge,
    processor: StreamProcessor,
) -> None:
    interactive = out.isatty()
    last_stored, last_time = processor.counters.stored, time.monotonic()
    async with TopicCounter(settings.kafka) as counter:
        while not stop.is_set():
            await asyncio.sleep(1.0 if interactive else 5.0)
            in_kafka = await counter.total(settings.kafka.topic("readings"))
            dead = await counter.total(settings.kafka.topic("deadletter"))
            now, stored = time.monotonic(), processor.counters.stored
            rate = (stored - last_stored) / (now - last_time)
            last_stored, last_time = stored, now
            line = (
                f"published {published.total:>8}  in Kafka {in_kafka:>8}  stored {stored:>8}  "
                f"dead-lettered {dead:>5}  ({rate:,.0f} stored/s)"
            )
            out.write(f"\r{line}" if interactive else f"{line}\n")
            out.flush()


def _summary(published: int, bridge: MqttBridge, processor: StreamProcessor) -> str:
    return (
        f"published {published}, bridged {bridge.counters.readings} readings, "
        f"stored {processor.counters.stored}, "
        f"dead-lettered {bridge.counters.dead_letters + processor.counters.dead_letters}"
    )
