"""``urbanpulse demo``: the whole platform on the embedded local stack, with a simulated fleet.

Brings the stack up (or uses the one the settings point at), registers a simulated fleet in
Ho Chi Minh City, runs bridges, processors and the API as child processes under the
supervisor of ``urbanpulse run``, publishes the fleet's readings from this process and prints
a live line of counts until Ctrl-C, which stops everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from urbanpulse.api.server import check_port_free
from urbanpulse.bus import TopicCounter
from urbanpulse.core.settings import DbRole, KafkaPrincipal, Settings
from urbanpulse.data.areas import shipped_area_paths
from urbanpulse.kafka_access import provision
from urbanpulse.simulators.fleet import CENTRAL_HCMC, SimulatedSensor, place_sensors
from urbanpulse.simulators.gateway import SimulationPlan
from urbanpulse.simulators.live import run_simulation
from urbanpulse.stack import LocalStack, format_states
from urbanpulse.storage import registry
from urbanpulse.storage.areas import import_areas_file
from urbanpulse.storage.db import connect
from urbanpulse.storage.keys import Role, create_api_key
from urbanpulse.storage.schema import migrate
from urbanpulse.supervisor import (
    DEFAULT_BRIDGES,
    DEFAULT_PROCESSORS,
    Supervisor,
    platform_children,
)

log = logging.getLogger(__name__)

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
    bridges: int = DEFAULT_BRIDGES
    processors: int = DEFAULT_PROCESSORS


async def run_demo(
    settings: Settings, options: DemoOptions, stop: asyncio.Event, out: TextIO
) -> int:
    """Run until ``stop`` is set or the supervisor gives up; the supervisor's exit code."""
    check_port_free(settings.api.host, settings.api.port)  # before starting anything
    stack = LocalStack(settings)
    await asyncio.to_thread(stack.ensure_installed)
    # Settings that point at a running stack (ours or a test's) use it and leave it running.
    already_running = all(state.running for state in stack.status())
    started = time.monotonic()
    states = await asyncio.to_thread(stack.up)
    out.write(f"local stack ready in {time.monotonic() - started:.1f}s\n{format_states(states)}\n")
    try:
        # The stack's settings carry the MQTT passwords it generated on its first start.
        return await _run_platform(stack.settings, options, stop, out)
    finally:
        if options.keep_stack or already_running:
            out.write("leaving the local stack running (`urbanpulse stack down` stops it)\n")
        else:
            out.write("stopping the local stack\n")
            await asyncio.to_thread(stack.down)


def _fleets(options: DemoOptions) -> dict[str, list[SimulatedSensor]]:
    return {
        kind: place_sensors(
            kind, max(1, round(share * options.sensors)), options.seed, prefix="demo"
        )
        for kind, share in FLEET_SHARES.items()
    }


async def _prepare(
    settings: Settings, fleets: dict[str, list[SimulatedSensor]], out: TextIO
) -> str:
    """Schema, areas, the fleet's registration and topics; a fresh viewer key for the wall."""
    # The owner's: a demo migrates, imports, registers and issues a key, as an operator would.
    conn = await connect(settings, DbRole.OWNER)
    try:
        await migrate(conn)
        for path in shipped_area_paths():
            report = await import_areas_file(conn, path)
            out.write(f"areas: {report.summary()}\n")
        await registry.register(
            conn,
            [
                registry.SensorRecord(s.sensor_id, s.kind, s.lat, s.lon, s.display_name)
                for fleet in fleets.values()
                for s in fleet
            ],
        )
        # Keys are stored hashed, so the one printed here is the only copy.
        wall_key = await create_api_key(conn, f"demo-wall-{int(time.time())}", Role.VIEWER)
    finally:
        await conn.close()
    await provision(settings)
    return wall_key


def _children_env(settings: Settings) -> dict[str, str]:
    """What the children need beyond the environment: the demo's fleet stands in central
    Ho Chi Minh City, so the wall map opens there unless told otherwise."""
    if settings.api.map_bbox is not None:
        return {}
    box = CENTRAL_HCMC
    return {"URBANPULSE_API__MAP_BBOX": f"[{box.west},{box.south},{box.east},{box.north}]"}


async def _run_platform(
    settings: Settings, options: DemoOptions, stop: asyncio.Event, out: TextIO
) -> int:
    fleets = _fleets(options)
    wall_key = await _prepare(settings, fleets, out)
    children = platform_children(
        options.bridges,
        options.processors,
        api=True,
        env=_children_env(settings),
        metrics=settings.metrics,
    )
    supervising = asyncio.create_task(Supervisor(children).run(stop), name="supervisor")
    published = _Published(dict.fromkeys(fleets, 0))
    simulators: list[asyncio.Task[int]] = []
    watcher: asyncio.Task[None] | None = None
    try:
        if await _api_listening(settings, supervising):
            _print_banner(settings, options, fleets, wall_key, out)
            simulators = [
                asyncio.create_task(
                    run_simulation(
                        settings.mqtt,
                        kind,
                        SimulationPlan(fleet, FLEET_SHARES[kind] * options.rate, seed=options.seed),
                        stop,
                        published.updater(kind),
                    ),
                    name=f"simulator {kind}",
                )
                for kind, fleet in fleets.items()
            ]
            watcher = asyncio.create_task(_print_counts(settings, out, published))
        # Until Ctrl-C, or the supervisor gave up on a child (and stopped the rest).
        await asyncio.wait(
            [supervising, *simulators, asyncio.create_task(stop.wait())],
            return_when=asyncio.FIRST_COMPLETED,
        )
        for task in simulators:
            if task.done() and task.exception() is not None:
                log.error("%s failed: %r", task.get_name(), task.exception())
    finally:
        stop.set()
        if watcher is not None:
            watcher.cancel()
        await asyncio.gather(*simulators, return_exceptions=True)
        exit_code = await supervising
    with contextlib.suppress(KafkaError, OSError):  # a courtesy; the stop is what matters
        async with _KafkaCounts(settings) as counts:
            out.write(f"\nstopped: {await counts.line(published)}\n")
    return exit_code


async def _api_listening(settings: Settings, supervising: asyncio.Task[int]) -> bool:
    """Wait until the API child accepts connections; False if the supervisor ended first."""
    while not supervising.done():
        try:
            _reader, writer = await asyncio.open_connection(settings.api.host, settings.api.port)
        except OSError:
            await asyncio.sleep(0.5)
            continue
        writer.close()
        return True
    return False


def _print_banner(
    settings: Settings,
    options: DemoOptions,
    fleets: dict[str, list[SimulatedSensor]],
    wall_key: str,
    out: TextIO,
) -> None:
    api = f"http://{settings.api.host}:{settings.api.port}"
    out.write(
        f"UrbanPulse is running: {sum(map(len, fleets.values()))} simulated sensors of "
        f"{len(fleets)} families at {options.rate:g} readings/s\n"
        f"  map      {api}/map/#key={wall_key}\n"
        f"  API      {api}/v1/sensors  (send 'X-API-Key: {wall_key}')\n  docs     {api}/docs\n"
        f"  health   {api}/healthz\nPress Ctrl-C to stop.\n"
    )
    out.flush()


async def _print_counts(settings: Settings, out: TextIO, published: _Published) -> None:
    interactive = out.isatty()
    async with _KafkaCounts(settings) as counts:
        while True:
            await asyncio.sleep(1.0 if interactive else 5.0)
            try:
                line = await counts.line(published)
            except (KafkaError, OSError) as exc:  # a broker hiccup costs one line, not the rest
                line = f"counts unavailable: {exc!r}"
            out.write(f"\r{line}" if interactive else f"{line}\n")
            out.flush()


class _KafkaCounts:
    """Readings published by the simulators; records written to the readings topic (one per
    MQTT message: a gateway's batch is one record) and processed (committed by the processors'
    consumer group: stored, or dead-lettered by them); dead letters in all."""

    def __init__(self, settings: Settings) -> None:
        self._kafka = settings.kafka_as(KafkaPrincipal.ADMIN)
        self._topics = TopicCounter(self._kafka)
        self._admin = AIOKafkaAdminClient(**self._kafka.client_kwargs())

    async def __aenter__(self) -> _KafkaCounts:
        await self._admin.start()
        await self._topics.__aenter__()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self._topics.__aexit__()
        await self._admin.close()

    async def line(self, published: _Published) -> str:
        readings = self._kafka.topic("readings")
        in_kafka = await self._topics.total(readings)
        dead = await self._topics.total(self._kafka.topic("deadletter"))
        committed = await self._admin.list_consumer_group_offsets(self._kafka.consumer_group)
        processed = sum(o.offset for tp, o in committed.items() if tp.topic == readings)
        return (
            f"published {published.total:>8}  in Kafka {in_kafka:>8}  "
            f"processed {processed:>8}  dead-lettered {dead:>5}"
        )
