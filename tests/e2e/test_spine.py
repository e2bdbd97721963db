"""One reading path end to end on real servers: MQTT -> bridge -> Kafka -> processor ->
TimescaleDB -> API.  Nothing here is mocked."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import orjson

from tests.e2e.conftest import Pipeline, all_sensors, eventually, read_readings, read_topic
from urbanpulse.bus import TopicCounter
from urbanpulse.core.envelope import DeadLetter
from urbanpulse.core.settings import KafkaPrincipal, Settings
from urbanpulse.simulators.air import AirSensorModel
from urbanpulse.simulators.fleet import place_sensors
from urbanpulse.simulators.gateway import MqttGateway, data_topic, reading_payload
from urbanpulse.storage import registry

SENSORS = 10
READINGS_PER_SENSOR = 100
START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


def malformed_messages(settings: Settings, sensor_id: str) -> list[tuple[str, bytes, str]]:
    """(topic, payload, expected reason fragment): 20 bad messages, none with a good reading."""
    topic = data_topic(settings.mqtt, "air", sensor_id)
    ts = START.isoformat()
    cases = [
        (topic, b'{"ts": "2026-11-22T07:00:00Z", "values": {"pm25": 1', "malformed JSON"),
        (topic, b"\xff\xfe not utf-8", "malformed JSON"),
        (topic, orjson.dumps({"ts": ts, "values": {"pm25": "high"}}), "is not a number"),
        (topic, orjson.dumps({"ts": ts, "values": {"pm25": -5}}), "outside the possible range"),
        (topic, orjson.dumps({"values": {"pm25": 5}}), "ts: missing"),
        (topic, orjson.dumps({"ts": ts, "values": {"radon": 5}}), "unknown metric"),
        (
            topic,
            orjson.dumps({"ts": "2099-01-01T00:00:00Z", "values": {"pm25": 5}}),
            "in the future",
        ),
        (data_topic(settings.mqtt, "noise", sensor_id), b"{}", "unknown kind 'noise'"),
        (f"{settings.mqtt.topic_root}/air/{sensor_id}", b"{}", "levels after the root"),
        (topic, b"[]", "empty batch"),
    ]
    return cases * 2


async def test_readings_flow_from_mqtt_to_the_api(
    settings: Settings, db: asyncpg.Connection, pipeline: Pipeline
) -> None:
    fleet = place_sensors("air", SENSORS, seed=3, prefix=settings.kafka.topic_prefix)
    await registry.upsert(
        db, [registry.SensorRecord(s.sensor_id, "air", s.lat, s.lon, s.sensor_id) for s in fleet]
    )
    models = [AirSensorModel(sensor, seed=3) for sensor in fleet]
    latest: dict[str, dict[str, float]] = {}

    gateway = MqttGateway(settings.mqtt, client_id=f"{settings.kafka.topic_prefix}-gateway")
    await asyncio.to_thread(gateway.connect)
    for step in range(READINGS_PER_SENSOR):
        ts = START + timedelta(seconds=30 * step)
        for model in models:
            values = model.values_at(ts)
            latest[model.sensor.sensor_id] = values
            topic = data_topic(settings.mqtt, "air", model.sensor.sensor_id)
            gateway.publish(topic, reading_payload(ts, values, seq=step))
    bad = malformed_messages(settings, fleet[0].sensor_id)
    for topic, payload, _ in bad:
        gateway.publish(topic, payload)
    await asyncio.to_thread(gateway.close)
    assert gateway.acked == SENSORS * READINGS_PER_SENSOR + len(bad)

    sensor_ids = [s.sensor_id for s in fleet]

    async def stored() -> int:
        count: int = await db.fetchval(
            "SELECT count(*) FROM readings_air WHERE sensor_id = ANY($1::text[])", sensor_ids
        )
        return count

    assert await eventually(stored, lambda n: n >= 1000) == 1000

    dead_letters = [
        DeadLetter.from_json(v)
        for v in await read_topic(settings, settings.kafka.topic("deadletter"), len(bad))
    ]
    assert len(dead_letters) == len(bad)
    reasons = sorted(d.reason for d in dead_letters)
    for _, _, fragment in bad:
        assert any(fragment in reason for reason in reasons), (fragment, reasons)
    assert all(d.stage == "ingest" and d.raw is not None for d in dead_letters)
    assert pipeline.bridge.counters.dead_letters == len(bad)
    assert len(await read_readings(settings, 1000)) == 1000
    async with TopicCounter(settings.kafka_as(KafkaPrincipal.ADMIN)) as topics:
        # One record per MQTT message; each of these carried one reading.
        assert await topics.total(settings.kafka.topic("readings")) == 1000
        assert await topics.total(settings.kafka.topic("deadletter")) == len(bad)

    async with pipeline.http() as http:
        health = await http.get("/healthz")
        assert health.status_code == 200, health.text
        ours = {f["id"]: f for f in await all_sensors(http, "air") if f["id"] in latest}
        assert set(ours) == set(latest)
        last_ts = START + timedelta(seconds=30 * (READINGS_PER_SENSOR - 1))
        for sensor_id, values in latest.items():
            properties = ours[sensor_id]["properties"]
            assert properties["latest"]["values"] == values
            assert datetime.fromisoformat(properties["latest"]["ts"]) == last_ts
            assert ours[sensor_id]["geometry"]["type"] == "Point"

        history = await http.get(
            f"/v1/sensors/{sensor_ids[0]}/readings",
            params={"from": START.isoformat(), "to": (last_ts + timedelta(seconds=1)).isoformat()},
        )
        assert history.status_code == 200, history.text
        assert len(history.json()["readings"]) == READINGS_PER_SENSOR
    # Everything published has been processed and nothing more arrived.
    assert await stored() == 1000


async def test_replayed_and_late_readings_are_stored_once_and_never_move_latest_back(
    settings: Settings, db: asyncpg.Connection, pipeline: Pipeline
) -> None:
    [sensor] = place_sensors("air", 1, seed=4, prefix=settings.kafka.topic_prefix)
    await registry.upsert(
        db, [registry.SensorRecord(sensor.sensor_id, "air", sensor.lat, sensor.lon)]
    )
    topic = data_topic(settings.mqtt, "air", sensor.sensor_id)
    newest = START + timedelta(minutes=10)

    async def stored() -> int:
        count: int = await db.fetchval(
            "SELECT count(*) FROM readings_air WHERE sensor_id = $1", sensor.sensor_id
        )
        return count

    async def latest() -> asyncpg.Record | None:
        row: asyncpg.Record | None = await db.fetchrow(
            'SELECT ts, "values" FROM sensor_latest WHERE sensor_id = $1', sensor.sensor_id
        )
        return row

    gateway = MqttGateway(settings.mqtt, client_id=f"{settings.kafka.topic_prefix}-replay")
    await asyncio.to_thread(gateway.connect)
    try:
        # The newest reading is stored first, so the late ones below come in later batches and
        # meet the database's guard on sensor_latest, not only the processor's in-batch order.
        gateway.publish(topic, reading_payload(newest, {"pm25": 40.0}))
        first = await eventually(latest, lambda r: r is not None)
        assert first is not None and first["ts"] == newest
        late = [
            reading_payload(START + timedelta(minutes=minute), {"pm25": float(minute)})
            for minute in range(10)
        ]
        for payload in late:  # late readings, each sent twice (a gateway resending its buffer)
            gateway.publish(topic, payload)
            gateway.publish(topic, payload)
        await eventually(lambda: _consumed(pipeline), lambda n: n >= 21)
        assert await eventually(stored, lambda n: n >= 11) == 11
        # Replayed once more after they are stored: a later batch, the same 11 rows.
        for payload in late:
            gateway.publish(topic, payload)
        await eventually(lambda: _consumed(pipeline), lambda n: n >= 31)
    finally:
        await asyncio.to_thread(gateway.close)

    assert await stored() == 11
    row = await latest()
    assert row is not None and row["ts"] == newest
    assert orjson.loads(row["values"]) == {"pm25": 40.0}


async def _consumed(pipeline: Pipeline) -> int:
    return pipeline.processor.counters.consumed
