"""Forecasts on the real database: hourly data stored through the writer, ``urbanpulse
forecast run --once`` as its own process, then the /v1/forecasts routes of the running API.

The database is this module's own: the job trains on every air station it finds.
"""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from shapely.geometry import MultiPolygon, box

from tests.e2e.api_support import running_api
from tests.e2e.conftest import eventually, isolated, settings_env
from tests.e2e.databases import create_database, drop_database
from urbanpulse.core.areas import AreaRecord
from urbanpulse.core.envelope import Reading
from urbanpulse.core.settings import DbRole, Settings
from urbanpulse.stack import LocalStack
from urbanpulse.storage import registry
from urbanpulse.storage.areas import upsert_areas
from urbanpulse.storage.db import connect
from urbanpulse.storage.writer import write_readings

NOW = datetime.now(UTC)
HOUR_NOW = NOW.replace(minute=0, second=0, microsecond=0)
DAYS = 5
STATIONS = [f"fc-air-{k}" for k in range(3)]
BIN, TRUCK = "fc-bin-0", "fc-truck-0"
WARD = "fc-ward"  # holds every sensor of the module


def pm25(station: int, ts: datetime) -> float:
    """A rush-hour shape (local 07:00 and 17:00 peaks) with a station level and a wobble."""
    local = (ts.hour + 7) % 24
    rush = 1.0 + 0.9 * math.exp(-(((local - 7) / 1.5) ** 2)) + math.exp(-(((local - 17) / 2) ** 2))
    wobble = 1.0 + 0.1 * math.sin(ts.timestamp() / 3600 * 1.7 + station)
    return round(18.0 * (1 + 0.3 * station) * rush * wobble, 1)


@pytest.fixture(scope="module")
async def forecast_settings(local_stack: LocalStack) -> AsyncIterator[Settings]:
    name = f"t{uuid.uuid4().hex[:10]}"
    settings = await create_database(local_stack, isolated(local_stack.settings, name), name)
    conn = await connect(settings, DbRole.OWNER)
    try:
        await store_history(conn)
    finally:
        await conn.close()
    yield settings
    await drop_database(local_stack, settings)


async def store_history(conn: asyncpg.Connection) -> None:
    """Five days of air readings every 15 minutes, and two hours beyond the current one so
    that the job finds its origin hour complete even if the hour turns before it runs; a bin
    filling at 5 %/h next to a truck."""
    records = [
        registry.SensorRecord(s, "air", 10.77 + 0.01 * k, 106.70) for k, s in enumerate(STATIONS)
    ]
    records += [
        registry.SensorRecord(BIN, "waste_bin", 10.7800, 106.7000),
        registry.SensorRecord(TRUCK, "waste_truck", 10.7810, 106.7000),
    ]
    ward = MultiPolygon([box(106.69, 10.76, 106.71, 10.80)])
    await upsert_areas(conn, [AreaRecord(WARD, "Phường dự báo", "ward", None, ward)])
    await registry.register(conn, records)
    readings = []
    start = HOUR_NOW - timedelta(days=DAYS)
    for quarter in range((DAYS * 24 + 2) * 4):
        ts = start + timedelta(minutes=15 * quarter)
        for k, station in enumerate(STATIONS):
            values = {"pm25": pm25(k, ts), "humidity": 80.0, "temperature": 28.0}
            readings.append(Reading(station, "air", ts, values, NOW, "test"))
    # 30 % five hours ago rising 5 %/h: 55 % now, 35 points to 90 % = 7 h.
    for half_hour in range(11):
        ts = NOW - timedelta(hours=5) + timedelta(minutes=30 * half_hour)
        readings.append(Reading(BIN, "waste_bin", ts, {"fill": 30.0 + 2.5 * half_hour}, NOW, "t"))
    async with conn.transaction():
        await write_readings(conn, readings)


def run_once(settings: Settings) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "urbanpulse.cli", "forecast", "run", "--once"],
        env={**settings_env(settings), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


async def test_forecast_run_once_then_served_by_the_api(forecast_settings: Settings) -> None:
    done = run_once(forecast_settings)
    assert done.returncode == 0, done.stderr
    assert "not enough history" not in done.stderr, done.stderr
    async with running_api(forecast_settings) as api, api.http("viewer") as http:
        response = await http.get("/v1/forecasts/air", params={"sensor": STATIONS[0]})
        assert response.status_code == 200, response.text
        body = response.json()
        # The last complete hour when the job ran (the next one if the hour turned meanwhile).
        origin = datetime.fromisoformat(body["origin"].replace("Z", "+00:00"))
        assert origin in (HOUR_NOW - timedelta(hours=1), HOUR_NOW)
        horizons = body["horizons"]
        assert [h["horizon_h"] for h in horizons] == list(range(1, 25))
        for h in horizons:
            band = h["pm25"]
            assert band["lower"] <= band["median"] <= band["upper"]
            assert h["method"] in ("model", "persistence")
            assert h["vn_aqi"]["median"]["value"] >= 0
        persistence = [h for h in horizons if h["method"] == "persistence"]
        last_hour = sum(pm25(0, origin + timedelta(minutes=15 * q)) for q in range(4)) / 4
        for h in persistence:  # the fallback serves the last complete hour's mean
            assert h["pm25"]["median"] == pytest.approx(last_hour, abs=0.01)

        # The ward's series is the mean of its three stations' hourly means.
        response = await http.get("/v1/forecasts/air", params={"area": WARD})
        assert response.status_code == 200, response.text
        ward = response.json()["horizons"]
        assert len(ward) == 24
        assert all(h["pm25"]["lower"] <= h["pm25"]["median"] <= h["pm25"]["upper"] for h in ward)
        mean = (
            sum(pm25(k, origin + timedelta(minutes=15 * q)) for k in range(3) for q in range(4))
            / 12
        )
        for h in ward:
            if h["method"] == "persistence":
                assert h["pm25"]["median"] == pytest.approx(mean, abs=0.01)

        bins = (await http.get("/v1/forecasts/bins", params={"area": WARD})).json()["bins"]
        [mine] = [b for b in bins if b["sensor_id"] == BIN]
        assert mine["hours_to_90"] == pytest.approx(7.0, abs=0.01)

        rounds = (await http.get("/v1/forecasts/collection", params={"truck": TRUCK})).json()
        [round_] = rounds["rounds"]
        assert [s["sensor_id"] for s in round_["stops"]] == [BIN]
        assert round_["stops"][0]["distance_m"] == pytest.approx(111, abs=2)  # 0.001° of latitude
        by_area = await http.get("/v1/forecasts/collection", params={"area": WARD})
        assert [r["truck"] for r in by_area.json()["rounds"]] == [TRUCK]


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("/v1/forecasts/air", {}, "give exactly one of 'sensor' or 'area'"),
        ("/v1/forecasts/air", {"sensor": STATIONS[0], "area": "x"}, "exactly one"),
        ("/v1/forecasts/air", {"sensor": "nope"}, "unknown sensor 'nope'"),
        ("/v1/forecasts/air", {"sensor": BIN}, "not an air station"),
        ("/v1/forecasts/air", {"area": "nowhere"}, "unknown area 'nowhere'"),
        ("/v1/forecasts/bins", {"area": "nowhere"}, "unknown area 'nowhere'"),
        ("/v1/forecasts/collection", {}, "give exactly one of 'truck' or 'area'"),
        ("/v1/forecasts/collection", {"truck": BIN}, "no waste truck"),
    ],
)
async def test_bad_parameters_get_422_with_a_message(
    forecast_settings: Settings, path: str, params: dict[str, str], message: str
) -> None:
    async with running_api(forecast_settings) as api, api.http("viewer") as http:
        response = await http.get(path, params=params)
        assert response.status_code == 422, response.text
        assert message in response.json()["error"]["message"]


async def test_forecasts_need_a_key(forecast_settings: Settings) -> None:
    async with running_api(forecast_settings) as api, api.http(None) as http:
        response = await http.get("/v1/forecasts/air", params={"sensor": STATIONS[0]})
        assert response.status_code == 401


async def test_forecast_run_refreshes_until_ctrl_c(
    forecast_settings: Settings, tmp_path: Path
) -> None:
    log_path = tmp_path / "forecast.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "urbanpulse.cli", "forecast", "run"],
            env={**settings_env(forecast_settings), "PATH": "/usr/bin:/bin"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        async def refreshed() -> bool:
            return "forecasts stored" in log_path.read_text(errors="replace")

        assert await eventually(refreshed, bool, timeout_s=300), log_path.read_text()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0, log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
