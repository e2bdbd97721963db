"""API keys (stored only as hashes) and the audit log of every write made through the API.

A key is ``up_<id8>_<secret>``: 32 random bytes of secret, so a fast SHA-256 is the right hash
(as for GitHub or Stripe tokens); slow password hashes exist for guessable secrets, and would
only add latency to every request here.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import asyncpg
import orjson

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
"""


class Role(StrEnum):
    VIEWER = "viewer"  # read
    OPERATOR = "operator"  # also acknowledge and resolve alerts
    ADMIN = "admin"  # also manage sensors and keys

    def allows(self, needed: Role) -> bool:
        order = list(Role)
        return order.index(self) >= order.index(needed)


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


async def find_key(conn: asyncpg.Connection, key: str) -> KeyOwner | None:
    row = await conn.fetchrow(
        "SELECT key_id, name, role FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        hash_key(key),
    )
    return KeyOwner(row["key_id"], row["name"], Role(row["role"])) if row else None


async def revoke_api_key(conn: asyncpg.Connection, name: str) -> bool:
    status: str = await conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL", name
    )
    return status.endswith(" 1")


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
    await conn.execute(
        "INSERT INTO audit_log (key_id, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
        key_id,
        actor,
        action,
        target,
        orjson.dumps(detail or {}).decode(),
    )
