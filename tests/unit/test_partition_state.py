"""The processor's memory per partition across rebalances (``stream.partition_state``)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError
from aiokafka.partitioner import DefaultPartitioner

from urbanpulse.alerts.engine import SensorSeen
from urbanpulse.stream.partition_state import (
    PARTITIONS_KEPT,
    PartitionStates,
    Rebalance,
    partition_for,
)

T0 = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
TOPIC = "t.readings"


def test_partition_for_is_where_the_producer_sends_a_key() -> None:
    producer = DefaultPartitioner()
    partitions = list(range(12))
    for key in ["air-001", "area:q1-p-ben-nghe", "bin-9", "Cầu Giấy", ""]:
        assert partition_for(key, 12) == producer(key.encode(), partitions, partitions)


def test_partition_for_remembers_each_key_per_partition_count() -> None:
    # Asked again (remembered) and for another partition count (not mixed up with the first),
    # past more keys than it remembers: always where the producer sends the key.
    producer = DefaultPartitioner()
    keys = [f"air-{i}" for i in range(PARTITIONS_KEPT + 10)]
    for count in [12, 24, 12]:
        partitions = list(range(count))
        for key in [*keys[:50], *keys[-50:], *keys[:50]]:
            assert partition_for(key, count) == producer(key.encode(), partitions, partitions)
    for key in keys:
        partition_for(key, 12)
    assert partition_for("air-0", 24) == producer(b"air-0", list(range(24)), list(range(24)))


def states_with(partitions: list[int], committed: dict[int, int | None]) -> PartitionStates:
    states = PartitionStates(max_window_sensors=1200, max_tracked_sensors=1200)
    states.assign(partitions, committed, 12)
    return states


def test_a_kept_partition_keeps_its_state_and_others_start_empty() -> None:
    states = states_with([0, 1, 2], {})
    states.get(1).windows.add("s1", T0, {"pm25": 10.0})  # type: ignore[union-attr]
    states.get(1).alerts.sensors["s1"] = SensorSeen("air", None, T0)  # type: ignore[union-attr]
    states.get(1).seeded = True  # type: ignore[union-attr]
    states.committed({1: 40, 2: 7})
    kept = states.get(1)

    states.revoke()
    assert len(states) == 0 and not states.owns(1)
    # 1 stays (its committed offset is still ours), 2 moved on elsewhere, 5 is new.
    states.assign([1, 5], {1: 40, 5: 3}, 12)
    assert states.get(1) is kept and kept is not None and kept.windows.knows("s1")
    assert kept.seeded and "s1" in kept.alerts.sensors
    fresh = states.get(5)
    assert fresh is not None and not fresh.seeded and not fresh.windows.knows("s1")
    assert states.get(2) is None and sorted(s.partition for s in states) == [1, 5]


def test_a_partition_another_member_committed_meanwhile_starts_again() -> None:
    states = states_with([4], {})
    states.get(4).seeded = True  # type: ignore[union-attr]
    states.committed({4: 100})
    states.revoke()
    states.assign([4], {4: 180}, 12)  # someone processed 80 more records while we were away
    again = states.get(4)
    assert again is not None and not again.seeded


def test_a_new_partition_count_keeps_nothing_and_shares_the_bounds_out() -> None:
    states = states_with([0], {})
    assert states.tracked_per_partition == 100  # 1200 over 12 partitions
    states.committed({0: 5})
    states.revoke()
    states.assign([0], {0: 5}, 24)  # every key may map elsewhere now
    state = states.get(0)
    assert state is not None and not state.seeded
    assert states.tracked_per_partition == 50


def test_owner_of_a_key_is_the_state_of_its_partition_when_assigned() -> None:
    home = partition_for("area:w1", 12)
    states = states_with([home], {})
    assert states.owner_of("area:w1") is states.get(home)
    states = states_with([(home + 1) % 12], {})
    assert states.owner_of("area:w1") is None


async def test_revocation_waits_for_the_batch_in_flight() -> None:
    states = states_with([0, 1], {})
    lock = asyncio.Lock()
    seen: list[frozenset[TopicPartition]] = []

    async def committed(tp: TopicPartition) -> int | None:
        return None

    listener = Rebalance(states, lock, committed, lambda: 12, seen.append)
    await lock.acquire()  # a batch is being stored
    revoking = asyncio.create_task(listener.on_partitions_revoked({TopicPartition(TOPIC, 0)}))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not revoking.done() and states.owns(0)  # the batch's partitions are still ours
    lock.release()
    await revoking
    assert not states.owns(0)
    await listener.on_partitions_assigned({TopicPartition(TOPIC, 1)})
    assert [sorted(tp.partition for tp in s) for s in seen] == [[1]]
    assert states.owns(1) and not states.owns(0)


async def test_an_unknown_committed_offset_still_takes_the_assignment_afresh() -> None:
    states = states_with([2], {})
    states.get(2).seeded = True  # type: ignore[union-attr]
    states.revoke()

    async def committed(tp: TopicPartition) -> int | None:
        raise KafkaConnectionError("coordinator gone")

    listener = Rebalance(states, asyncio.Lock(), committed, lambda: 12, lambda _: None)
    await listener.on_partitions_assigned({TopicPartition(TOPIC, 2)})
    state = states.get(2)
    assert state is not None and not state.seeded
