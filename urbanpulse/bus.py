"""Kafka plumbing shared by the bridge, the processor and the API: topics and clients."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner

from urbanpulse.core.kafka_acl import topics_of
from urbanpulse.core.settings import KafkaPrincipal, KafkaSettings
from urbanpulse.runtime import StartupError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    name: str  # without prefix
    partitions: int
    compacted: bool = False
    # Further topic configs; a compacted topic written every few seconds needs short segments,
    # or the log grows until a 256 MB segment closes and compaction may begin.
    configs: tuple[tuple[str, str], ...] = ()

    def topic_configs(self) -> dict[str, str]:
        return {**({"cleanup.policy": "compact"} if self.compacted else {}), **dict(self.configs)}


HEARTBEAT_SEGMENT_MS = str(3600 * 1000)
COMPRESSION = "zstd"  # of every producer's batches (cramjam, aiokafka's zstd extra)


def topic_specs(settings: KafkaSettings) -> list[TopicSpec]:
    return [
        TopicSpec("readings", settings.readings_partitions),
        TopicSpec("deadletter", 1),
        TopicSpec("alerts", 1),
        TopicSpec("sensors", 1, compacted=True),
        # The latest heartbeat of each bridge and processor instance (urbanpulse.heartbeat).
        TopicSpec("heartbeats", 1, compacted=True, configs=(("segment.ms", HEARTBEAT_SEGMENT_MS),)),
    ]


async def ensure_topics(settings: KafkaSettings, timeout_s: float = 30.0) -> None:
    """Create the platform's topics if they do not exist yet (safe to call from every part).

    Only the admin principal creates them (``urbanpulse stack up`` does, see
    ``urbanpulse.kafka_access.provision``); any other checks that its own topics are there.
    """
    admin = AIOKafkaAdminClient(**settings.client_kwargs())
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
    except (KafkaError, OSError, TimeoutError) as exc:
        await admin.close()
        raise StartupError(
            f"cannot reach Kafka at {settings.bootstrap_servers} ({exc!r}); is the stack up "
            "(`urbanpulse stack up`) or URBANPULSE_KAFKA__BOOTSTRAP_SERVERS right?"
        ) from None
    try:
        if settings.principal is not KafkaPrincipal.ADMIN:
            await _wait_granted(settings, admin, timeout_s)
            return
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name=settings.topic(spec.name),
                num_partitions=spec.partitions,
                replication_factor=settings.replication_factor,
                topic_configs=_replicated(settings, spec.topic_configs()),
            )
            for spec in topic_specs(settings)
            if settings.topic(spec.name) not in existing
        ]
        if missing:
            # Another part may create them at the same moment.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
            log.info("created Kafka topics %s", [t.name for t in missing])
    finally:
        await admin.close()


def _replicated(settings: KafkaSettings, configs: dict[str, str]) -> dict[str, str]:
    return {**configs, "min.insync.replicas": str(settings.min_insync_replicas)}


async def _wait_granted(
    settings: KafkaSettings, admin: AIOKafkaAdminClient, timeout_s: float
) -> None:
    # Metadata lists only the topics a principal may describe: a missing one is either not
    # created or not granted (both fixed by provisioning the prefix), or granted moments ago
    # and not yet known to this broker (hence the wait).
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        visible = set(await admin.list_topics())
        absent = [t for t in topics_of(settings, settings.principal) if t not in visible]
        if not absent:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise StartupError(
                f"Kafka topics {', '.join(absent)} do not exist or are not granted to the "
                f"{settings.principal.value} principal; `urbanpulse stack up` creates and "
                "grants them (README, Security)"
            )
        await asyncio.sleep(0.5)


class RememberingPartitioner:
    """aiokafka's DefaultPartitioner (Java's murmur2 mapping of key to partition), remembering
    each key's partition: murmur2 in pure Python was 6% of the bridge's CPU (py-spy)."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._default = DefaultPartitioner()
        self._max_keys = max_keys
        self._known: dict[tuple[bytes, int], int] = {}

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return int(self._default(key, all_partitions, available))
        # The mapping depends only on the key and the partition count.
        known = (key, len(all_partitions))
        partition = self._known.get(known)
        if partition is None:
            if len(self._known) >= self._max_keys:
                self._known.clear()
            partition = int(self._default(key, all_partitions, available))
            self._known[known] = partition
        return partition


def new_producer(
    settings: KafkaSettings,
    client_id: str,
    *,
    linger_ms: int = 5,
    max_batch_bytes: int = 16384,
    compression: str | None = COMPRESSION,
) -> AIOKafkaProducer:
    """An idempotent producer that waits for all in-sync replicas: nothing acked is lost.

    ``linger_ms`` and ``max_batch_bytes`` (per partition) trade latency for fewer, larger
    requests: the bridge, which sends thousands of records a second, wants them larger.
    Batches are zstd-compressed: reading envelopes repeat their field names, and a batch of
    them shrinks eightfold (327 -> 39 bytes a record); the broker then spent a fifth of the CPU
    per record, the producer no more than uncompressed (``bench/compression.py``; lz4 shrank
    them less, to 56 bytes, for 20 % more producer CPU).
    """
    return AIOKafkaProducer(
        **settings.client_kwargs(),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
        max_batch_size=max_batch_bytes,
        compression_type=compression,
        partitioner=RememberingPartitioner(),
        request_timeout_ms=30_000,
    )


class TopicCounter:
    """Counts the records ever written to topics (sum of partition end offsets) with a consumer
    that joins no group and fetches nothing, so it disturbs no one."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._admin = AIOKafkaAdminClient(**settings.client_kwargs())
        self._consumer = AIOKafkaConsumer(**settings.client_kwargs())
        self._partitions: dict[str, list[TopicPartition]] = {}

    async def __aenter__(self) -> TopicCounter:
        await self._admin.start()
        await self._consumer.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self._consumer.stop()
        await self._admin.close()

    async def total(self, topic: str) -> int:
        if topic not in self._partitions:
            [described] = await self._admin.describe_topics([topic])
            self._partitions[topic] = [
                TopicPartition(topic, p["partition"]) for p in described["partitions"]
            ]
        ends = await self._consumer.end_offsets(self._partitions[topic])
        return int(sum(ends.values()))


async def kafka_reachable(settings: KafkaSettings, timeout_s: float = 5.0) -> bool:
    admin = AIOKafkaAdminClient(
        **settings.client_kwargs(), request_timeout_ms=int(timeout_s * 1000)
    )
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        await asyncio.wait_for(admin.describe_cluster(), timeout_s)
        return True
    except (KafkaError, TimeoutError, OSError):
        return False
    finally:
        await admin.close()


@dataclass(frozen=True)
class GroupLag:
    """How far a consumer group is behind on a topic (records not yet committed)."""

    lag: int
    # Of those, the records written to Kafka before ``older_than`` (broker or producer time).
    waiting_since_before: int


async def group_lag(settings: KafkaSettings, group: str, topic: str, older_than: float) -> GroupLag:
    """Committed offsets of ``group`` against the end of ``topic``, and how many of the records
    in between were written before ``older_than`` (epoch seconds).  A partition the group never
    committed counts from its first record.  Joins no group and fetches no record."""
    admin = AIOKafkaAdminClient(**settings.client_kwargs())
    consumer = AIOKafkaConsumer(**settings.client_kwargs())
    try:  # everything inside: a caller's timeout may cancel any of these steps
        await admin.start()
        await consumer.start()
        [described] = await admin.describe_topics([topic])
        partitions = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        found = await consumer.offsets_for_times({tp: int(older_than * 1000) for tp in partitions})
    finally:
        await consumer.stop()
        await admin.close()
    lag = waiting = 0
    for tp in partitions:
        meta = committed.get(tp)
        position = meta.offset if meta is not None and meta.offset >= 0 else starts[tp]
        lag += max(0, ends[tp] - position)
        # The first record written at or after ``older_than``; none: every record is older.
        first_recent = found[tp].offset if found.get(tp) is not None else ends[tp]
        waiting += max(0, first_recent - position)
    return GroupLag(lag, waiting)
