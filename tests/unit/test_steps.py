from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from urbanpulse.core.envelope import Reading
from urbanpulse.storage.registry import RegisteredSensor
from urbanpulse.stream.admission import PendingBudget
from urbanpulse.stream.steps import ConsumedRecord, check_registry, decode_records
from urbanpulse.stream.validate import RecordLimits

NOW = datetime(2026, 11, 22, tzinfo=UTC)
MAX_BYTES = 64 * 1024
LIMITS = RecordLimits(MAX_BYTES, timedelta(minutes=5))
ROOM = PendingBudget(1000, "")


def reading(sensor: str, kind: str = "air") -> Reading:
    return Reading(sensor, kind, NOW, {"pm25": 1.0}, NOW, f"urbanpulse/v1/{kind}/{sensor}/data")


def test_a_record_that_is_not_an_envelope_is_dead_lettered_with_its_offset() -> None:
    good = ConsumedRecord("urbanpulse.readings", 0, 1, reading("a").to_json())
    bad = ConsumedRecord("urbanpulse.readings", 2, 9, b"\x00garbage")
    checked = decode_records([good, bad], NOW, LIMITS)
    assert [r.sensor_id for r in checked.accepted] == ["a"]
    [dead] = checked.dead_letters
    assert dead.source == "kafka:urbanpulse.readings/2@9"
    assert dead.stage == "stream" and dead.raw == b"\x00garbage"


def test_unknown_sensors_are_registered_as_pending_once() -> None:
    checked = check_registry([reading("new"), reading("new")], {}, "pending", NOW, ROOM)
    assert len(checked.accepted) == 2
    assert [(s.sensor_id, s.status) for s in checked.to_register] == [("new", "pending")]
    assert checked.dead_letters == []


def test_a_pending_sensor_is_placed_where_its_payload_said() -> None:
    placed = Reading("new", "air", NOW, {"pm25": 1.0}, NOW, "t", location=(106.7, 10.78))
    checked = check_registry([placed], {}, "pending", NOW, ROOM)
    [record] = checked.to_register
    assert (record.lon, record.lat, record.status) == (106.7, 10.78, "pending")


def test_unknown_sensors_are_rejected_in_reject_mode() -> None:
    checked = check_registry([reading("new")], {}, "reject", NOW, ROOM)
    assert checked.accepted == [] and checked.to_register == []
    assert "unknown sensor 'new'" in checked.dead_letters[0].reason


def test_kind_contradicting_the_registry_and_retired_sensors_are_rejected() -> None:
    registry = {
        "a": RegisteredSensor("water", "active"),
        "b": RegisteredSensor("air", "retired"),
        "c": RegisteredSensor("air", "active"),
    }
    checked = check_registry(
        [reading("a"), reading("b"), reading("c")], registry, "pending", NOW, ROOM
    )
    assert [r.sensor_id for r in checked.accepted] == ["c"]
    reasons = [d.reason for d in checked.dead_letters]
    assert "registered as kind 'water'" in reasons[0]
    assert "retired" in reasons[1]


# --- records from any producer: size, schema header, envelope, catalogue --------------------


def record(value: bytes, headers: tuple[tuple[str, bytes], ...] = ()) -> ConsumedRecord:
    return ConsumedRecord("urbanpulse.readings", 1, 7, value, headers)


def envelope(**changes: object) -> bytes:
    obj = orjson.loads(reading("s-1").to_json())
    obj.update(changes)
    return orjson.dumps(obj)


def only_reason(value: bytes, headers: tuple[tuple[str, bytes], ...] = ()) -> str:
    checked = decode_records([record(value, headers)], NOW, LIMITS)
    assert checked.accepted == []
    [dead] = checked.dead_letters
    assert dead.source == "kafka:urbanpulse.readings/1@7" and dead.stage == "stream"
    return dead.reason


def test_a_valid_envelope_with_the_reading_schema_header_is_accepted() -> None:
    checked = decode_records(
        [record(reading("s-1").to_json(), (("schema", b"reading/1"),))], NOW, LIMITS
    )
    assert [r.sensor_id for r in checked.accepted] == ["s-1"] and checked.dead_letters == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"not json at all", "not a reading envelope"),
        (orjson.dumps({"type": "Feature", "properties": {}}), "not a reading envelope"),
        (envelope(kind="volcano"), "unknown kind 'volcano'"),
        (envelope(sensor_id="s\x00-1"), "sensor_id 's\\x00-1' is not"),
        (envelope(sensor_id="s-1\n"), "sensor_id 's-1\\n' is not"),  # re.match's $ would pass
        (envelope(sensor_id="x" * 65), "is not 1-64 letters"),
        (envelope(source="gw\x00"), "source 'gw\\x00' contains a NUL"),
        (envelope(values={"pm25": 2000.5}), "pm25=2000.5 outside the possible range 0..2000"),
        (envelope(values={"pm25": -1}), "pm25=-1.0 outside the possible range"),
        (envelope(values={"lead": 1.0}), "values.'lead': unknown metric for kind 'air'"),
        (envelope(values={}), "values: no metric given"),
        (envelope(ts="2026-11-22T00:05:01+00:00"), "ts 2026-11-22T00:05:01+00:00 is in the future"),
        (envelope(received_at="2026-11-23T00:00:00Z"), "received_at 2026-11-23T00:00:00+00:00"),
        (envelope(location=[200.0, 10.0]), "location (200.0, 10.0) is not WGS 84"),
        # A year-1 time with a +14:00 offset has no UTC instant: from_json overflows.
        (envelope(ts="0001-01-01T00:00:00+14:00"), "not a reading envelope"),
    ],
)
def test_records_that_are_not_storable_readings_are_dead_lettered_with_the_reason(
    value: bytes, expected: str
) -> None:
    assert expected in only_reason(value)


def test_a_record_with_another_schema_header_is_refused_whatever_its_content() -> None:
    reason = only_reason(reading("s-1").to_json(), (("schema", b"alert-event/1"),))
    assert "schema header b'alert-event/1' is not reading/1" in reason


def test_an_oversized_record_is_refused_and_kept_in_part() -> None:
    value = envelope(source="x" * 900_000)
    checked = decode_records([record(value)], NOW, LIMITS)
    [dead] = checked.dead_letters
    assert f"record of {len(value)} bytes is larger than the {MAX_BYTES} bytes" in dead.reason
    assert dead.raw == value[:MAX_BYTES]


def test_one_bad_record_does_not_take_the_good_ones_with_it() -> None:
    good = record(reading("s-2").to_json())
    checked = decode_records([record(b"\xff\xfe"), good, record(b"[]")], NOW, LIMITS)
    assert [r.sensor_id for r in checked.accepted] == ["s-2"]
    assert len(checked.dead_letters) == 2


@given(st.binary(max_size=300))
def test_no_bytes_crash_the_decode_step(value: bytes) -> None:
    checked = decode_records([record(value)], NOW, LIMITS)
    assert len(checked.accepted) + len(checked.dead_letters) == 1


# --- the pending budget -----------------------------------------------------------------------


def test_unknown_sensors_beyond_the_pending_budget_are_dead_lettered_with_its_reason() -> None:
    readings = [reading(f"new-{i}") for i in range(5)] + [reading("new-4"), reading("known")]
    known = {"known": RegisteredSensor("air", "active")}
    checked = check_registry(readings, known, "pending", NOW, PendingBudget(2, "cap reached"))
    assert [s.sensor_id for s in checked.to_register] == ["new-0", "new-1"]
    assert [r.sensor_id for r in checked.accepted] == ["new-0", "new-1", "known"]
    assert checked.pending_refused == 4  # new-2, new-3 and both readings of new-4
    assert checked.dead_letters[0].reason == (
        "unknown sensor 'new-2' not registered as pending: cap reached"
    )
