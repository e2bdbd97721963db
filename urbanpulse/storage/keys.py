"""API keys (stored only as hashes), live-feed tickets, and the audit log of every write made
through the API or the CLI.

A key is ``up_<id8>_<secret>``: 32 random bytes of secret, so a fast SHA-256 is the right hash
(as for GitHub or Stripe tokens); slow password hashes exist for guessable secrets, and would
only add latency to every request here.  ``up_<id8>`` is the key's *prefix*: not secret, it is
what logs may name.

A live-feed ticket stands in for a key on the WebSocket (browsers cannot send headers there, and
a key in a URL ends up in proxy logs): short-lived, single-use, stored hashed in the database so
any API process can redeem it.  Revoking a key notifies :data:`REVOKED_CHANNEL`, on which every
API process listens to close the key's live sockets.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import asyncpg
import orjson

# What a key may be named, for the API's request body and the CLI alike (checked with fullmatch).
KEY_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}")
KEY_NAME_RULE = "1-128 letters, digits or _.@:- starting with a letter or digit"
# As a pydantic / JSON Schema ``pattern``, which is searched for: anchored.
KEY_NAME_SCHEMA_PATTERN = f"^{KEY_NAME_PATTERN.pattern}$"

KEYS_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id      bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    role        text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    key_hash    text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE TABLE IF NOT EXISTS audit_log (
    audit_id    bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    key_id      bigint REFERENCES api_keys (key_id),
    actor       text NOT NULL,
    action      text NOT NULL,
    target      text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS audit_log_at_idx ON audit_log (at DESC);
-- Unlogged: a ticket lives seconds; after a crash, clients simply ask for a new one.
CREATE UNLOGGED TABLE IF NOT EXISTS live_tickets (
    ticket_hash text PRIMARY KEY,
    key_id      bigint NOT NULL REFERENCES api_keys (key_id) ON DELETE CASCADE,
    expires_at  timestamptz NOT NULL
);
"""

# NOTIFY channel of revocations; the payload is the revoked key's id.
REVOKED_CHANNEL = "urbanpulse_key_revoked"
_KEY_PREFIX = re.compile(r"up_[0-9a-f]{8}(?=_)")


class Role(StrEnum):
    VIEWER = "viewer"  # read
    OPERATOR = "operator"  # also acknowledge and resolve alerts
    ADMIN = "admin"  # also manage sensors and keys

    def allows(self, needed: Role) -> bool:
        order = list(Role)
        return order.index(self) >= order.index(needed)


@dataclass(frozen=True)
class Actor:
    """Who makes a change, as the audit log names it: an API key's holder, or a local user of
    the CLI (``cli:<login>``, no key)."""

    key_id: int | None
    name: str


def cli_actor() -> Actor:
    try:
        login = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        login = f"uid-{os.getuid()}"
    return Actor(None, f"cli:{login}")


@dataclass(frozen=True)
class KeyOwner:
    key_id: int
    name: str
    role: Role


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def create_api_key(conn: asyncpg.Connection, name: str, role: Role) -> str:
    """Store a new key's hash and return the key itself: the only time it is ever shown."""
    key = f"up_{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}"
    await conn.execute(
        "INSERT INTO api_keys (name, role, key_hash) VALUES ($1, $2, $3)",
        name,
        role.value,
        hash_key(key),
    )
    return key


def key_prefix(key: str) -> str:
    """What a log may say of a presented key: its non-secret ``up_<id8>`` prefix, never more."""
    prefix = _KEY_PREFIX.match(key)
    return prefix.group() if prefix else "(not an UrbanPulse key)"


async def find_key(conn: asyncpg.Connection, key: str) -> KeyOwner | None:
    row = await conn.fetchrow(
        "SELECT key_id, name, role FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        hash_key(key),
    )
    return KeyOwner(row["key_id"], row["name"], Role(row["role"])) if row else None


async def revoke_api_key(conn: asyncpg.Connection, name: str) -> int | None:
    """Revoke the active key named ``name``: its id, or None when there is none.  API processes
    hear of it on :data:`REVOKED_CHANNEL` when the transaction commits."""
    key_id: int | None = await conn.fetchval(
        "WITH revoked AS (UPDATE api_keys SET revoked_at = now() "
        "WHERE name = $1 AND revoked_at IS NULL RETURNING key_id) "
        "SELECT key_id FROM revoked, pg_notify($2, key_id::text)",
        name,
        REVOKED_CHANNEL,
    )
    return key_id


async def active_key_ids(conn: asyncpg.Connection, key_ids: Iterable[int]) -> set[int]:
    """Which of ``key_ids`` are still active (not revoked, not deleted)."""
    rows = await conn.fetch(
        "SELECT key_id FROM api_keys WHERE key_id = ANY($1::bigint[]) AND revoked_at IS NULL",
        list(key_ids),
    )
    return {row["key_id"] for row in rows}


async def issue_ticket(conn: asyncpg.Connection, key_id: int, ttl_s: float) -> str:
    """A new single-use live-feed ticket for ``key_id``, good for ``ttl_s`` seconds."""
    ticket = secrets.token_urlsafe(32)
    async with conn.transaction():
        await conn.execute("DELETE FROM live_tickets WHERE expires_at < now()")
        await conn.execute(
            "INSERT INTO live_tickets (ticket_hash, key_id, expires_at) "
            "VALUES ($1, $2, now() + make_interval(secs => $3))",
            hash_key(ticket),
            key_id,
            ttl_s,
        )
    return ticket


class TicketRefused(Exception):
    """A ticket that opens nothing; the message says why (unknown or used, expired, revoked)."""


async def redeem_ticket(conn: asyncpg.Connection, ticket: str) -> KeyOwner:
    """The key a ticket was issued for; the ticket is used up whatever the outcome."""
    row = await conn.fetchrow(
        "WITH used AS (DELETE FROM live_tickets WHERE ticket_hash = $1 "
        "RETURNING key_id, expires_at > now() AS fresh) "
        "SELECT k.key_id, k.name, k.role, k.revoked_at IS NULL AS active, used.fresh "
        "FROM used JOIN api_keys k USING (key_id)",
        hash_key(ticket),
    )
    if row is None:
        raise TicketRefused("unknown or already used ticket")
    if not row["fresh"]:
        raise TicketRefused("expired ticket: ask for a new one just before connecting")
    if not row["active"]:
        raise TicketRefused("the ticket's API key is revoked")
    return KeyOwner(row["key_id"], row["name"], Role(row["role"]))


async def issue_key(conn: asyncpg.Connection, actor: Actor, name: str, role: Role) -> str:
    """Create a key and audit it, in one transaction (the API's and the CLI's way)."""
    async with conn.transaction():
        key = await create_api_key(conn, name, role)
        await record_audit(conn, actor.key_id, actor.name, "key.create", name, {"role": role.value})
    return key


async def withdraw_key(conn: asyncpg.Connection, actor: Actor, name: str) -> int | None:
    """Revoke a key and audit it, in one transaction: its id, or None (no such active key)."""
    async with conn.transaction():
        key_id = await revoke_api_key(conn, name)
        if key_id is not None:
            await record_audit(conn, actor.key_id, actor.name, "key.revoke", name)
    return key_id


async def list_api_keys(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT key_id, name, role, created_at, revoked_at FROM api_keys ORDER BY key_id"
    )
    return [dict(row) for row in rows]


async def record_audit(
    conn: asyncpg.Connection,
    key_id: int | None,
    actor: str,
    action: str,
    target: str,
    detail: dict[str, Any] | None = None,
) -> None:
    await record_audits(conn, key_id, actor, action, [(target, detail)])


async def record_audits(
    conn: asyncpg.Connection,
    key_id: int | None,
    actor: str,
    action: str,
    targets: Iterable[tuple[str, dict[str, Any] | None]],
) -> None:
    """One audit row per (target, detail): the same action by one actor on many targets."""
    await conn.executemany(
        "INSERT INTO audit_log (key_id, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
        [
            (key_id, actor, action, target, orjson.dumps(detail or {}).decode())
            for target, detail in targets
        ],
    )
