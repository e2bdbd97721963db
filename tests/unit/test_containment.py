"""Transient or permanent, bisection, and the pending budget: the processor's containment."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

from urbanpulse.stream.admission import PendingAdmission
from urbanpulse.stream.faults import is_transient
from urbanpulse.stream.isolate import store_isolating


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(),
        OSError("network unreachable"),
        asyncpg.InterfaceError("connection is closed"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.SerializationError("could not serialize access"),
        asyncpg.DeadlockDetectedError("deadlock detected"),
        asyncpg.DiskFullError("no space left"),
        asyncpg.UndefinedColumnError("column does not exist"),
        KafkaConnectionError(),
        KafkaTimeoutError(),
    ],
)
def test_server_failures_are_transient(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.DataError("invalid input"),
        asyncpg.NumericValueOutOfRangeError("integer out of range"),
        asyncpg.CharacterNotInRepertoireError("invalid byte sequence for encoding UTF8"),
        asyncpg.UntranslatableCharacterError("unsupported Unicode escape sequence"),
        asyncpg.CheckViolationError("violates check constraint"),
        asyncpg.NotNullViolationError("null value in column"),
        # asyncpg's client-side DataError: an argument it cannot encode (an InterfaceError too).
        asyncpg.exceptions._base.DataError("value out of int64 range"),
        OverflowError("date value out of range"),
        asyncpg.InternalServerError("lwgeom_api: invalid geometry"),  # how extensions complain
        ValueError("bad value"),
    ],
)
def test_data_errors_are_permanent(exc: BaseException) -> None:
    assert not is_transient(exc)


class FakeStore:
    """Stores batches unless they hold a bad item; records every attempt."""

    def __init__(self, bad: set[int], transient_on: set[int] | None = None) -> None:
        self.bad = bad
        self.transient_on = transient_on or set()
        self.stored: list[int] = []
        self.attempts = 0

    async def __call__(self, items: Sequence[int]) -> None:
        self.attempts += 1
        if self.transient_on & set(items):
            raise ConnectionResetError("server went away")
        if self.bad & set(items):
            raise asyncpg.NumericValueOutOfRangeError(f"bad among {len(items)}")
        self.stored += items


async def test_bisection_stores_every_good_item_and_returns_each_bad_one_with_its_error() -> None:
    store = FakeStore(bad={3, 17, 18})
    failed = await store_isolating(list(range(32)), store)
    assert sorted(store.stored) == [i for i in range(32) if i not in {3, 17, 18}]
    assert [item for item, _ in failed] == [3, 17, 18]
    assert all(isinstance(exc, asyncpg.NumericValueOutOfRangeError) for _, exc in failed)


async def test_one_bad_item_costs_about_two_attempts_per_halving() -> None:
    store = FakeStore(bad={100})
    await store_isolating(list(range(1024)), store)
    # 1 whole + 2 per level for 10 levels (one half fails, one half is stored).
    assert store.attempts == 1 + 2 * 10


async def test_a_good_batch_is_one_attempt() -> None:
    store = FakeStore(bad=set())
    assert await store_isolating([1, 2, 3], store) == []
    assert store.attempts == 1 and store.stored == [1, 2, 3]


async def test_a_transient_error_stops_bisection_for_a_retry_of_the_whole_batch() -> None:
    store = FakeStore(bad={1}, transient_on={6})
    with pytest.raises(ConnectionResetError):
        await store_isolating(list(range(8)), store)


def test_the_pending_budget_is_bounded_by_the_cap_and_refills_at_the_rate() -> None:
    admission = PendingAdmission(cap=1000, per_minute=100, now_s=0.0)
    budget = admission.budget(pending_now=0, now_s=0.0)
    assert budget.remaining == 100 and "100 new sensors a minute" in budget.why_not
    admission.spend(100)
    assert admission.budget(0, now_s=0.0).remaining == 0
    assert admission.budget(0, now_s=30.0).remaining == 50  # half a minute: half the rate
    assert admission.budget(0, now_s=3600.0).remaining == 100  # never more than a minute's
    near_cap = admission.budget(pending_now=990, now_s=3600.0)
    assert near_cap.remaining == 10
    full = admission.budget(pending_now=1000, now_s=3600.0)
    assert (
        full.remaining == 0
        and full.why_not == "the cap of 1000 sensors pending approval is reached"
    )
