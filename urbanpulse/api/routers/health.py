"""Liveness and readiness: is the API able to reach Kafka and the database?"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from urbanpulse.api.deps import SettingsDep
from urbanpulse.bus import kafka_reachable

router = APIRouter(tags=["health"])

CHECK_TIMEOUT_S = 3.0


@router.get("/healthz", summary="Health of the API and its dependencies")
async def healthz(request: Request, settings: SettingsDep) -> JSONResponse:
    database, kafka = await asyncio.gather(
        _database_ok(request.app.state.pool), kafka_reachable(settings.kafka, CHECK_TIMEOUT_S)
    )
    checks: dict[str, Any] = {
        "database": "ok" if database else "unreachable",
        "kafka": "ok" if kafka else "unreachable",
    }
    healthy = database and kafka
    return JSONResponse(
        {"status": "ok" if healthy else "degraded", "checks": checks},
        status_code=200 if healthy else 503,
    )


async def _database_ok(pool: asyncpg.Pool) -> bool:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S), pool.acquire() as conn:
            return bool(await conn.fetchval("SELECT 1") == 1)
    except (asyncpg.PostgresError, OSError, TimeoutError):
        return False
