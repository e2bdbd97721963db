"""Long-range history on the real TimescaleDB (Apache build): rollups, late readings,
retention, and the API's hourly and daily series served from the rollups.

Readings go in through the stream processor's own writer (``write_readings``); expected
values are computed by hand in the comments.  Everything runs in a database of this module's
own, because retention drops chunks for every sensor of a kind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.e2e.api_support import running_api
from tests.e2e.conftest import eventually, isolated, settings_env
from tests.e2e.databases import create_database, drop_database
from tests.e2e.test_grafana_sql import interpolate, run_all
from urbanpulse.alerts.rules import load_rules
from urbanpulse.core.catalogue import KINDS
from urbanpulse.core.envelope import Reading
from urbanpulse.core.settings import DbRole, KindHistory, Settings
from urbanpulse.grafana.dashboards import build_dashboards
from urbanpulse.stack import LocalStack
from urbanpulse.storage import registry
from urbanpulse.storage.db import connect
from urbanpulse.storage.retention import apply_retention
from urbanpulse.storage.rollups import backfill_day, roll_up
from urbanpulse.storage.writer import write_readings

AIR = KINDS["air"]
NO_MARGIN = timedelta(0)
# A day three days ago (UTC midnight): old enough to be complete, young enough for raw reads.
DAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=3)
H10, H11 = DAY + timedelta(hours=10), DAY + timedelta(hours=11)


@pytest.fixture(scope="module")
async def history_settings(local_stack: LocalStack) -> AsyncIterator[Settings]:
    name = f"t{uuid.uuid4().hex[:10]}"
    settings = await create_database(local_stack, isolated(local_stack.settings, name), name)
    yield settings
    await drop_database(local_stack, settings)


@pytest.fixture
async def conn(history_settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    connection = await connect(history_settings, DbRole.OWNER)
    yield connection
    await connection.close()


async def store(
    conn: asyncpg.Connection, sensor_id: str, readings: list[tuple[datetime, float, int]]
) -> None:
    """Air readings (ts, pm25, VN_AQI) of one sensor, written as the processor writes them."""
    now = datetime.now(UTC)
    envelopes = [
        Reading(sensor_id, "air", ts, {"pm25": pm25}, now, "test") for ts, pm25, _ in readings
    ]
    derived = {
        (sensor_id, ts): {"vn_aqi": aqi, "vn_aqi_pollutant": "pm25"} for ts, _, aqi in readings
    }
    async with conn.transaction():
        await write_readings(conn, envelopes, derived)


async def new_sensor(conn: asyncpg.Connection) -> str:
    sensor_id = f"hist-{uuid.uuid4().hex[:8]}"
    await registry.register(conn, [registry.SensorRecord(sensor_id, "air", 10.78, 106.70)])
    return sensor_id


async def rollup_rows(conn: asyncpg.Connection, table: str, sensor_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"SELECT bucket, n, pm25_sum, pm25_count, pm25_min, pm25_max, vn_aqi_sum, vn_aqi_count, "
        f"vn_aqi_min, vn_aqi_max FROM {table} WHERE sensor_id = $1 ORDER BY bucket",
        sensor_id,
    )
    return [dict(row) for row in rows]


# Three readings: two in the 10:00 hour, one in the 11:00 hour.  Values exact in binary.
FIRST = [
    (H10 + timedelta(minutes=10), 10.5, 50),
    (H10 + timedelta(minutes=40), 20.25, 51),
    (H11 + timedelta(minutes=5), 1.0, 52),
]
HOUR10 = {
    "bucket": H10, "n": 2, "pm25_sum": 30.75, "pm25_count": 2, "pm25_min": 10.5,
    "pm25_max": 20.25, "vn_aqi_sum": 101, "vn_aqi_count": 2, "vn_aqi_min": 50, "vn_aqi_max": 51,
}  # fmt: skip
HOUR11 = {
    "bucket": H11, "n": 1, "pm25_sum": 1.0, "pm25_count": 1, "pm25_min": 1.0, "pm25_max": 1.0,
    "vn_aqi_sum": 52, "vn_aqi_count": 1, "vn_aqi_min": 52, "vn_aqi_max": 52,
}  # fmt: skip
WHOLE_DAY = {
    "bucket": DAY, "n": 3, "pm25_sum": 31.75, "pm25_count": 3, "pm25_min": 1.0,
    "pm25_max": 20.25, "vn_aqi_sum": 153, "vn_aqi_count": 3, "vn_aqi_min": 50, "vn_aqi_max": 52,
}  # fmt: skip


async def test_rollups_hold_hand_computed_sums_counts_and_extremes(
    conn: asyncpg.Connection,
) -> None:
    sensor_id = await new_sensor(conn)
    await store(conn, sensor_id, FIRST)
    result = await roll_up(conn, AIR, NO_MARGIN)
    assert result.hours >= 2 and result.days >= 1
    assert await rollup_rows(conn, "readings_air_1h", sensor_id) == [HOUR10, HOUR11]
    assert await rollup_rows(conn, "readings_air_1d", sensor_id) == [WHOLE_DAY]


async def test_running_again_or_backfilling_changes_nothing(conn: asyncpg.Connection) -> None:
    sensor_id = await new_sensor(conn)
    await store(conn, sensor_id, FIRST)
    await roll_up(conn, AIR, NO_MARGIN)
    again = await roll_up(conn, AIR, NO_MARGIN)
    assert (again.hours, again.days) == (0, 0)  # nothing new was stored
    work = await backfill_day(conn, AIR, DAY)
    assert (sensor_id, H10) in work.hours and (sensor_id, DAY) in work.days
    assert await rollup_rows(conn, "readings_air_1h", sensor_id) == [HOUR10, HOUR11]
    assert await rollup_rows(conn, "readings_air_1d", sensor_id) == [WHOLE_DAY]


async def test_a_late_reading_updates_its_hour_and_day(conn: asyncpg.Connection) -> None:
    sensor_id = await new_sensor(conn)
    await store(conn, sensor_id, FIRST)
    await roll_up(conn, AIR, NO_MARGIN)
    # Three days late, for the 10:00 hour that is rolled up already.
    await store(conn, sensor_id, [(H10 + timedelta(minutes=55), 3.25, 60)])
    await roll_up(conn, AIR, NO_MARGIN)
    hour10 = {
        **HOUR10, "n": 3, "pm25_sum": 34.0, "pm25_count": 3, "pm25_min": 3.25,
        "vn_aqi_sum": 161, "vn_aqi_count": 3, "vn_aqi_max": 60,
    }  # fmt: skip
    day = {
        **WHOLE_DAY, "n": 4, "pm25_sum": 35.0, "pm25_count": 4, "vn_aqi_sum": 213,
        "vn_aqi_count": 4, "vn_aqi_max": 60,
    }  # fmt: skip
    assert await rollup_rows(conn, "readings_air_1h", sensor_id) == [hour10, HOUR11]
    assert await rollup_rows(conn, "readings_air_1d", sensor_id) == [day]


async def test_a_reading_within_the_commit_margin_waits_for_the_next_run(
    conn: asyncpg.Connection,
) -> None:
    sensor_id = await new_sensor(conn)
    await store(conn, sensor_id, FIRST)
    await roll_up(conn, AIR, timedelta(hours=1))  # stored just now: inside the margin
    assert await rollup_rows(conn, "readings_air_1h", sensor_id) == []
    await roll_up(conn, AIR, NO_MARGIN)
    assert await rollup_rows(conn, "readings_air_1h", sensor_id) == [HOUR10, HOUR11]


async def test_retention_drops_old_raw_chunks_and_keeps_their_rollups(
    conn: asyncpg.Connection,
) -> None:
    sensor_id = await new_sensor(conn)
    old = DAY - timedelta(days=40)
    await store(conn, sensor_id, [(old + timedelta(hours=10), 7.5, 70), *FIRST])
    await roll_up(conn, AIR, NO_MARGIN)
    dropped = await apply_retention(conn, AIR, KindHistory(raw_days=30, hourly_days=730))
    assert {d.table: d.chunks for d in dropped}["readings_air"] >= 1
    raw = await conn.fetch(
        "SELECT ts FROM readings_air WHERE sensor_id = $1 ORDER BY ts", sensor_id
    )
    assert [r["ts"] for r in raw] == [ts for ts, _, _ in FIRST]  # the old reading is gone
    old_hour = {
        "bucket": old + timedelta(hours=10), "n": 1, "pm25_sum": 7.5, "pm25_count": 1,
        "pm25_min": 7.5, "pm25_max": 7.5, "vn_aqi_sum": 70, "vn_aqi_count": 1,
        "vn_aqi_min": 70, "vn_aqi_max": 70,
    }  # fmt: skip
    assert await rollup_rows(conn, "readings_air_1h", sensor_id) == [old_hour, HOUR10, HOUR11]
    assert (await rollup_rows(conn, "readings_air_1d", sensor_id))[0]["bucket"] == old
    # A very late reading for that old hour: its other raw rows are gone, so recomputing the
    # hour from what is left would lose them; the hour is skipped and keeps its rollup.
    await store(conn, sensor_id, [(old + timedelta(hours=10, minutes=30), 99.0, 99)])
    result = await roll_up(conn, AIR, NO_MARGIN)
    assert result.skipped >= 1
    assert (await rollup_rows(conn, "readings_air_1h", sensor_id))[0] == old_hour


async def test_the_api_serves_hours_and_days_from_the_rollups(
    conn: asyncpg.Connection, history_settings: Settings
) -> None:
    # As on a database whose rollups never ran: every bucket comes from raw rows.
    await conn.execute("UPDATE rollup_state SET watermark = '-infinity' WHERE kind = 'air'")
    sensor_id = await new_sensor(conn)
    await store(conn, sensor_id, FIRST)
    span = {"from": DAY.isoformat(), "to": (DAY + timedelta(days=1)).isoformat()}
    # From 10:20 UTC, written in Vietnam's time: the 10:00 bucket is partial, so it comes
    # from raw rows (one reading, 10:40) while 11:00 comes from the rollup once rolled up.
    vietnam = timezone(timedelta(hours=7))
    partial = {**span, "from": (H10 + timedelta(minutes=20)).astimezone(vietnam).isoformat()}
    cases = [(s, b, a) for s in (span, partial) for b in ("1h", "1d") for a in ("avg", "max")]
    url = f"/v1/sensors/{sensor_id}/readings"
    async with running_api(history_settings) as api, api.http("viewer") as http:

        async def series(
            bucket: str, agg: str = "avg", where: dict[str, str] = span
        ) -> list[dict[str, Any]]:
            answer = await http.get(url, params={**where, "bucket": bucket, "agg": agg})
            assert answer.status_code == 200, answer.text
            readings: list[dict[str, Any]] = answer.json()["readings"]
            return readings

        from_raw = [await series(b, a, s) for s, b, a in cases]
        await roll_up(conn, AIR, NO_MARGIN)
        assert [await series(b, a, s) for s, b, a in cases] == from_raw
        # Raw rows removed: what the API still answers can only come from the rollups.
        await conn.execute("DELETE FROM readings_air WHERE sensor_id = $1", sensor_id)
        assert await series("5m") == []
        from_rollups = [await series(b, a, s) for s, b, a in cases[:4]]
        partial_hours = await series("1h", "avg", partial)
    assert from_rollups == from_raw[:4]
    assert [(r["count"], r["values"]["pm25"]) for r in from_raw[4]] == [(1, 20.25), (1, 1.0)]
    assert [(r["count"], r["values"]["pm25"]) for r in partial_hours] == [(1, 1.0)]
    hourly, _, [day], [peak] = from_rollups
    assert [r["count"] for r in hourly] == [2, 1]
    assert hourly[0]["values"]["pm25"] == 15.375  # (10.5 + 20.25) / 2
    assert hourly[0]["derived"]["vn_aqi"] == 51  # (50 + 51) / 2 = 50.5, rounded half up
    # Weighted by count: (10.5 + 20.25 + 1) / 3, not the mean of the hourly means (8.1875).
    assert day["count"] == 3 and day["values"]["pm25"] == pytest.approx(31.75 / 3, rel=1e-15)
    assert peak["values"]["pm25"] == 20.25 and peak["derived"]["vn_aqi"] == 52


async def test_grafana_charts_read_rollups_for_long_ranges(
    conn: asyncpg.Connection, history_settings: Settings
) -> None:
    boards = build_dashboards(load_rules(history_settings.alerts.rules_path))
    air = boards["urbanpulse-air"]
    [panel] = [
        p for b in air["panels"] for p in [b, *b.get("panels", [])]
        if p["title"] == "VN_AQI theo giờ / VN_AQI over time"
    ]  # fmt: skip
    sql = panel["targets"][0]["rawSql"]
    sensor_id = await new_sensor(conn)
    await store(conn, sensor_id, FIRST)
    await roll_up(conn, AIR, NO_MARGIN)
    await conn.execute("DELETE FROM readings_air WHERE sensor_id = $1", sensor_id)
    end = DAY + timedelta(days=1)

    async def chart(days: int) -> list[tuple[float, float]]:
        text = interpolate(sql, air, {"sensor": [sensor_id]}, end - timedelta(days=days), end)
        return [(row["VN_AQI max"], float(row["VN_AQI mean"])) for row in await conn.fetch(text)]

    assert await chart(1) == []  # two days or less: raw readings, deleted here
    assert await chart(10) == [(51, 50.5), (52, 52.0)]  # hourly rollup: 10:00 and 11:00
    assert await chart(60) == [(52, 51.0)]  # daily rollup: (50 + 51 + 52) / 3
    # Every panel of every board runs on the rollups of a long range.
    for days in (10, 60):
        await run_all(history_settings, boards, {}, end - timedelta(days=days), end)


async def test_rollups_run_keeps_rolling_up_until_interrupted(
    conn: asyncpg.Connection, history_settings: Settings, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        **settings_env(history_settings),
        "URBANPULSE_HISTORY__INTERVAL_S": "0.5",
        "URBANPULSE_HISTORY__COMMIT_MARGIN_S": "0",
    }
    log_path = tmp_path / "rollups.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "urbanpulse.cli", "rollups", "run"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        sensor_id = await new_sensor(conn)
        await store(conn, sensor_id, FIRST)
        rows = await eventually(
            lambda: rollup_rows(conn, "readings_air_1h", sensor_id),
            lambda rows: len(rows) == 2,
            timeout_s=60,
        )
        assert rows == [HOUR10, HOUR11], log_path.read_text()
        # A late reading, while it runs, reaches its hour too.
        await store(conn, sensor_id, [(H11 + timedelta(minutes=30), 2.0, 53)])
        rows = await eventually(
            lambda: rollup_rows(conn, "readings_air_1h", sensor_id),
            lambda rows: rows[1]["n"] == 2,
            timeout_s=60,
        )
        assert rows[1]["pm25_sum"] == 3.0, log_path.read_text()
        process.send_signal(signal.SIGINT)  # Ctrl-C
        assert process.wait(timeout=30) == 0, log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
