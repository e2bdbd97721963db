"""The alert outbox: events to publish on Kafka, written with the alerts that caused them.

The processor inserts each lifecycle event here in the transaction that stores the alert, so an
event exists exactly when its alert change does.  After the commit a relay sends the rows to
Kafka and deletes them; a relay that dies first leaves them for the next one.  Each row carries
the event's id (deterministic, see ``urbanpulse.alerts.model.event_id_for``): inserting an event
twice keeps one row.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import asyncpg

OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_outbox (
    seq         bigserial PRIMARY KEY,
    event_id    text NOT NULL UNIQUE,
    key         bytea NOT NULL,
    payload     bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
"""


@dataclass(frozen=True)
class OutboxRow:
    event_id: str
    key: bytes
    payload: bytes


async def enqueue(conn: asyncpg.Connection, rows: Sequence[OutboxRow]) -> None:
    """Add events (inside the caller's transaction); an event already queued is kept once."""
    if not rows:
        return
    await conn.execute(
        "INSERT INTO alert_outbox (event_id, key, payload) "
        "SELECT * FROM unnest($1::text[], $2::bytea[], $3::bytea[]) "
        "ON CONFLICT (event_id) DO NOTHING",
        [r.event_id for r in rows],
        [r.key for r in rows],
        [r.payload for r in rows],
    )


async def drain(
    conn: asyncpg.Connection, send: Callable[[list[OutboxRow]], Awaitable[None]], limit: int
) -> int:
    """Send up to ``limit`` of the oldest events and delete them once ``send`` returned.

    The rows stay locked (``SKIP LOCKED``: two relays never send the same row at once) until
    the deletion commits; if ``send`` raises, they stay for the next drain.  Returns how many
    were sent.
    """
    async with conn.transaction():
        records = await conn.fetch(
            "SELECT seq, event_id, key, payload FROM alert_outbox ORDER BY seq LIMIT $1 "
            "FOR UPDATE SKIP LOCKED",
            limit,
        )
        if not records:
            return 0
        await send([OutboxRow(r["event_id"], r["key"], r["payload"]) for r in records])
        await conn.execute(
            "DELETE FROM alert_outbox WHERE seq = ANY($1::bigint[])", [r["seq"] for r in records]
        )
    return len(records)


async def pending_events(conn: asyncpg.Connection) -> int:
    count: int = await conn.fetchval("SELECT count(*) FROM alert_outbox")
    return count
