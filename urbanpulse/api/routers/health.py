"""Liveness and readiness: can the API reach Kafka and the database, and is ingest progressing?"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from urbanpulse.api.deps import SettingsDep
from urbanpulse.bus import kafka_reachable
from urbanpulse.core.settings import KafkaPrincipal, Settings
from urbanpulse.health import check_ingest

router = APIRouter(tags=["health"])

CHECK_TIMEOUT_S = 3.0


@router.get("/healthz", summary="Health of the API, its dependencies and the ingest path")
async def healthz(request: Request, settings: SettingsDep) -> JSONResponse:
    database, kafka = await asyncio.gather(
        _database_ok(request.app.state.pool),
        kafka_reachable(settings.kafka_as(KafkaPrincipal.API), CHECK_TIMEOUT_S),
    )
    ingest_ok, ingest = await _ingest(settings) if kafka else (False, "unknown: kafka unreachable")
    checks: dict[str, Any] = {
        "database": "ok" if database else "unreachable",
        "kafka": "ok" if kafka else "unreachable",
        "ingest": ingest,
    }
    healthy = database and kafka and ingest_ok
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


async def _ingest(settings: Settings) -> tuple[bool, str]:
    """Whether ingest progresses, and the check's text (what is stalled, in words)."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            report = await check_ingest(settings)
    except (KafkaError, OSError, TimeoutError) as exc:
        return False, f"unknown: {exc!r}"
    return not report.problems, report.summary()
