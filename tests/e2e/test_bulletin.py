"""The daily bulletin on the real database and API: the known day of tests/unit/test_bulletin.py
written through the storage writer (two readings per hour, so the database forms the hourly
means), its bulletin computed, stored and served as JSON, CSV and a printable page."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, time, timedelta

import asyncpg
from shapely.geometry import MultiPolygon, box

from tests.e2e.api_support import running_api
from tests.e2e.conftest import eventually
from tests.e2e.test_cli_success import urbanpulse
from tests.unit.test_bulletin import DAY, KNOWN_DAY
from urbanpulse.bulletin import store
from urbanpulse.commands.bulletin import GRACE, run_daily
from urbanpulse.core.areas import AreaRecord
from urbanpulse.core.envelope import Reading
from urbanpulse.core.settings import Settings
from urbanpulse.storage import registry
from urbanpulse.storage.areas import upsert_areas
from urbanpulse.storage.writer import write_readings

# 00:00 of DAY in Vietnam (UTC+7) is 17:00 UTC the day before.
MIDNIGHT_UTC = datetime.combine(DAY, time(0), UTC) - timedelta(hours=7)


def readings_of_known_day(prefix: str) -> list[Reading]:
    """Two readings in each hour with data, at :15 and :45, whose mean is the hour's value;
    a1's NO2 at 07 is 200 then 300 (mean 250, as in the unit test)."""
    out = []
    for station in KNOWN_DAY:
        for hour in range(24):
            values = {m: s[hour] for m, s in station.hours.items() if s[hour] is not None}
            if not values:
                continue
            for minute in (15, 45):
                ts = MIDNIGHT_UTC + timedelta(hours=hour, minutes=minute)
                v = {k: float(x) for k, x in values.items() if x is not None}
                if station.sensor_id == "a1" and hour == 7:
                    v["no2"] = 200.0 if minute == 15 else 300.0
                out.append(Reading(f"{prefix}-{station.sensor_id}", station.kind, ts, v, ts, "t"))
    return out


async def test_the_bulletin_of_a_known_day_from_the_database(
    settings: Settings, db: asyncpg.Connection
) -> None:
    prefix = settings.kafka.topic_prefix
    ward = {a: f"{prefix}-{a}" for a in {s.area_id for s in KNOWN_DAY if s.area_id}}
    await upsert_areas(
        db,
        [
            AreaRecord(ward_id, area, "ward", None, MultiPolygon([box(-170, -80, -169.9, -79.9)]))
            for area, ward_id in ward.items()
        ],
    )
    await registry.upsert(
        db,
        [
            registry.SensorRecord(f"{prefix}-{s.sensor_id}", s.kind, -79.95, -169.95)
            for s in KNOWN_DAY
        ],
    )
    for s in KNOWN_DAY:
        await db.execute(
            "UPDATE sensors SET area_id = $2 WHERE sensor_id = $1",
            f"{prefix}-{s.sensor_id}",
            ward[s.area_id or ""],
        )
    async with db.transaction():
        await write_readings(db, readings_of_known_day(prefix))

    rules, combination = store.inputs_of(settings)
    bulletin = (await store.build(db, DAY, rules, combination)).to_json()
    ours = {(e["scope"], e["id"], e["kind"]): e for k in ("stations", "wards") for e in bulletin[k]}
    a1 = ours[("station", f"{prefix}-a1", "air")]
    # By hand in tests/unit/test_bulletin.py: a1 VN_AQI 105 (NO2 max hourly mean 250).
    assert (a1["index"]["value"], a1["index"]["dominant"], a1["completeness"]) == (105, "no2", 1.0)
    [no2] = [lim for lim in a1["limits"] if lim["rule"] == "no2-1h-qcvn"]
    assert no2["hours"] == [7, 8]
    assert ours[("station", f"{prefix}-a2", "air")]["completeness"] == 0.75
    assert ours[("station", f"{prefix}-w1", "water")]["index"]["value"] == 67
    w1 = ours[("ward", ward["vn-hcm-ward-ben-thanh"], "air")]
    assert w1["index"]["value"] == 110
    [ward_no2] = [lim for lim in w1["limits"] if lim["rule"] == "no2-1h-qcvn"]
    assert ward_no2["hours"] == [7, 8, 18]

    await store.save(db, store_bulletin := await store.build(db, DAY, rules, combination))
    assert store_bulletin.day == DAY
    assert (await store.stored(db, DAY)) is not None

    printed = await urbanpulse(settings, "bulletin", DAY.isoformat(), "--csv")
    assert printed.returncode == 0, printed.stderr
    [cli_row] = [
        r for r in csv.DictReader(io.StringIO(printed.stdout)) if r["id"] == f"{prefix}-a3"
    ]
    assert (cli_row["value"], cli_row["dominant"], cli_row["limits"].count("no2-1h-qcvn:2")) == (
        "110",
        "no2",
        1,
    )
    refused = await urbanpulse(settings, "bulletin", "2026-02-30")
    assert refused.returncode == 2 and "neither 'run' nor a date" in refused.stderr

    async with running_api(settings) as api:
        async with api.http("viewer") as http:
            served = (await http.get(f"/v1/exports/bulletin/{DAY}.json")).json()
            assert any(
                e["id"] == f"{prefix}-a1" and e["index"]["value"] == 105 for e in served["stations"]
            )
            response = await http.get(f"/v1/exports/bulletin/{DAY}.csv")
            assert response.headers["content-type"].startswith("text/csv")
            rows = list(csv.DictReader(io.StringIO(response.text)))
            [row] = [r for r in rows if r["id"] == f"{prefix}-a1"]
            assert (row["value"], row["dominant"]) == ("105", "no2")
            page = await http.get(f"/bulletin/{DAY}", params={"lang": "en"})
            assert page.status_code == 200 and "@media print" in page.text
            assert f"{prefix}-a1" in page.text
            future = await http.get(f"/v1/exports/bulletin/{DAY + timedelta(days=3650)}.json")
            assert future.status_code == 422 and "has not begun" in future.text
            bad = await http.get("/v1/exports/bulletin/yesterday.json")
            assert bad.status_code == 422
            ancient = await http.get("/v1/exports/bulletin/0001-01-01.csv")
            assert ancient.status_code == 422 and "before 1970-01-01" in ancient.text
        async with api.http(None) as anonymous:
            assert (await anonymous.get(f"/v1/exports/bulletin/{DAY}.json")).status_code == 401


async def test_the_daily_service_stores_yesterdays_bulletin(
    settings: Settings, db: asyncpg.Connection
) -> None:
    yesterday = store.local_day_of(datetime.now(UTC) - GRACE) - timedelta(days=1)
    await db.execute(store.SCHEMA)
    await db.execute("DELETE FROM bulletins WHERE day = $1", yesterday)
    stop = asyncio.Event()
    task = asyncio.create_task(run_daily(settings, stop))
    try:
        body = await eventually(lambda: store.stored(db, yesterday), lambda b: b is not None)
    finally:
        stop.set()
        await task
    assert body is not None and body["date"] == yesterday.isoformat()
