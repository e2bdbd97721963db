"""Dependencies shared by the routers, as ``Annotated`` aliases to keep signatures short."""

from __future__ import annotations

from collections.abc import AsyncIterator
from enum import StrEnum
from typing import Annotated

import asyncpg
from fastapi import Depends, Request

from urbanpulse.core.catalogue import KINDS
from urbanpulse.core.settings import Settings

# Kind names as an enum so that OpenAPI lists them and FastAPI rejects unknown kinds with a 422.
KindName = StrEnum("KindName", {name: name for name in KINDS})  # type: ignore[misc]


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _connection(request: Request) -> AsyncIterator[asyncpg.Connection]:
    pool: asyncpg.Pool = request.app.state.pool
    async with pool.acquire() as conn:
        yield conn


SettingsDep = Annotated[Settings, Depends(_settings)]
ConnectionDep = Annotated[asyncpg.Connection, Depends(_connection)]
