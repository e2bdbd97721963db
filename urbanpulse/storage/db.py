"""Connections to TimescaleDB."""

from __future__ import annotations

import asyncpg

from urbanpulse.core.settings import DatabaseSettings


async def create_pool(settings: DatabaseSettings, max_size: int = 10) -> asyncpg.Pool:
    pool: asyncpg.Pool = await asyncpg.create_pool(
        settings.dsn(), min_size=1, max_size=max_size, command_timeout=60
    )
    return pool


async def connect(settings: DatabaseSettings) -> asyncpg.Connection:
    conn: asyncpg.Connection = await asyncpg.connect(settings.dsn(), command_timeout=60)
    return conn
