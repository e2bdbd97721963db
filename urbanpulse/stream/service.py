"""Run the stream processor as a service: schema, pool and producer around ``StreamProcessor``."""

from __future__ import annotations

import asyncio

from urbanpulse.bus import ensure_topics, new_producer
from urbanpulse.core.metrics import serving
from urbanpulse.core.settings import KafkaPrincipal, Settings
from urbanpulse.heartbeat import heartbeats_while, processor_heartbeats
from urbanpulse.storage.db import create_pool, ensure_database_reachable
from urbanpulse.storage.schema import migrate
from urbanpulse.stream.processor import StreamProcessor


async def run_processor(
    settings: Settings,
    stop: asyncio.Event,
    started: asyncio.Queue[StreamProcessor] | None = None,
) -> None:
    """Run until ``stop`` is set; the processor is put on ``started`` for callers to watch."""
    kafka = settings.kafka_as(KafkaPrincipal.PROCESSOR)
    await ensure_topics(kafka)
    await ensure_database_reachable(settings.database)
    pool = await create_pool(settings.database)
    producer = new_producer(kafka, client_id="urbanpulse-stream")
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
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
