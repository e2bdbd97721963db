"""Landfills and incinerators go from MQTT to their hypertables through the real pipeline: stated
units converted, stack concentrations stored as measured and at the reference O2 (expected values
computed by hand), an impossible reading dead-lettered with its reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from tests.e2e.conftest import Pipeline, eventually, read_topic
from tests.e2e.test_families import count, iso, publish
from urbanpulse.core.envelope import DeadLetter
from urbanpulse.core.settings import Settings
from urbanpulse.storage import registry

T0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)


async def test_landfill_and_incinerator_readings_reach_their_tables(
    settings: Settings, db: asyncpg.Connection, pipeline: Pipeline
) -> None:
    prefix = settings.kafka.topic_prefix
    landfill = {
        "ts": iso(T0),
        "values": {"ch4": 12500, "co2": 2.5, "o2": 19.0, "h2s": 3.0, "leachate_level": 0.22},
        "units": {"ch4": "ppm"},  # 12 500 ppm = 1.25 % vol
    }
    stack = {
        "ts": iso(T0),
        "values": {"dust": 60.0, "so2": 120.0, "nox": 300.0, "co": 150.0, "hcl": 3.0, "o2": 15.0},
        "units": {"so2": "ug/Nm3"},  # 120 µg/Nm³ = 0.12 mg/Nm³
    }
    broken = {"ts": iso(T0 + timedelta(minutes=1)), "values": {"ch4": 150.0}}  # > 100 % vol
    await registry.upsert(
        db,
        [
            registry.SensorRecord(f"{prefix}-ldf-1", "landfill", 10.78, 106.70),
            registry.SensorRecord(f"{prefix}-inc-1", "incinerator", 10.78, 106.70),
        ],
    )
    await publish(
        settings,
        prefix,
        [
            ("landfill", "ldf-1", landfill),
            ("incinerator", "inc-1", stack),
            ("landfill", "ldf-1", broken),
        ],
    )

    assert await eventually(lambda: count(db, "readings_landfill", prefix), lambda n: n >= 1) == 1
    assert (
        await eventually(lambda: count(db, "readings_incinerator", prefix), lambda n: n >= 1) == 1
    )
    row = await db.fetchrow(
        "SELECT ch4, co2, o2, leachate_level FROM readings_landfill WHERE sensor_id = $1",
        f"{prefix}-ldf-1",
    )
    assert (row["ch4"], row["co2"], row["o2"], row["leachate_level"]) == (
        pytest.approx(1.25),
        2.5,
        19.0,
        0.22,
    )
    row = await db.fetchrow(
        "SELECT dust, so2, o2, dust_ref, so2_ref, nox_ref, co_ref, hcl_ref, hf_ref "
        "FROM readings_incinerator WHERE sensor_id = $1",
        f"{prefix}-inc-1",
    )
    # O2 15 %: factor (21 - 11) / (21 - 15) = 10/6.  Dust 60 -> 100; SO2 0.12 -> 0.2;
    # NOx 300 -> 500; CO 150 -> 250; HCl 3 -> 5; HF not measured -> NULL.
    assert (row["dust"], row["so2"], row["o2"]) == (60.0, pytest.approx(0.12), 15.0)
    assert row["dust_ref"] == pytest.approx(100.0)
    assert row["so2_ref"] == pytest.approx(0.2)
    assert row["nox_ref"] == pytest.approx(500.0)
    assert row["co_ref"] == pytest.approx(250.0)
    assert row["hcl_ref"] == pytest.approx(5.0)
    assert row["hf_ref"] is None

    [raw] = await read_topic(settings, settings.kafka.topic("deadletter"), 1)
    dead = DeadLetter.from_json(raw)
    assert "ch4=150" in dead.reason and "0..100 % vol" in dead.reason, dead.reason
