"""Heartbeats: the bridge and the processor say, every few seconds, whether they make progress.

Each running instance writes a small record, keyed by its instance id, to the compacted topic
``<prefix>.heartbeats``: when it last made progress (bridge: acked an MQTT message; processor:
committed Kafka offsets), since when work has been waiting with no progress, and its counters.
Health (``urbanpulse.health``) reads the latest record of each instance.  A clean stop writes a
last record marked ``stopped`` so that an instance shut down on purpose is not taken for a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from urbanpulse.core.metrics import CounterView
from urbanpulse.core.settings import KafkaSettings, Settings
from urbanpulse.core.untrusted import preview

log = logging.getLogger(__name__)

HEARTBEAT_SCHEMA = b"heartbeat/1"
# Heartbeats read back, from the end of the topic: far more than live instances ever write in
# one silence window, so every live instance's latest is among them.
READ_BACK = 2000


@dataclass(frozen=True)
class Progress:
    """What a running part reports about itself at one moment."""

    counters: dict[str, int]
    work: int  # grows as work arrives (bridge: MQTT messages received); 0 if not tracked
    progress_at: datetime | None  # bridge: last MQTT ack; processor: last offset commit
    connected: bool = True  # bridge: its MQTT connection is up


@dataclass(frozen=True)
class Heartbeat:
    component: str  # "bridge" | "processor"
    instance: str
    at: datetime
    progress_at: datetime | None
    waiting_since: datetime | None  # work arrived and nothing progressed since then
    disconnected_since: datetime | None
    stopped: bool
    counters: dict[str, int]

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_UTC_Z)

    @classmethod
    def from_json(cls, raw: bytes) -> Heartbeat:
        doc = orjson.loads(raw)

        def when(name: str) -> datetime | None:
            value = doc.get(name)
            return datetime.fromisoformat(value) if value else None

        at = when("at")
        if at is None:
            raise ValueError("heartbeat without 'at'")
        return cls(
            component=str(doc["component"]),
            instance=str(doc["instance"]),
            at=at,
            progress_at=when("progress_at"),
            waiting_since=when("waiting_since"),
            disconnected_since=when("disconnected_since"),
            stopped=bool(doc.get("stopped", False)),
            counters={str(k): int(v) for k, v in dict(doc.get("counters", {})).items()},
        )


@dataclass(frozen=True)
class Watch:
    """What one tick remembers for the next (pure: ``next_watch`` derives it)."""

    at: datetime
    work: int
    waiting_since: datetime | None = None
    disconnected_since: datetime | None = None


def next_watch(previous: Watch, now: datetime, progress: Progress) -> Watch:
    """Work that arrived since the previous tick with no progress since: waiting from then on.

    Progress since the previous tick clears the wait.  A wait also survives ticks without new
    work: the bridge stops taking messages once its hand-off queue is full.
    """
    progressed = progress.progress_at is not None and progress.progress_at >= previous.at
    waiting = previous.waiting_since
    if progressed:
        waiting = None
    elif progress.work > previous.work and waiting is None:
        waiting = previous.at
    disconnected = None if progress.connected else (previous.disconnected_since or now)
    return Watch(now, progress.work, waiting, disconnected)


def default_instance(component: str) -> str:
    return f"{component}@{socket.gethostname()}:{os.getpid()}"


async def send_heartbeats(
    settings: Settings,
    producer: AIOKafkaProducer,
    component: str,
    probe: Callable[[], Progress],
    instance: str | None = None,
) -> None:
    """Publish ``component``'s heartbeat every ``health.heartbeat_interval_s`` (run as a task;
    cancel it to stop: it then writes a last ``stopped`` heartbeat)."""
    topic = settings.kafka.topic("heartbeats")
    name = instance or default_instance(component)
    watch = Watch(datetime.now(UTC), probe().work)

    async def send(stopped: bool) -> None:
        progress = probe()
        beat = Heartbeat(
            component,
            name,
            watch.at,
            progress.progress_at,
            watch.waiting_since,
            watch.disconnected_since,
            stopped,
            progress.counters,
        )
        try:
            await asyncio.wait_for(
                producer.send(
                    topic, beat.to_json(), key=name.encode(), headers=[("schema", HEARTBEAT_SCHEMA)]
                ),
                settings.health.heartbeat_interval_s,
            )
        except (KafkaError, TimeoutError) as exc:
            log.debug("heartbeat not sent (%r)", exc)

    try:
        while True:
            watch = next_watch(watch, datetime.now(UTC), probe())
            await send(stopped=False)
            await asyncio.sleep(settings.health.heartbeat_interval_s)
    except asyncio.CancelledError:
        with contextlib.suppress(asyncio.CancelledError):
            await send(stopped=True)
        raise


class Bridge(Protocol):
    @property
    def counters(self) -> CounterView: ...

    last_ack_at: datetime | None
    connected: asyncio.Event


class Processor(Protocol):
    @property
    def counters(self) -> CounterView: ...

    last_commit_at: datetime | None


def _whole(counters: CounterView) -> dict[str, int]:
    """The counters as the whole numbers they count (Prometheus keeps them as floats)."""
    return {name: int(value) for name, value in counters.snapshot().items()}


async def bridge_heartbeats(settings: Settings, producer: AIOKafkaProducer, bridge: Bridge) -> None:
    """The bridge's heartbeats; its work is MQTT messages received, its progress their acks."""

    def probe() -> Progress:
        counters = _whole(bridge.counters)
        return Progress(
            counters, counters["messages"], bridge.last_ack_at, bridge.connected.is_set()
        )

    await send_heartbeats(settings, producer, "bridge", probe, settings.mqtt.bridge_client())


async def processor_heartbeats(
    settings: Settings, producer: AIOKafkaProducer, processor: Processor
) -> None:
    """The processor's heartbeats: progress is its last offset commit (its lag is read from
    Kafka by health itself, which works even when no processor runs)."""

    def probe() -> Progress:
        return Progress(_whole(processor.counters), 0, processor.last_commit_at)

    await send_heartbeats(settings, producer, "processor", probe)


async def latest_heartbeats(settings: KafkaSettings, timeout_s: float = 3.0) -> list[Heartbeat]:
    """The latest heartbeat of each instance among the last ``READ_BACK`` on the topic."""
    tp = TopicPartition(settings.topic("heartbeats"), 0)
    consumer = AIOKafkaConsumer(**settings.client_kwargs())
    latest: dict[str, Heartbeat] = {}
    try:  # start inside: a caller's timeout may cancel it
        await consumer.start()
        if tp.topic not in await consumer.topics():
            return []  # no bridge or processor has run yet
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        start = (await consumer.beginning_offsets([tp]))[tp]
        consumer.seek(tp, max(start, end - READ_BACK))
        deadline = time.monotonic() + timeout_s
        while await consumer.position(tp) < end and time.monotonic() < deadline:
            fetched = await consumer.getmany(tp, timeout_ms=200)
            for record in fetched.get(tp, []):
                beat = _decode(record.value)
                if beat is not None:
                    latest[beat.instance] = beat
    finally:
        await consumer.stop()
    return list(latest.values())


def _decode(raw: Any) -> Heartbeat | None:
    """A heartbeat, or None for a record that is not one (logged: the topic is ours alone)."""
    try:
        return Heartbeat.from_json(bytes(raw))
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("skipping a record on the heartbeat topic: %s", preview(str(exc), 200))
        return None


@contextlib.asynccontextmanager
async def heartbeats_while(beats: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """Run ``beats`` (``bridge_heartbeats(...)`` or ``processor_heartbeats(...)``) beside the
    block, and let it write its last ``stopped`` heartbeat before the block's producer stops."""
    task = asyncio.create_task(beats)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
