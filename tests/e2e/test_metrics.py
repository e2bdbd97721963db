"""Each process's /metrics, scraped over HTTP while a small scenario runs on the real servers:
the numbers move as the scenario says."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_ports
from tests.e2e.api_support import live_connect
from tests.e2e.conftest import eventually, running_pipeline
from urbanpulse.core.settings import Settings
from urbanpulse.simulators.gateway import MqttGateway, data_topic, reading_payload
from urbanpulse.storage import registry

SENSORS = 3
READINGS_PER_SENSOR = 10
START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
CONSUMER_LAG = "urbanpulse_stream_consumer_lag"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(url: str) -> Samples:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(url)
    response.raise_for_status()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def bad_messages(settings: Settings, sensor_id: str) -> list[tuple[str, bytes, str]]:
    """(topic, payload, reason class): classes as ``core.vocabulary.Rejection`` defines them."""
    topic = data_topic(settings.mqtt, "air", sensor_id)
    ts = START.isoformat()
    return [
        (topic, b'{"ts": "2026-11-22T07:00:00Z", "values": {"pm25": 1', "malformed"),
        (topic, b"\xff\xfe not utf-8", "malformed"),
        (topic, orjson.dumps({"ts": ts, "values": {"pm25": "high"}}), "invalid"),
        (f"{settings.mqtt.topic_root}/air/{sensor_id}", b"{}", "topic"),
    ]


async def test_each_process_serves_metrics_that_follow_the_scenario(
    settings: Settings, db: asyncpg.Connection
) -> None:
    prefix = settings.kafka.topic_prefix
    sensors = [f"{prefix}-air-{i}" for i in range(SENSORS)]
    misfiled = f"{prefix}-water-0"  # registered as water: its air readings stop at the registry
    await registry.upsert(
        db,
        [registry.SensorRecord(s, "air", 10.78, 106.7, s) for s in sensors]
        + [registry.SensorRecord(misfiled, "water", 10.78, 106.7, misfiled)],
    )
    bridge_port, processor_port = free_ports(2)
    bridge_url = f"http://127.0.0.1:{bridge_port}/metrics"
    processor_url = f"http://127.0.0.1:{processor_port}/metrics"

    async with running_pipeline(settings, (bridge_port, processor_port)) as pipeline:
        api_url = f"{pipeline.api_url}/metrics"

        async def live_clients() -> float | None:
            return value(await scrape(api_url), "urbanpulse_live_clients")

        async with live_connect(pipeline.api_url, pipeline.api_key):
            assert await eventually(live_clients, lambda n: n == 1) == 1
        assert await eventually(live_clients, lambda n: n == 0) == 0

        gateway = MqttGateway(settings.mqtt, client_id=f"{prefix}-gateway")
        await asyncio.to_thread(gateway.connect)
        for step in range(READINGS_PER_SENSOR):
            ts = START + timedelta(seconds=60 * step)
            for sensor in sensors:
                gateway.publish(
                    data_topic(settings.mqtt, "air", sensor),
                    reading_payload(ts, {"pm25": 20.0 + step}, seq=step),
                )
        for step in range(2):
            ts = START + timedelta(seconds=60 * step)
            payload = reading_payload(ts, {"pm25": 5.0}, seq=step)
            gateway.publish(data_topic(settings.mqtt, "air", misfiled), payload)
        bad = bad_messages(settings, sensors[0])
        for topic, payload, _ in bad:
            gateway.publish(topic, payload)
        await asyncio.to_thread(gateway.close)
        good = SENSORS * READINGS_PER_SENSOR

        def settled(samples: Samples) -> bool:
            stored = value(samples, "urbanpulse_stream_records_total", result="stored")
            refused = value(
                samples, "urbanpulse_dead_letters_total", stage="stream", reason="registry"
            )
            lags = [v for (name, _), v in samples.items() if name == CONSUMER_LAG]
            return (stored, refused) == (good, 2) and len(lags) == partitions and not any(lags)

        partitions = settings.kafka.readings_partitions
        processor = await eventually(lambda: scrape(processor_url), settled)
        bridge = await scrape(bridge_url)

    assert value(bridge, "urbanpulse_ingest_messages_total") == good + 2 + len(bad)
    assert value(bridge, "urbanpulse_ingest_readings_total") == good + 2
    for reason in {r for _, _, r in bad}:
        expected = sum(1 for _, _, r in bad if r == reason)
        got = value(bridge, "urbanpulse_dead_letters_total", stage="ingest", reason=reason)
        assert got == expected, reason
    assert value(bridge, "urbanpulse_ingest_dead_letters_produced_total") == len(bad)

    assert value(processor, "urbanpulse_stream_records_total", result="stored") == good
    assert value(processor, "urbanpulse_stream_records_total", result="dead_letter") == 2
    assert value(processor, "urbanpulse_dead_letters_total", stage="stream", reason="registry") == 2
    lag_partitions = {
        dict(labels)["partition"] for (name, labels) in processor if name == CONSUMER_LAG
    }
    assert lag_partitions == {str(p) for p in range(partitions)}
    batches = value(processor, "urbanpulse_stream_batches_total")
    assert batches is not None and batches >= 1
    assert value(processor, "urbanpulse_stream_batch_write_seconds_count") == batches
    assert value(processor, "urbanpulse_alerts_open", severity="critical") is not None
