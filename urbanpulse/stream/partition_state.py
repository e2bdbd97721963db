"""The processor's memory, one entry per Kafka partition it is assigned (DESIGN section 8).

Readings are keyed by sensor id, so each sensor's readings come through one partition, and
what the processor remembers of it lives with that partition: its hourly windows and its alert
tracks (a reading another producer wrote elsewhere joins its sensor's home partition when this
processor owns it: see ``urbanpulse.stream.batch.decode``).  An
area's rules and tracks belong to the partition its id maps to (:func:`partition_for`): the
processor that owns that partition is the area's one owner.

A rebalance (aiokafka calls :class:`Rebalance`) revokes every partition, then assigns the new
set.  A partition kept across it keeps its state, unless its committed offset moved meanwhile
(another member processed it while this one was away from the group): then, like a newly
assigned partition, it is seeded again from the database before its next record.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field

from aiokafka import TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from urbanpulse.alerts.engine import EngineState
from urbanpulse.indices.vn_aqi import POLLUTANTS
from urbanpulse.stream.windows import HourlyMeans

log = logging.getLogger(__name__)

UNKNOWN_OFFSET = -1  # never an offset this processor committed


# Keys whose partition is remembered (about 200 bytes each): a processor's sensors and areas.
PARTITIONS_KEPT = 65_536


def partition_for(key: str, partitions: int) -> int:
    """The partition of records keyed ``key``: Kafka's default partitioner (murmur2), which the
    bridge's producer uses for the sensor id of every reading.  Remembered per key and count."""
    return _partition_for(key, partitions)


# aiokafka's murmur2 is pure Python, several µs a key, and the processor asks for every reading.
@functools.lru_cache(maxsize=PARTITIONS_KEPT)
def _partition_for(key: str, partitions: int) -> int:
    return int(murmur2(key.encode()) & 0x7FFFFFFF) % partitions


@dataclass
class PartitionState:
    partition: int
    windows: HourlyMeans
    alerts: EngineState = field(default_factory=EngineState)
    seeded: bool = False  # alert state loaded from the database
    # The group's committed offset as this processor last knew it (at assignment, or its own
    # commit since); None: never committed.
    committed: int | None = None

    def forget(self) -> None:
        """Drop what a failed batch may have half changed: seeded again before the next one."""
        self.windows.forget_all()
        self.alerts = EngineState()
        self.seeded = False


class PartitionStates:
    """The assigned partitions' states; bounds shared out among the topic's partitions."""

    def __init__(self, max_window_sensors: int, max_tracked_sensors: int) -> None:
        self._max_window_sensors = max_window_sensors
        self._max_tracked_sensors = max_tracked_sensors
        self.partitions = 1  # the topic's partition count, once known
        self._states: dict[int, PartitionState] = {}
        self._revoked: dict[int, PartitionState] = {}

    def __iter__(self) -> Iterator[PartitionState]:
        return iter(self._states.values())

    def __len__(self) -> int:
        return len(self._states)

    def get(self, partition: int) -> PartitionState | None:
        return self._states.get(partition)

    def owns(self, partition: int) -> bool:
        return partition in self._states

    def owner_of(self, key: str) -> PartitionState | None:
        """The state of the partition ``key`` maps to, if this processor owns it."""
        return self._states.get(partition_for(key, self.partitions))

    @property
    def tracked_per_partition(self) -> int:
        return math.ceil(self._max_tracked_sensors / self.partitions)

    def committed(self, offsets: dict[int, int]) -> None:
        """Remember the offsets this processor committed, by partition."""
        for partition, offset in offsets.items():
            if (state := self._states.get(partition)) is not None:
                state.committed = offset

    def revoke(self) -> None:
        """Every partition is revoked (aiokafka's eager rebalance): keep their states aside
        until the new assignment says which stay."""
        self._revoked.update(self._states)
        self._states = {}

    def assign(
        self, assigned: Iterable[int], committed: dict[int, int | None], partitions: int
    ) -> None:
        """Keep the states of partitions assigned again whose committed offset is still the one
        this processor committed; start the others empty (seeded before their first record).
        ``partitions``: the topic's partition count."""
        if partitions != self.partitions:  # every key may map elsewhere: keep nothing
            self._revoked = {}
            self.partitions = max(1, partitions)
        windows_each = math.ceil(self._max_window_sensors / self.partitions)
        for partition in sorted(assigned):
            kept = self._revoked.pop(partition, None)
            if kept is not None and kept.committed == committed.get(partition):
                self._states[partition] = kept
            else:
                self._states[partition] = PartitionState(
                    partition,
                    HourlyMeans(POLLUTANTS, windows_each),
                    committed=committed.get(partition),
                )
        self._revoked = {}


class Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """aiokafka's rebalance callbacks, run by the consumer's group coordinator task.

    ``lock`` is held by the processor around each batch and its offset commit, so a revocation
    waits until the batch in flight is stored and committed; records fetched before the
    revocation for partitions no longer owned are left to their next owner.
    """

    def __init__(
        self,
        states: PartitionStates,
        lock: asyncio.Lock,
        committed: Callable[[TopicPartition], Awaitable[int | None]],
        partition_count: Callable[[], int],
        on_assigned: Callable[[frozenset[TopicPartition]], None],
    ) -> None:
        self._states = states
        self._lock = lock
        self._committed = committed
        self._partition_count = partition_count
        self._on_assigned = on_assigned

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._lock:
            self._states.revoke()
        log.info("processor revoked %s", _names(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        async with self._lock:
            committed = {tp.partition: await self._committed_or_unknown(tp) for tp in assigned}
            partitions = self._partition_count()
            self._states.assign((tp.partition for tp in assigned), committed, partitions)
            self._on_assigned(frozenset(assigned))
        log.info("processor assigned %s", _names(assigned))

    async def _committed_or_unknown(self, tp: TopicPartition) -> int | None:
        """The group's committed offset; if Kafka cannot say, one that matches no state kept
        (it starts afresh): aiokafka only logs what a callback raises, and the assignment
        must be taken whatever happens."""
        try:
            return await self._committed(tp)
        except KafkaError as exc:
            log.warning("committed offset of %s unknown (%r): its state starts afresh", tp, exc)
            return UNKNOWN_OFFSET


def _names(partitions: Iterable[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}/{tp.partition}" for tp in partitions)
