"""Run the stream processor as a service: pool and producer around ``StreamProcessor``."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from urbanpulse.bus import ensure_topics, new_producer
from urbanpulse.core.metrics import serving
from urbanpulse.core.settings import DbRole, KafkaPrincipal, Settings
from urbanpulse.heartbeat import heartbeats_while, processor_heartbeats
from urbanpulse.storage.db import create_pool, ensure_database_reachable
from urbanpulse.storage.schema import require_schema
from urbanpulse.stream.processor import StreamProcessor

log = logging.getLogger(__name__)

PRODUCER_ATTEMPTS = 10


async def run_processor(
    settings: Settings,
    stop: asyncio.Event,
    started: asyncio.Queue[StreamProcessor] | None = None,
) -> None:
    """Run until ``stop`` is set; the processor is put on ``started`` for callers to watch."""
    kafka = settings.kafka_as(KafkaPrincipal.PROCESSOR)
    await ensure_topics(kafka)
    await ensure_database_reachable(settings, DbRole.WRITER)
    pool = await create_pool(settings, DbRole.WRITER)
    producer: AIOKafkaProducer | None = None
    try:
        async with pool.acquire() as conn:
            await require_schema(conn)
        producer = await _started_producer(settings)
        processor = StreamProcessor(settings, pool, producer)
        if started is not None:
            started.put_nowait(processor)
        cfg = settings.metrics
        with serving(processor.metrics, cfg.host, cfg.port_for(cfg.processor_port), "processor"):
            async with heartbeats_while(processor_heartbeats(settings, producer, processor)):
                await processor.run(stop)
    finally:
        if producer is not None:
            await producer.stop()
        await pool.close()


async def _started_producer(settings: Settings) -> AIOKafkaProducer:
    """A started producer; Kafka may be restarting just as this processor starts (a crash of
    both, a rolling restart): it is given a few seconds more than the topics check gave it."""
    attempt = 1
    while True:
        producer = new_producer(
            settings.kafka_as(KafkaPrincipal.PROCESSOR), client_id="urbanpulse-stream"
        )
        try:
            await producer.start()
            return producer
        except KafkaError as exc:
            await producer.stop()
            if attempt == PRODUCER_ATTEMPTS:
                raise
            log.warning("Kafka producer not started (%r); retrying", exc)
        await asyncio.sleep(min(attempt, 5))
        attempt += 1
