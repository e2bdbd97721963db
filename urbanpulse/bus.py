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

from urbanpulse.core.settings import KafkaSettings
from urbanpulse.runtime import StartupError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    name: str  # without prefix
    partitions: int
    compacted: bool = False


def topic_specs(settings: KafkaSettings) -> list[TopicSpec]:
    return [
        TopicSpec("readings", settings.readings_partitions),
        TopicSpec("deadletter", 1),
        TopicSpec("alerts", 1),
        TopicSpec("sensors", 1, compacted=True),
    ]


async def ensure_topics(settings: KafkaSettings, timeout_s: float = 30.0) -> None:
    """Create the platform's topics if they do not exist yet (safe to call from every part)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
    except (KafkaError, OSError, TimeoutError) as exc:
        await admin.close()
        raise StartupError(
            f"cannot reach Kafka at {settings.bootstrap_servers} ({exc!r}); is the stack up "
            "(`urbanpulse stack up`) or URBANPULSE_KAFKA__BOOTSTRAP_SERVERS right?"
        ) from None
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name=settings.topic(spec.name),
                num_partitions=spec.partitions,
                replication_factor=settings.replication_factor,
                topic_configs={"cleanup.policy": "compact"} if spec.compacted else {},
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
    settings: KafkaSettings, client_id: str, *, linger_ms: int = 5, max_batch_bytes: int = 16384
) -> AIOKafkaProducer:
    """An idempotent producer that waits for all in-sync replicas: nothing acked is lost.

    ``linger_ms`` and ``max_batch_bytes`` (per partition) trade latency for fewer, larger
    requests: the bridge, which sends thousands of records a second, wants them larger.
    """
    return AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
        max_batch_size=max_batch_bytes,
        partitioner=RememberingPartitioner(),
        request_timeout_ms=30_000,
    )


class TopicCounter:
    """Counts the records ever written to topics (sum of partition end offsets) with a consumer
    that joins no group and fetches nothing, so it disturbs no one."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
        self._consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
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
        bootstrap_servers=settings.bootstrap_servers, request_timeout_ms=int(timeout_s * 1000)
    )
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        await asyncio.wait_for(admin.describe_cluster(), timeout_s)
        return True
    except (KafkaError, TimeoutError, OSError):
        return False
    finally:
        await admin.close()
