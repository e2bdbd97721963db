"""Connections to TimescaleDB, each as one of the platform's roles (``DbRole``).

Every process reaches the database through ``login`` (directly or through ``connect`` and
``create_pool``), naming the role it needs; the password goes to asyncpg as an argument, never
in a URL or a log line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

from urbanpulse.core.secrets import secrets_dir
from urbanpulse.core.settings import DatabaseCredentialError, DbRole, Settings
from urbanpulse.runtime import StartupError


@dataclass(frozen=True)
class DatabaseLogin:
    """Where and as whom to connect; ``repr`` leaves the password out."""

    host: str
    port: int
    database: str
    user: str
    password: str = field(repr=False)

    def connect_args(self) -> dict[str, Any]:
        """Keyword arguments of ``asyncpg.connect`` and ``asyncpg.create_pool``."""
        return {
            "host": self.host,
            "port": self.port,
            "database": self.database,
            "user": self.user,
            "password": self.password,
        }


def login(settings: Settings, role: DbRole) -> DatabaseLogin:
    """``role``'s login to the configured database (its password from settings or the stack)."""
    db = settings.database
    password = db.password_for(role, secrets_dir(settings.stack.data_dir.expanduser()))
    return DatabaseLogin(db.host, db.port, db.name, db.user_for(role), password)


async def create_pool(settings: Settings, role: DbRole, max_size: int = 10) -> asyncpg.Pool:
    pool: asyncpg.Pool = await asyncpg.create_pool(
        **login(settings, role).connect_args(), min_size=1, max_size=max_size, command_timeout=60
    )
    return pool


async def connect(settings: Settings, role: DbRole) -> asyncpg.Connection:
    conn: asyncpg.Connection = await asyncpg.connect(
        **login(settings, role).connect_args(), command_timeout=60
    )
    return conn


async def connect_for_command(settings: Settings, role: DbRole) -> asyncpg.Connection:
    """``connect``, with a StartupError that says what to check when the database refuses."""
    db = settings.database
    try:
        return await connect(settings, role)
    except DatabaseCredentialError as exc:
        raise StartupError(str(exc)) from None
    except (OSError, asyncpg.PostgresError) as exc:
        raise StartupError(
            f"cannot reach the database at {db.host}:{db.port}/{db.name} as "
            f"{db.user_for(role)} ({exc}); is the stack up (`urbanpulse stack up`) or "
            "URBANPULSE_DATABASE__* right?"
        ) from None


async def ensure_database_reachable(settings: Settings, role: DbRole) -> None:
    conn = await connect_for_command(settings, role)
    await conn.close()
