"""Connections to TimescaleDB."""

from __future__ import annotations

import asyncpg

from urbanpulse.core.settings import DatabaseSettings
from urbanpulse.runtime import StartupError


async def create_pool(settings: DatabaseSettings, max_size: int = 10) -> asyncpg.Pool:
    pool: asyncpg.Pool = await asyncpg.create_pool(
        settings.dsn(), min_size=1, max_size=max_size, command_timeout=60
    )
    return pool


async def connect(settings: DatabaseSettings) -> asyncpg.Connection:
    conn: asyncpg.Connection = await asyncpg.connect(settings.dsn(), command_timeout=60)
    return conn


async def ensure_database_reachable(settings: DatabaseSettings) -> None:
    try:
        conn = await connect(settings)
    except (OSError, asyncpg.PostgresError) as exc:
        raise StartupError(
            f"cannot reach the database at {settings.host}:{settings.port} ({exc}); "
            "is the stack up (`urbanpulse stack up`) or URBANPULSE_DATABASE__* right?"
        ) from None
    await conn.close()
