"""Fixtures that run the platform's parts against the session's real local stack.

Each test gets its own MQTT topic root, Kafka topic prefix, consumer group and API port, so
tests share the servers but not their data.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
from pydantic import BaseModel, SecretStr

from tests.conftest import free_ports
from urbanpulse.api.server import serve_api
from urbanpulse.core.envelope import Reading, decode_readings, schema_header
from urbanpulse.core.settings import DbRole, KafkaPrincipal, Settings
from urbanpulse.ingest.bridge import MqttBridge
from urbanpulse.ingest.service import run_bridge
from urbanpulse.kafka_access import provision
from urbanpulse.storage.db import connect
from urbanpulse.storage.keys import Role, create_api_key
from urbanpulse.storage.schema import migrate_as_owner
from urbanpulse.stream.processor import StreamProcessor
from urbanpulse.stream.service import run_processor

T = TypeVar("T")


def isolated(settings: Settings, name: str) -> Settings:
    """Private topics and consumer group (see ``Settings.isolated``) and a free API port;
    no metrics servers (their default ports are shared by every test run on the machine)."""
    [api_port] = free_ports(1)
    private = with_metrics_port(settings.isolated(name), 0)
    return private.model_copy(update={"api": private.api.model_copy(update={"port": api_port})})


def with_rules_file(settings: Settings, tmp_path: Path, rules: str, **alerts: Any) -> Settings:
    """``settings`` whose alert rules are ``rules`` (YAML text), with ``alerts`` settings changed
    (e.g. a short ``check_interval_s`` so that timer-driven rules answer quickly)."""
    path = tmp_path / "rules.yaml"
    path.write_text(rules)
    update = settings.alerts.model_copy(update={"rules_path": path, **alerts})
    return settings.model_copy(update={"alerts": update})


@pytest.fixture
async def settings(stack_settings: Settings) -> AsyncIterator[Settings]:
    test_settings = isolated(stack_settings, f"t{uuid.uuid4().hex[:10]}")
    await migrate_as_owner(test_settings)
    await provision(test_settings)  # its Kafka topics, and ACLs that let the parts use them
    yield test_settings


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(settings, DbRole.OWNER)
    yield conn
    await conn.close()


@dataclass
class Pipeline:
    bridge: MqttBridge
    processor: StreamProcessor
    api_url: str
    api_key: str  # an admin key, created for the test

    def http(self, key: str | None = "admin") -> httpx.AsyncClient:
        """A client of the running API, sending this test's admin key (or ``key``, or none)."""
        headers = {"X-API-Key": self.api_key if key == "admin" else key} if key else {}
        return httpx.AsyncClient(base_url=self.api_url, headers=headers, timeout=10)


def with_metrics_port(settings: Settings, port: int) -> Settings:
    return settings.model_copy(
        update={"metrics": settings.metrics.model_copy(update={"port": port})}
    )


@contextlib.asynccontextmanager
async def running_pipeline(
    settings: Settings, metrics_ports: tuple[int, int] = (0, 0)
) -> AsyncIterator[Pipeline]:
    """Bridge, processor and API running in this event loop, ready, until the block ends;
    the bridge and the processor serve their metrics on ``metrics_ports`` (0: not at all)."""
    stop = asyncio.Event()
    bridges: asyncio.Queue[MqttBridge] = asyncio.Queue()
    processors: asyncio.Queue[StreamProcessor] = asyncio.Queue()
    bridge_port, processor_port = metrics_ports
    tasks = [
        asyncio.create_task(run_bridge(with_metrics_port(settings, bridge_port), stop, bridges)),
        asyncio.create_task(
            run_processor(with_metrics_port(settings, processor_port), stop, processors)
        ),
        asyncio.create_task(serve_api(settings, stop)),
    ]
    try:
        bridge = await asyncio.wait_for(bridges.get(), 60)
        processor = await asyncio.wait_for(processors.get(), 60)
        await asyncio.wait_for(bridge.connected.wait(), 30)
        await asyncio.wait_for(processor.assigned.wait(), 60)
        conn = await connect(settings, DbRole.API)  # the role that issues keys
        try:
            key = await create_api_key(conn, f"{settings.kafka.topic_prefix}-admin", Role.ADMIN)
        finally:
            await conn.close()
        yield Pipeline(bridge, processor, f"http://{settings.api.host}:{settings.api.port}", key)
    finally:
        stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, f"a part of the pipeline failed: {errors!r}"


@pytest.fixture
async def pipeline(settings: Settings) -> AsyncIterator[Pipeline]:
    async with running_pipeline(settings) as running:
        yield running


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    timeout_s: float = 60.0,
    interval_s: float = 0.2,
) -> T:
    """Poll ``probe`` until ``accept`` holds or the deadline passes; return the last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if accept(value) or time.monotonic() > deadline:
            return value
        await asyncio.sleep(interval_s)


async def read_topic(
    settings: Settings, topic: str, expected: int, timeout_s: float = 60.0
) -> list[bytes]:
    """Values of a topic from its start, until ``expected`` records arrived or time ran out."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        **settings.kafka_as(KafkaPrincipal.ADMIN).client_kwargs(),
        auto_offset_reset="earliest",
    )
    await consumer.start()
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(values) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            values += [record.value for records in batches.values() for record in records]
    finally:
        await consumer.stop()
    return values


async def read_readings(
    settings: Settings, at_least: int = 0, timeout_s: float = 60.0
) -> list[Reading]:
    """Every reading on the readings topic, each record decoded as its consumers decode it
    (a record holds one MQTT message's readings), once at least ``at_least`` arrived and every
    partition is read to its end, or time ran out.  A record that is not all valid readings
    fails the test: only the bridge writes here."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        settings.kafka.topic("readings"),
        **settings.kafka_as(KafkaPrincipal.ADMIN).client_kwargs(),
        auto_offset_reset="earliest",
    )
    await consumer.start()
    readings: list[Reading] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for record in (r for records in batches.values() for r in records):
                unpacked = decode_readings(record.value or b"", schema_header(record.headers))
                assert unpacked.bad == [], unpacked.bad
                readings += [reading for _, reading in unpacked.readings]
            assigned = list(consumer.assignment())
            if len(readings) >= at_least and assigned:
                ends = await consumer.end_offsets(assigned)
                if all([await consumer.position(tp) >= ends[tp] for tp in assigned]):
                    break
    finally:
        await consumer.stop()
    return readings


def settings_env(settings: Settings) -> dict[str, str]:
    """``URBANPULSE_*`` variables that rebuild ``settings`` in a child process."""
    env: dict[str, str] = {}
    for section_name, section in settings:
        _flatten(f"URBANPULSE_{section_name.upper()}", section, env)
    return env


def _flatten(name: str, value: object, env: dict[str, str]) -> None:
    """Nested models become ``__``-separated names (``..._DATABASE__PASSWORDS__WRITER``)."""
    if isinstance(value, BaseModel):
        for field_name, field_value in value:
            _flatten(f"{name}__{field_name.upper()}", field_value, env)
    elif value is not None:
        env[name] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)


class ServiceProcess:
    """A part of the platform run as its own ``urbanpulse`` process, to be killed for real."""

    def __init__(self, command: str, settings: Settings, log_path: Path) -> None:
        self._command = command
        self._env = {**os.environ, **settings_env(settings)}
        self._log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self._log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "urbanpulse.cli", self._command],
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        """SIGKILL: no cleanup, no flush, exactly like a crash or a power cut."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def stop(self) -> int:
        """SIGTERM, as an operator's Ctrl-C or a service manager would."""
        assert self.process is not None
        self.process.terminate()
        return self.process.wait(timeout=30)

    def log_text(self) -> str:
        return self._log_path.read_text(errors="replace")

    def ensure_stopped(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()


@pytest.fixture
def service_process(
    settings: Settings, tmp_path: Path
) -> Iterator[Callable[[str], ServiceProcess]]:
    """Start ``urbanpulse <command>`` processes; whatever a test leaves running is killed."""
    started: list[ServiceProcess] = []

    def start(command: str) -> ServiceProcess:
        service = ServiceProcess(command, settings, tmp_path / f"{command}.log")
        service.start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.ensure_stopped()


async def all_sensors(http: httpx.AsyncClient, kind: str) -> list[dict[str, Any]]:
    """Every page of ``/v1/sensors?kind=``: the session's database holds other tests' fleets
    (ten thousand sensors after the city-scale map test), beyond one page."""
    features: list[dict[str, Any]] = []
    offset: int | None = 0
    while offset is not None:
        params: dict[str, str | int] = {"kind": kind, "limit": 10_000, "offset": offset}
        body = (await http.get("/v1/sensors", params=params)).json()
        features += body["features"]
        offset = body["pagination"]["next_offset"]
    return features


@contextlib.asynccontextmanager
async def running_service(
    run: Callable[[Settings, asyncio.Event, asyncio.Queue[T]], Coroutine[Any, Any, None]],
    settings: Settings,
    ready: Callable[[T], Awaitable[object]],
) -> AsyncIterator[T]:
    """One service (``run_bridge`` or ``run_processor``) in this event loop, from ``ready`` on
    (a bridge subscribed, a processor assigned) until the block ends."""
    stop = asyncio.Event()
    started: asyncio.Queue[T] = asyncio.Queue()
    task = asyncio.create_task(run(settings, stop, started))
    try:
        service = await asyncio.wait_for(started.get(), 60)
        await asyncio.wait_for(ready(service), 60)
        yield service
    finally:
        stop.set()
        await task
