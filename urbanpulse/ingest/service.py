"""Run the ingest bridge as a service: Kafka topics and producer around ``MqttBridge``."""

from __future__ import annotations

import asyncio

from urbanpulse.bus import ensure_topics, new_producer
from urbanpulse.core.metrics import serving
from urbanpulse.core.settings import KafkaPrincipal, Settings
from urbanpulse.heartbeat import bridge_heartbeats, heartbeats_while
from urbanpulse.ingest.bridge import MqttBridge


async def run_bridge(
    settings: Settings, stop: asyncio.Event, started: asyncio.Queue[MqttBridge] | None = None
) -> None:
    """Run until ``stop`` is set; the running bridge is put on ``started`` for callers to watch."""
    kafka = settings.kafka_as(KafkaPrincipal.BRIDGE)
    await ensure_topics(kafka)
    producer = new_producer(
        kafka,
        client_id=settings.mqtt.bridge_client(),
        linger_ms=settings.ingest.kafka_linger_ms,
        max_batch_bytes=settings.ingest.kafka_max_batch_bytes,
    )
    await producer.start()
    try:
        bridge = MqttBridge(settings, producer)
        if started is not None:
            started.put_nowait(bridge)
        cfg = settings.metrics
        with serving(bridge.metrics, cfg.host, cfg.port_for(cfg.bridge_port), "bridge"):
            async with heartbeats_while(bridge_heartbeats(settings, producer, bridge)):
                await bridge.run(stop)
    finally:
        await producer.stop()
