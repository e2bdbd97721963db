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


# --- exact mapping, attribute by attribute ---------------------------------------------------

NOW = datetime(2026, 11, 22, 8, tzinfo=UTC)


def entity(type_: str, **attributes: Any) -> dict[str, Any]:
    return {"id": "x", "type": type_, **attributes}


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        # dateObservedTo, then dateObserved, then dateModified, then dateUpdated.
        (
            {"dateUpdated": "07:10", "dateModified": "07:20", "dateObserved": "07:30",
             "dateObservedTo": "07:40"},
            "07:40",
        ),
        ({"dateUpdated": "07:10", "dateModified": "07:20", "dateObserved": "07:30"}, "07:30"),
        ({"dateUpdated": "07:10", "dateModified": "07:20"}, "07:20"),
        ({"dateUpdated": "07:10"}, "07:10"),
    ],
)  # fmt: skip
def test_the_observation_time_is_the_most_specific_one_given(
    times: dict[str, str], expected: str
) -> None:
    stamped = {k: f"2026-11-22T{v}:00Z" for k, v in times.items()}
    [reading] = decode("air", entity("AirQualityObserved", pm25=5, **stamped), NOW).readings
    assert reading.ts == datetime.fromisoformat(f"2026-11-22T{expected}:00+00:00")


def test_bin_logged_time_times_only_a_waste_container() -> None:
    logged = "2026-11-22T07:45:00Z"
    [bin_reading] = decode(
        "waste_bin", entity("WasteContainer", fillingLevel=0.5, binLoggedTime=logged), NOW
    ).readings
    assert bin_reading.ts == datetime(2026, 11, 22, 7, 45, tzinfo=UTC)
    air = decode("air", entity("AirQualityObserved", pm25=5, binLoggedTime=logged), NOW)
    assert air.readings == [] and air.problems[0].startswith("ts: missing")


@pytest.mark.parametrize(
    ("attribute", "value", "metric", "expected"),
    [
        # Molar masses: N 14.007, H4N (NH4) 18.038, NO3 62.004, NO2 46.005, P 30.974, PO4 94.971.
        ("NH4", 1.8038, "nh4_n", 1.4007),  # 1.8038 * 14.007 / 18.038
        ("NO3", 6.2004, "no3_n", 1.4007),  # 6.2004 * 14.007 / 62.004
        ("NO2", 0.46005, "no2_n", 0.14007),  # 0.46005 * 14.007 / 46.005
        ("PO4", 0.94971, "po4_p", 0.30974),  # 0.94971 * 30.974 / 94.971
        ("P-PO4", 0.5, "po4_p", 0.5),  # already as P
        ("conductivity", 0.005, "conductivity", 50.0),  # S/m -> µS/cm: * 10000
        ("O2", 6.1, "do", 6.1),
        ("BOD", 4.0, "bod5", 4.0),
        ("COD", 10.0, "cod", 10.0),
        ("Tur", 12.0, "turbidity", 12.0),
        ("pH", 7.4, "ph", 7.4),
    ],
)
def test_water_species_and_units_become_canonical(
    attribute: str, value: float, metric: str, expected: float
) -> None:
    payload = entity(
        "WaterQualityObserved", dateObserved="2026-11-22T07:00:00Z", **{attribute: value}
    )
    decoded = decode("water", payload, NOW)
    assert decoded.problems == []
    assert decoded.readings[0].values == {metric: pytest.approx(expected, rel=1e-12)}


@pytest.mark.parametrize(
    ("vehicle_type", "metric"),
    [("Motorcycle", "motorbike"), ("scooter", "motorbike"), ("minibus", "bus"),
     ("van", "truck"), ("bicycle", "bicycle"), ("car", "car"), ("tram", "vehicles"),
     (7, "vehicles")],
)  # fmt: skip
def test_intensity_goes_to_the_vehicle_class_or_all_vehicles(
    vehicle_type: Any, metric: str
) -> None:
    payload = entity(
        "TrafficFlowObserved",
        vehicleType=vehicle_type,
        intensity=12,
        occupancy=0.25,
        dateObserved="2026-11-22T07:55:00Z/2026-11-22T08:00:00Z",
    )
    [reading] = decode("traffic_camera", payload, NOW).readings
    assert reading.values == {metric: 12, "occupancy": pytest.approx(25.0)}
    assert reading.ts == NOW  # the end of the interval


def test_normalized_units_may_be_plain_strings_or_objects_and_override_the_default() -> None:
    payload = entity(
        "AirQualityObserved",
        dateObserved={"type": "DateTime", "value": "2026-11-22T07:00:00Z"},
        co={"type": "Number", "value": 2, "metadata": {"unitCode": "GP"}},
        no2={"type": "Number", "value": 3, "metadata": {"unitCode": {"value": "GP"}}},
        so2={"type": "Number", "value": 4, "metadata": {"unitCode": {"value": 5}}},
        o3={"type": "Number", "value": 6, "metadata": "none"},
    )
    [reading] = decode("air", payload, NOW).readings
    # GP = mg/m³ -> * 1000; a unit that is not a string, or no metadata: the default µg/m³.
    assert reading.values == {"co": 2000, "no2": 3000, "so2": 4, "o3": 6}


def test_only_numeric_unknown_attributes_are_reported_as_ignored() -> None:
    payload = entity(
        "AirQualityObserved",
        dateObserved="2026-11-22T07:00:00Z",
        pm25=5,
        nox=12.5,
        co2=400,
        source="http://example.org",
        reliability=True,
        location={"type": "Point", "coordinates": [106.7, 10.78]},
    )
    decoded = decode("air", payload, NOW)
    assert decoded.ignored == ["nox", "co2"]
    [reading] = decoded.readings
    assert reading.location == (106.7, 10.78)


def test_a_normalized_location_is_read_from_its_value() -> None:
    payload = entity(
        "AirQualityObserved",
        dateObserved="2026-11-22T07:00:00Z",
        pm25={"type": "Number", "value": 5},
        location={"type": "geo:json", "value": {"type": "Point", "coordinates": [106.7, 10.78]}},
    )
    [reading] = decode("air", payload, NOW).readings
    assert reading.location == (106.7, 10.78) and reading.values == {"pm25": 5}


def test_an_entity_without_a_stored_measurement_names_what_it_expected() -> None:
    decoded = decode("traffic_camera", entity("TrafficFlowObserved", laneId=1), NOW)
    assert decoded.problems == [
        "TrafficFlowObserved carries no measurement we store "
        "(expected any of intensity, occupancy, averageVehicleSpeed)"
    ]


def test_an_interval_is_timed_by_what_follows_its_last_slash() -> None:
    payload = entity(
        "AirQualityObserved",
        pm25=5,
        dateObserved="2026-11-22T06:00:00Z/2026-11-22T07:00:00Z/2026-11-22T07:30:00Z",
    )
    [reading] = decode("air", payload, NOW).readings
    assert reading.ts == datetime(2026, 11, 22, 7, 30, tzinfo=UTC)
