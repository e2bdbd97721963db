"""Run the stream processor as a service: schema, pool and producer around ``StreamProcessor``."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from urbanpulse.bus import ensure_topics, new_producer
from urbanpulse.core.metrics import serving
from urbanpulse.core.settings import Settings
from urbanpulse.heartbeat import heartbeats_while, processor_heartbeats
from urbanpulse.storage.db import create_pool, ensure_database_reachable
from urbanpulse.storage.schema import migrate
from urbanpulse.stream.faults import is_transient
from urbanpulse.stream.processor import StreamProcessor

log = logging.getLogger(__name__)

MIGRATE_ATTEMPTS = 5


async def run_processor(
    settings: Settings,
    stop: asyncio.Event,
    started: asyncio.Queue[StreamProcessor] | None = None,
) -> None:
    """Run until ``stop`` is set; the processor is put on ``started`` for callers to watch."""
    await ensure_topics(settings.kafka)
    await ensure_database_reachable(settings.database)
    pool = await create_pool(settings.database)
    producer = new_producer(settings.kafka, client_id="urbanpulse-stream")
    try:
        await _migrate(pool)
        await producer.start()
        processor = StreamProcessor(settings, pool, producer)
        if started is not None:
            started.put_nowait(processor)
        cfg = settings.metrics
        with serving(processor.metrics, cfg.host, cfg.port_for(cfg.processor_port), "processor"):
            async with heartbeats_while(processor_heartbeats(settings, producer, processor)):
                await processor.run(stop)
    finally:
        await producer.stop()
        await pool.close()


async def _migrate(pool: asyncpg.Pool) -> None:
    """Migrate, retrying what another processor's batch can provoke: the migration's DDL locks
    the tables those batches write, and PostgreSQL ends a deadlock by failing one side."""
    for attempt in range(1, MIGRATE_ATTEMPTS + 1):
        try:
            async with pool.acquire() as conn:
                await migrate(conn)
            return
        except asyncpg.PostgresError as exc:
            if attempt == MIGRATE_ATTEMPTS or not is_transient(exc):
                raise
            log.warning("schema migration failed (%s); retrying", type(exc).__name__)
            await asyncio.sleep(attempt)
