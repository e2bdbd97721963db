"""Find the record(s) that make a batch fail, by bisection, and store everything else.

A batch is one transaction.  When it fails with a permanent error (see
:mod:`urbanpulse.stream.faults`), its halves are tried on their own, then their halves, until the
records that fail alone are found: ``log2(batch)`` extra transactions per bad record, and every
good record is stored.  A transient error anywhere is raised at once, so that the caller retries
the whole batch later; the halves stored meanwhile make that retry cheap (writes are idempotent).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from urbanpulse.stream.faults import is_transient

T = TypeVar("T")


async def store_isolating(
    items: Sequence[T],
    store: Callable[[Sequence[T]], Awaitable[None]],
    transient: Callable[[BaseException], bool] = is_transient,
) -> list[tuple[T, Exception]]:
    """``store`` ``items``, in parts if need be; returns each item that failed alone, with why.

    Transient errors propagate.  ``store`` must leave nothing behind when it raises (one
    transaction), so that a half can be retried on its own.
    """
    if not items:
        return []
    try:
        await store(items)
        return []
    except Exception as exc:
        if transient(exc):
            raise
        if len(items) == 1:
            return [(items[0], exc)]
    middle = len(items) // 2
    failed = await store_isolating(items[:middle], store, transient)
    return failed + await store_isolating(items[middle:], store, transient)
