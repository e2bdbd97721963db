"""Counts stay whole numbers from the envelope to every API answer: latest values, raw and
bucketed series, CSV and GeoJSON exports (issue: ``"bus": 17.0``)."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from tests.e2e.api_support import Api, running_api
from urbanpulse.core.envelope import Reading
from urbanpulse.core.settings import Settings
from urbanpulse.storage import registry
from urbanpulse.storage.writer import write_readings

# Three counting intervals of one camera in one hour; the catalogue marks every count integer.
COUNTS = [
    {"vehicles": 100, "bus": 17, "incident": 0, "avg_speed": 23.5},
    {"vehicles": 101, "bus": 19, "incident": 0, "avg_speed": 24.0},
    {"vehicles": 102, "bus": 18, "incident": 3, "avg_speed": 22.5},
]


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with running_api(settings) as running:
        yield running


@pytest.fixture
async def camera(db: asyncpg.Connection) -> AsyncIterator[tuple[str, str, datetime]]:
    """(sensor id, its private area, the hour of its readings), stored as the processor does."""
    prefix = f"int{uuid.uuid4().hex[:8]}"
    sensor_id, area_id = f"{prefix}-cam", f"{prefix}-area"
    await db.execute(
        "INSERT INTO areas (area_id, name, level, geom) "
        "VALUES ($1, $1, 'ward', ST_Multi(ST_MakeEnvelope(-40, -40, -39, -39, 4326)))",
        area_id,
    )
    await registry.register(db, [registry.SensorRecord(sensor_id, "traffic_camera", -39.5, -39.5)])
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    readings = []
    for minute, values in enumerate(COUNTS, start=1):
        ts = hour + timedelta(minutes=minute)
        sent = Reading(sensor_id, "traffic_camera", ts, values, ts, "test")  # type: ignore[arg-type]
        readings.append(Reading.from_json(sent.to_json()))  # what the processor reads from Kafka
    assert readings[0].values["bus"] == 17.0 and isinstance(readings[0].values["bus"], float)
    async with db.transaction():
        await write_readings(db, readings)
    yield sensor_id, area_id, hour
    await db.execute("DELETE FROM sensor_latest WHERE sensor_id = $1", sensor_id)
    await db.execute("DELETE FROM readings_traffic_camera WHERE sensor_id = $1", sensor_id)
    await db.execute("DELETE FROM sensors WHERE sensor_id = $1", sensor_id)
    await db.execute("DELETE FROM areas WHERE area_id = $1", area_id)


def assert_counts_whole(values: dict[str, object], expected: dict[str, object]) -> None:
    assert values == expected
    for name in ("vehicles", "bus", "incident"):
        assert type(values[name]) is int, (name, values)


async def test_latest_values_show_counts_as_integers(
    api: Api, camera: tuple[str, str, datetime]
) -> None:
    sensor_id, area_id, _hour = camera
    async with api.http() as http:
        one = await http.get(f"/v1/sensors/{sensor_id}")
        listed = await http.get("/v1/sensors", params={"area": area_id})
    assert one.status_code == 200, one.text
    assert '"bus":18,' in one.text and '"avg_speed":22.5' in one.text
    assert_counts_whole(one.json()["properties"]["latest"]["values"], COUNTS[2])
    [feature] = listed.json()["features"]
    assert_counts_whole(feature["properties"]["latest"]["values"], COUNTS[2])


async def test_reading_series_show_counts_as_integers(
    api: Api, camera: tuple[str, str, datetime]
) -> None:
    sensor_id, _area_id, hour = camera
    url = f"/v1/sensors/{sensor_id}/readings"
    async with api.http() as http:
        raw = (await http.get(url)).json()["readings"]
        top = (await http.get(url, params={"bucket": "1h", "agg": "max"})).json()["readings"]
        mean = (await http.get(url, params={"bucket": "1h", "agg": "avg"})).json()["readings"]
    for reading, expected in zip(raw, COUNTS, strict=True):
        assert_counts_whole(reading["values"], expected)
    [bucket] = top
    assert datetime.fromisoformat(bucket["ts"]) == hour
    assert_counts_whole(
        bucket["values"], {"vehicles": 102, "bus": 19, "incident": 3, "avg_speed": 24.0}
    )
    # Means of counts: (100+101+102)/3 and (17+19+18)/3 are whole; (0+0+3)/3 = 1 too.
    [average] = mean
    speed = average["values"].pop("avg_speed")
    assert speed == pytest.approx(70 / 3)
    assert_counts_whole(average["values"], {"vehicles": 101, "bus": 18, "incident": 1})


async def test_exports_show_counts_as_integers(api: Api, camera: tuple[str, str, datetime]) -> None:
    _sensor_id, area_id, _hour = camera
    query = {"kind": "traffic_camera", "area": area_id}
    async with api.http() as http:
        text = (await http.get("/v1/exports/readings.csv", params=query)).text
        collection = (await http.get("/v1/exports/readings.geojson", params=query)).json()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["vehicles"], r["bus"], r["incident"], r["avg_speed"]) for r in rows] == [
        ("100", "17", "0", "23.5"),
        ("101", "19", "0", "24.0"),
        ("102", "18", "3", "22.5"),
    ]
    for feature, expected in zip(collection["features"], COUNTS, strict=True):
        shown = {k: feature["properties"][k] for k in expected}
        assert_counts_whole(shown, expected)
