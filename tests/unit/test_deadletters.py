"""The dead-letter rate cap: per source and in all, per interval, with a summary of the rest."""

from __future__ import annotations

import threading

import pytest
from pydantic import ValidationError

from urbanpulse.core.deadletters import (
    OTHER_SOURCES,
    SOURCE_KEY_CHARS,
    CapSummary,
    DeadLetterGate,
    RateCap,
)
from urbanpulse.core.settings import IngestSettings
from urbanpulse.ingest.handoff import HandOff


def admitted(gate: DeadLetterGate, source: str, count: int, now: float) -> int:
    return sum(gate.admit(source, now) for _ in range(count))


def test_each_source_gets_its_own_allowance_per_interval() -> None:
    gate = DeadLetterGate(RateCap(per_source=3, total=100, interval_s=60), now=0.0)
    assert admitted(gate, "a", 5, now=1.0) == 3
    assert admitted(gate, "b", 2, now=2.0) == 2  # a's flood does not silence b
    assert admitted(gate, "a", 5, now=59.0) == 0
    assert admitted(gate, "a", 5, now=60.0) == 3  # a new interval


def test_all_sources_together_are_capped_too() -> None:
    gate = DeadLetterGate(RateCap(per_source=10, total=4, interval_s=60), now=0.0)
    assert [gate.admit(f"s{i}", 1.0) for i in range(6)] == [True] * 4 + [False] * 2


def test_the_summary_counts_what_was_capped_once_and_names_the_worst_sources() -> None:
    gate = DeadLetterGate(RateCap(per_source=1, total=100, interval_s=60), now=0.0)
    assert gate.take_summary() is None
    admitted(gate, "loud", 11, now=1.0)
    admitted(gate, "quiet", 3, now=1.0)
    admitted(gate, "fine", 1, now=1.0)
    assert gate.take_summary() == CapSummary(capped=12, sources=2, top=[("loud", 10), ("quiet", 2)])
    assert gate.take_summary() is None  # counted once


def test_tracked_sources_are_bounded_however_many_topics_an_attacker_invents() -> None:
    gate = DeadLetterGate(RateCap(per_source=1, total=10**9, interval_s=60, max_sources=100), 0.0)
    assert admitted(gate, "x" * 70_000, 1, now=1.0) == 1
    for i in range(10_000):
        gate.admit(f"sensor-{i}", 1.0)
    # 100 sources are tracked (the long one included); all later ones share one allowance.
    summary = gate.take_summary()
    assert summary is not None
    assert summary.capped == 10_001 - (100 + 1)
    assert summary.sources == 100 + 1  # the capped counts are bounded the same way
    assert summary.top[0] == (OTHER_SOURCES, 10_000 - 99 - 1 - 100)
    assert all(len(source) <= SOURCE_KEY_CHARS for source, _ in summary.top)


def test_hand_off_is_bounded_in_messages_and_bytes_but_never_refuses_a_lone_message() -> None:
    room = HandOff(max_messages=3, max_bytes=100)
    assert room.acquire(1000, timeout_s=0)  # larger than the budget, but nothing else waits
    assert not room.acquire(1, timeout_s=0)
    room.release(1000)
    assert room.acquire(60, timeout_s=0)
    assert room.acquire(40, timeout_s=0)
    assert not room.acquire(1, timeout_s=0)  # 100 bytes taken
    room.release(40)
    assert room.acquire(10, timeout_s=0)
    assert room.acquire(10, timeout_s=0)
    assert not room.acquire(1, timeout_s=0)  # 3 messages taken


def test_hand_off_wakes_a_waiting_thread_when_room_frees_up() -> None:
    room = HandOff(max_messages=1, max_bytes=100)
    assert room.acquire(10, timeout_s=0)
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(room.acquire(10, timeout_s=30)))
    waiter.start()
    room.release(10)
    waiter.join()
    assert got == [True]


def test_ingest_limits_must_be_consistent_with_each_other() -> None:
    # At or above the broker's limit the bridge's own would never be reached.
    with pytest.raises(ValidationError, match="must be below broker_message_size_limit"):
        IngestSettings(max_payload_bytes=4 * 1024 * 1024)
    with pytest.raises(ValidationError, match="hold at least one largest message"):
        IngestSettings(broker_max_queued_bytes=1024)
    with pytest.raises(ValidationError, match="Kafka accepts"):
        IngestSettings(dead_letter_raw_prefix_bytes=2 * 1024 * 1024)
    assert IngestSettings().dead_letter_limits().raw_prefix_bytes == 64 * 1024
