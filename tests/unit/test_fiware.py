"""FIWARE Smart Data Models payloads, including the real published examples.

The examples are kept in tests/fixtures/smart-data-models (CC-BY-4.0, "FIWARE Smart Data
Models"; see the README there), so these tests run in a plain checkout.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from urbanpulse.ingest.decode import Decoded, DecodeRules, decode_message

ROOT = "urbanpulse/v1"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "smart-data-models"
MADRID = ZoneInfo("Europe/Madrid")


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def decode(kind: str, payload: bytes | dict[str, Any], now: datetime, **rules: Any) -> Decoded:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    decoded = decode_message(ROOT, f"{ROOT}/{kind}/dev-1/data", raw, now, DecodeRules(**rules))
    assert decoded is not None
    return decoded


@pytest.mark.parametrize("form", ["example.json", "example-normalized.json"])
def test_air_quality_observed_maps_to_canonical_units(form: str) -> None:
    observed = datetime(2016, 3, 15, 10, 0, tzinfo=UTC)  # 11:00 in Madrid
    payload = fixture(f"AirQualityObserved.{form}")
    decoded = decode("air", payload, observed + timedelta(minutes=5), naive_time_zone=MADRID)
    assert decoded.problems == []
    [reading] = decoded.readings
    assert reading.ts == observed
    assert reading.location == pytest.approx((-3.712247, 40.423853))
    assert reading.values["so2"] == 11
    assert reading.values["temperature"] == 12.2
    assert reading.values["humidity"] == pytest.approx(54.0)  # relativeHumidity 0.54
    # Key-values states no unit (µg/m³ by default); normalized says GP, i.e. mg/m³.
    assert reading.values["co"] == (500_000 if "normalized" in form else 500)
    assert {"no", "nox", "tsp", "pm4"} <= set(decoded.ignored)


@pytest.mark.parametrize("form", ["example.json", "example-normalized.json"])
def test_water_quality_observed_converts_species_and_conductivity(form: str) -> None:
    observed = datetime(2017, 1, 31, 6, 45, tzinfo=UTC)
    decoded = decode(
        "water", fixture(f"WaterQualityObserved.{form}"), observed + timedelta(hours=1)
    )
    assert decoded.problems == []
    [reading] = decoded.readings
    assert reading.values["ph"] == 7.4
    assert reading.values["temperature"] == 24.4
    assert reading.values["conductivity"] == pytest.approx(50.0)  # 0.005 S/m
    assert reading.values["po4_p"] == 0.5
    assert reading.values["no3_n"] == pytest.approx(0.01 * 14.007 / 62.004)
    assert reading.values["no2_n"] == pytest.approx(0.09 * 14.007 / 46.005)


@pytest.mark.parametrize("form", ["example.json", "example-normalized.json"])
def test_traffic_flow_observed_is_timed_at_the_end_of_its_interval(form: str) -> None:
    end = datetime(2016, 12, 7, 11, 15, tzinfo=UTC)
    decoded = decode("traffic_camera", fixture(f"TrafficFlowObserved.{form}"), end)
    assert decoded.problems == []
    [reading] = decoded.readings
    assert reading.ts == end
    assert reading.values == {"vehicles": 197, "occupancy": pytest.approx(76.0), "avg_speed": 52.6}
    assert reading.location == pytest.approx((-4.73414858659993, 41.6600594193478))


@pytest.mark.parametrize("form", ["example.json", "example-normalized.json"])
def test_waste_container_example_is_rejected_for_carrying_no_measurement(form: str) -> None:
    now = datetime(2021, 3, 1, 10, 30, tzinfo=UTC)
    decoded = decode("waste_bin", fixture(f"WasteContainer.{form}"), now)
    assert decoded.readings == []
    assert decoded.problems == [
        "WasteContainer carries no measurement we store (expected any of fillingLevel, temperature)"
    ]


@pytest.mark.parametrize(
    ("name", "kind", "reason"),
    [
        ("AirQualityObserved.example.json", "air", "has no UTC offset"),
        ("WaterQualityObserved.example.json", "water", "older than 30 days"),
        ("TrafficFlowObserved.example.json", "traffic_camera", "older than 30 days"),
        ("WasteContainer.example.json", "waste_bin", "carries no measurement"),
    ],
)
def test_every_published_example_now_is_accepted_or_rejected_for_a_stated_reason(
    name: str, kind: str, reason: str
) -> None:
    # A fixed recent date, not the wall clock: the examples date from 2016-2017.
    decoded = decode(kind, fixture(name), datetime(2026, 11, 29, tzinfo=UTC))
    assert decoded.readings == []
    assert any(reason in problem for problem in decoded.problems), decoded.problems


def test_waste_container_fill_level_fraction_becomes_percent() -> None:
    now = datetime(2026, 11, 22, 8, tzinfo=UTC)
    entity = {
        "id": "bin-1",
        "type": "WasteContainer",
        "fillingLevel": 0.93,
        "temperature": 31.0,
        "dateModified": "2026-11-22T07:59:00Z",
    }
    [reading] = decode("waste_bin", entity, now).readings
    assert reading.values == {"fill": pytest.approx(93.0), "temperature": 31.0}


def test_vehicle_type_routes_intensity_to_its_class() -> None:
    now = datetime(2026, 11, 22, 8, tzinfo=UTC)
    entity = {
        "id": "cam-1",
        "type": "TrafficFlowObserved",
        "vehicleType": "motorcycle",
        "intensity": 412,
        "dateObserved": "2026-11-22T07:55:00Z/2026-11-22T08:00:00Z",
    }
    [reading] = decode("traffic_camera", entity, now).readings
    assert reading.values == {"motorbike": 412}


def test_fiware_entity_on_the_wrong_kind_topic_is_rejected() -> None:
    now = datetime(2026, 11, 22, 8, tzinfo=UTC)
    entity = {
        "id": "x",
        "type": "AirQualityObserved",
        "pm25": 3,
        "dateObserved": "2026-11-22T07:00Z",
    }
    decoded = decode("water", entity, now)
    assert decoded.problems == [
        "FIWARE AirQualityObserved is kind 'air', but the topic says 'water'"
    ]


def test_normalized_unit_code_that_we_cannot_convert_is_named() -> None:
    now = datetime(2026, 11, 22, 8, tzinfo=UTC)
    entity = {
        "id": "x",
        "type": "AirQualityObserved",
        "dateObserved": {"type": "DateTime", "value": "2026-11-22T07:00:00Z"},
        "no2": {"type": "Number", "value": 40, "metadata": {"unitCode": {"value": "59"}}},
        "so2": {"type": "Number", "value": 9},
    }
    decoded = decode("air", entity, now)
    assert [r.values for r in decoded.readings] == [{"so2": 9}]
    assert decoded.problems[0].startswith("values.no2: unit '59' is not accepted for no2")
