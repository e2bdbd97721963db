from __future__ import annotations

from datetime import UTC, datetime

from urbanpulse.core.envelope import Reading
from urbanpulse.storage.registry import RegisteredSensor
from urbanpulse.stream.steps import ConsumedRecord, check_registry, decode_records

NOW = datetime(2026, 11, 22, tzinfo=UTC)


def reading(sensor: str, kind: str = "air") -> Reading:
    return Reading(sensor, kind, NOW, {"pm25": 1.0}, NOW, f"urbanpulse/v1/{kind}/{sensor}/data")


def test_a_record_that_is_not_an_envelope_is_dead_lettered_with_its_offset() -> None:
    good = ConsumedRecord("urbanpulse.readings", 0, 1, reading("a").to_json())
    bad = ConsumedRecord("urbanpulse.readings", 2, 9, b"\x00garbage")
    checked = decode_records([good, bad], NOW)
    assert [r.sensor_id for r in checked.accepted] == ["a"]
    [dead] = checked.dead_letters
    assert dead.source == "kafka:urbanpulse.readings/2@9"
    assert dead.stage == "stream" and dead.raw == b"\x00garbage"


def test_unknown_sensors_are_registered_as_pending_once() -> None:
    checked = check_registry([reading("new"), reading("new")], {}, "pending", NOW)
    assert len(checked.accepted) == 2
    assert [(s.sensor_id, s.status) for s in checked.to_register] == [("new", "pending")]
    assert checked.dead_letters == []


def test_a_pending_sensor_is_placed_where_its_payload_said() -> None:
    placed = Reading("new", "air", NOW, {"pm25": 1.0}, NOW, "t", location=(106.7, 10.78))
    checked = check_registry([placed], {}, "pending", NOW)
    [record] = checked.to_register
    assert (record.lon, record.lat, record.status) == (106.7, 10.78, "pending")


def test_unknown_sensors_are_rejected_in_reject_mode() -> None:
    checked = check_registry([reading("new")], {}, "reject", NOW)
    assert checked.accepted == [] and checked.to_register == []
    assert "unknown sensor 'new'" in checked.dead_letters[0].reason


def test_kind_contradicting_the_registry_and_retired_sensors_are_rejected() -> None:
    registry = {
        "a": RegisteredSensor("water", "active"),
        "b": RegisteredSensor("air", "retired"),
        "c": RegisteredSensor("air", "active"),
    }
    checked = check_registry([reading("a"), reading("b"), reading("c")], registry, "pending", NOW)
    assert [r.sensor_id for r in checked.accepted] == ["c"]
    reasons = [d.reason for d in checked.dead_letters]
    assert "registered as kind 'water'" in reasons[0]
    assert "retired" in reasons[1]
