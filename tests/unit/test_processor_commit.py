"""The processor commits offsets only for partitions it still owns after a batch."""

from __future__ import annotations

from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError

from urbanpulse.stream.processor import StreamProcessor


class _Record:
    def __init__(self, offset: int) -> None:
        self.offset = offset


class _Consumer:
    """The two consumer methods ``_commit`` uses, with aiokafka's rule for foreign partitions."""

    def __init__(self, assigned: set[TopicPartition]) -> None:
        self.assigned = assigned
        self.committed: list[dict[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if not set(offsets) <= self.assigned:
            raise IllegalStateError("Partition is not assigned")
        self.committed.append(offsets)


P0, P1 = TopicPartition("t.readings", 0), TopicPartition("t.readings", 1)


async def _commit(consumer: _Consumer, batches: dict[TopicPartition, list[Any]]) -> None:
    await StreamProcessor._commit(object.__new__(StreamProcessor), consumer, batches)  # type: ignore[arg-type]


async def test_a_partition_taken_away_during_the_batch_is_left_to_its_new_owner() -> None:
    consumer = _Consumer({P1})
    await _commit(consumer, {P0: [_Record(4), _Record(5)], P1: [_Record(9)]})
    assert consumer.committed == [{P1: 10}]


async def test_all_partitions_taken_away_commits_nothing_and_does_not_raise() -> None:
    consumer = _Consumer(set())
    await _commit(consumer, {P0: [_Record(4)]})
    assert consumer.committed == []


async def test_owned_partitions_commit_the_offset_after_the_last_record() -> None:
    consumer = _Consumer({P0, P1})
    await _commit(consumer, {P0: [_Record(4), _Record(5)], P1: [_Record(0)]})
    assert consumer.committed == [{P0: 6, P1: 1}]
