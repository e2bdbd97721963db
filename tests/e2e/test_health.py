"""/healthz tells the truth about ingest: 503 naming the stall when readings pile up unprocessed.

Real servers, the real bridge and the real API; the processor is simply not started.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.e2e.conftest import Pipeline, eventually
from urbanpulse.api.server import serve_api
from urbanpulse.core.settings import DbRole, Settings
from urbanpulse.ingest.bridge import MqttBridge
from urbanpulse.ingest.service import run_bridge
from urbanpulse.simulators.gateway import MqttGateway, data_topic, reading_payload
from urbanpulse.stack import LocalStack, format_states
from urbanpulse.storage.db import connect

READINGS = 50


def publish_readings(settings: Settings, prefix: str) -> None:
    gateway = MqttGateway(settings.mqtt, client_id=f"{prefix}-gateway")
    gateway.connect()
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    for i in range(READINGS):
        topic = data_topic(settings.mqtt, "air", f"{prefix}-air-{i % 5}")
        gateway.publish(topic, reading_payload(start + timedelta(seconds=i), {"pm25": 20.0 + i}))
    gateway.close()
    assert gateway.acked == READINGS


async def health(api_url: str) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as http:
        response = await http.get("/healthz")
    return response.status_code, response.json()


async def test_a_live_pipeline_is_healthy(settings: Settings, pipeline: Pipeline) -> None:
    prefix = settings.kafka.topic_prefix
    await asyncio.to_thread(publish_readings, settings, prefix)

    async def stored() -> int:
        conn = await connect(settings, DbRole.OWNER)
        try:
            return int(
                await conn.fetchval(
                    "SELECT count(*) FROM readings_air WHERE sensor_id LIKE $1", f"{prefix}-%"
                )
            )
        finally:
            await conn.close()

    assert await eventually(stored, lambda n: n >= READINGS) == READINGS
    status, body = await health(pipeline.api_url)
    assert status == 200, body
    assert body["checks"]["ingest"].startswith("ok"), body
    # `urbanpulse stack status` shows the same verdict as a row of its table.
    row = await asyncio.to_thread(LocalStack(settings).ingest_state)
    assert (row.label, row.running) == ("ok", True), row


async def test_readings_waiting_for_a_stopped_processor_make_healthz_503(
    settings: Settings,
) -> None:
    limits = settings.health.model_copy(update={"lag_stall_s": 2.0})
    settings = settings.model_copy(update={"health": limits})
    prefix = settings.kafka.topic_prefix
    stop = asyncio.Event()
    bridges: asyncio.Queue[MqttBridge] = asyncio.Queue()
    tasks = [
        asyncio.create_task(run_bridge(settings, stop, bridges)),
        asyncio.create_task(serve_api(settings, stop)),
    ]
    api_url = f"http://{settings.api.host}:{settings.api.port}"
    try:
        bridge = await asyncio.wait_for(bridges.get(), 60)
        await asyncio.wait_for(bridge.connected.wait(), 30)
        await asyncio.to_thread(publish_readings, settings, prefix)

        async def probe() -> tuple[int, dict[str, Any]]:
            try:
                return await health(api_url)
            except httpx.TransportError:  # the API is still starting
                return 0, {}

        status, body = await eventually(probe, lambda r: r[0] == 503, timeout_s=90, interval_s=1)
        assert status == 503, body
        ingest = body["checks"]["ingest"]
        assert ingest.startswith(f"stalled: processor lag {READINGS} and not decreasing"), body
        assert body["checks"]["kafka"] == "ok" and body["checks"]["database"] == "ok"
        row = await asyncio.to_thread(LocalStack(settings).ingest_state)
        assert (row.label, row.running) == ("stalled", False), row
        assert f"processor lag {READINGS}" in format_states([row])
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_before_any_reading_or_part_has_run_ingest_is_not_stalled(settings: Settings) -> None:
    """A fresh deployment (the API up first, no topics of its prefix yet) is not a stall."""
    stop = asyncio.Event()
    api = asyncio.create_task(serve_api(settings, stop))
    api_url = f"http://{settings.api.host}:{settings.api.port}"

    async def probe() -> tuple[int, dict[str, Any]]:
        try:
            return await health(api_url)
        except httpx.TransportError:  # the API is still starting
            return 0, {}

    try:
        status, body = await eventually(probe, lambda r: r[0] != 0, timeout_s=60)
        assert status == 200, body
        assert body["checks"]["ingest"] == "ok (processor lag 0, 0 instances heard)"
    finally:
        stop.set()
        await api
