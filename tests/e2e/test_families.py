"""Every sensor family flows from MQTT to its hypertable, with its indices, on real servers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest

from tests.e2e.conftest import Pipeline, all_sensors, eventually, read_topic
from urbanpulse.core.catalogue import KINDS
from urbanpulse.core.envelope import DeadLetter
from urbanpulse.core.settings import Settings
from urbanpulse.simulators.gateway import MqttGateway, data_topic
from urbanpulse.storage import registry

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
T0 = NOW - timedelta(hours=3)
WATER = {"ph": 7.1, "do": 5.8, "temperature": 29.0, "bod5": 6.0, "cod": 14.0, "nh4_n": 0.4}
# VN_WQI of WATER by hand (Decision 1460): pH 7.1 -> 100, factor 1.  DO_sat(29 °C) =
# 14.652 - 11.89638 + 6.720431 - 1.896830 = 7.579221 mg/L; 5.8 / 7.579221 = 76.525 % ->
# 75 + 25 * 1.525/13 = 77.93.  BOD5 6 -> 75; COD 14 -> 100 - 25 * 4/5 = 80;
# N-NH4 0.4 -> 75 - 25 * 0.1/0.3 = 66.67.  No group V: (77.93 + 75 + 80 + 66.67) / 4 = 74.90 -> 75.
WATER_WQI = 75


def iso(ts: datetime) -> str:
    return ts.isoformat()


def messages(prefix: str) -> list[tuple[str, str, Any]]:
    """(kind, sensor suffix, payload) covering every family, in both payload formats."""
    air = [
        {"ts": iso(T0 + timedelta(minutes=20 * i)), "values": {"pm25": 40.0 + 5 * i, "no2": 30.0}}
        for i in range(9)
    ]
    return [
        ("air", "air-1", air),  # one batched message: 9 readings over 3 hours
        ("water", "water-1", {"ts": iso(T0), "values": WATER}),
        (
            "water",
            "water-2",
            {
                "id": "wq-2",
                "type": "WaterQualityObserved",
                "dateObserved": iso(T0),
                "pH": 7.4,
                "O2": 6.1,
                "temperature": 28.5,
                "NH4": 0.3,
            },
        ),
        ("waste_bin", "bin-1", {"ts": iso(T0), "values": {"fill": 91.5, "battery": 77.0}}),
        (
            "waste_bin",
            "bin-2",
            {"id": "b2", "type": "WasteContainer", "fillingLevel": 0.42, "dateModified": iso(T0)},
        ),
        (
            "waste_truck",
            "truck-1",
            {"ts": iso(T0), "values": {"lat": 10.78, "lon": 106.70, "speed": 22.0, "load": 1800}},
        ),
        (
            "traffic_camera",
            "cam-1",
            {"ts": iso(T0), "values": {"motorbike": 820, "car": 140, "bus": 6, "occupancy": 61.0}},
        ),
        (
            "traffic_camera",
            "cam-2",
            {
                "id": "c2",
                "type": "TrafficFlowObserved",
                "vehicleType": "motorcycle",
                "intensity": 512,
                "averageVehicleSpeed": 18.5,
                "dateObserved": f"{iso(T0 - timedelta(minutes=5))}/{iso(T0)}",
            },
        ),
    ]


async def publish(settings: Settings, prefix: str, items: list[tuple[str, str, Any]]) -> None:
    gateway = MqttGateway(settings.mqtt, client_id=f"{prefix}-gw")
    await asyncio.to_thread(gateway.connect)
    for kind, suffix, payload in items:
        gateway.publish(
            data_topic(settings.mqtt, kind, f"{prefix}-{suffix}"), orjson.dumps(payload)
        )
    await asyncio.to_thread(gateway.close)


async def count(db: asyncpg.Connection, table: str, prefix: str) -> int:
    n: int = await db.fetchval(
        f"SELECT count(*) FROM {table} WHERE sensor_id LIKE $1", f"{prefix}-%"
    )
    return n


async def test_all_five_families_reach_their_tables_with_indices(
    settings: Settings, db: asyncpg.Connection, pipeline: Pipeline
) -> None:
    prefix = settings.kafka.topic_prefix
    items = messages(prefix)
    await registry.upsert(
        db,
        [
            registry.SensorRecord(f"{prefix}-{suffix}", kind, 10.78, 106.70)
            for kind, suffix, _ in items
        ],
    )
    await publish(settings, prefix, items)

    expected = {
        "air": 9,
        "water": 2,
        "waste_bin": 2,
        "waste_truck": 1,
        "traffic_camera": 2,
    }
    for kind, rows in expected.items():
        table = KINDS[kind].table
        assert (
            await eventually(lambda t=table: count(db, t, prefix), lambda n, r=rows: n >= r) == rows
        )

    # The last air reading's VN_AQI is the hourly NowCast over the hourly means published.
    last = await db.fetchrow(
        "SELECT vn_aqi, vn_aqi_pollutant FROM readings_air WHERE sensor_id = $1 "
        "ORDER BY ts DESC LIMIT 1",
        f"{prefix}-air-1",
    )
    # By hand (Decision 1459): PM2.5 40, 45 ... 80 every 20 min from T0 (on the hour) gives
    # hourly means 45, 60, 75; newest first c = 75, 60, 45.  w* = 45/75 = 0.6 -> w = 0.6;
    # NowCast = (75 + 0.6*60 + 0.36*45) / (1 + 0.6 + 0.36) = 127.2 / 1.96 = 64.898;
    # 50..80 -> 100..150: 100 + 50/30 * 14.898 = 124.8 -> 125 ("Kém").  NO2 30 -> 15.
    assert (last["vn_aqi"], last["vn_aqi_pollutant"]) == (125, "pm25")

    stored_wqi = await db.fetchval(
        "SELECT wqi FROM readings_water WHERE sensor_id = $1", f"{prefix}-water-1"
    )
    assert stored_wqi == WATER_WQI

    cam2 = await db.fetchrow(
        "SELECT motorbike, avg_speed FROM readings_traffic_camera WHERE sensor_id = $1",
        f"{prefix}-cam-2",
    )
    assert (cam2["motorbike"], cam2["avg_speed"]) == (512, 18.5)
    fill = await db.fetchval(
        "SELECT fill FROM readings_waste_bin WHERE sensor_id = $1", f"{prefix}-bin-2"
    )
    assert fill == pytest.approx(42.0)

    async with pipeline.http() as http:
        [ours] = [f for f in await all_sensors(http, "air") if f["id"] == f"{prefix}-air-1"]
        derived = ours["properties"]["latest"]["derived"]
        assert derived["vn_aqi"] == 125
        assert derived["vn_aqi_band"]["name_vi"] == "Kém"  # 101-150
        history = (
            await http.get(
                f"/v1/sensors/{prefix}-water-1/readings",
                params={"from": iso(T0 - timedelta(hours=1)), "to": iso(NOW)},
            )
        ).json()
        assert history["readings"][0]["derived"]["wqi"] == WATER_WQI
        assert "wqi_band" in history["readings"][0]["derived"]


async def test_unknown_sensor_is_registered_pending_where_its_payload_says(
    settings: Settings, db: asyncpg.Connection, pipeline: Pipeline
) -> None:
    prefix = settings.kafka.topic_prefix
    payload = {
        "ts": iso(NOW - timedelta(minutes=1)),
        "values": {"pm25": 12.0},
        "location": {"type": "Point", "coordinates": [106.6954, 10.7766]},
    }
    await publish(settings, prefix, [("air", "stranger", payload)])
    sensor_id = f"{prefix}-stranger"

    async def registered() -> asyncpg.Record | None:
        row: asyncpg.Record | None = await db.fetchrow(
            "SELECT status, ST_X(location::geometry) AS lon, ST_Y(location::geometry) AS lat "
            "FROM sensors WHERE sensor_id = $1",
            sensor_id,
        )
        return row

    row = await eventually(registered, lambda r: r is not None)
    assert row is not None
    assert (row["status"], row["lon"], row["lat"]) == ("pending", 106.6954, 10.7766)
    assert await eventually(lambda: count(db, "readings_air", prefix), lambda n: n >= 1) == 1


@pytest.fixture
def reject_unknown(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"stream": settings.stream.model_copy(update={"provisioning": "reject"})}
    )


async def test_unknown_sensor_is_dead_lettered_in_reject_mode(
    reject_unknown: Settings, db: asyncpg.Connection
) -> None:
    from tests.e2e.conftest import running_pipeline

    settings = reject_unknown
    prefix = settings.kafka.topic_prefix
    async with running_pipeline(settings):
        payload = {"ts": iso(NOW - timedelta(minutes=1)), "values": {"pm25": 12.0}}
        await publish(settings, prefix, [("air", "intruder", payload)])
        [raw] = await read_topic(settings, settings.kafka.topic("deadletter"), 1)
    dead = DeadLetter.from_json(raw)
    assert dead.stage == "stream"
    assert f"unknown sensor '{prefix}-intruder' (provisioning mode: reject)" in dead.reason
    assert await count(db, "readings_air", prefix) == 0
    assert (
        await db.fetchval("SELECT count(*) FROM sensors WHERE sensor_id = $1", f"{prefix}-intruder")
        == 0
    )
