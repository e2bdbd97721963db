from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from urbanpulse.core.envelope import Reading
from urbanpulse.core.metrics import Metrics
from urbanpulse.core.settings import Settings
from urbanpulse.ingest.mqtt_source import IncomingMessage
from urbanpulse.ingest.records import BridgeCounters, RecordMaker
from urbanpulse.storage.registry import RegisteredSensor
from urbanpulse.stream.admission import PendingBudget
from urbanpulse.stream.steps import ConsumedRecord, check_registry, decode_record, parts_of
from urbanpulse.stream.validate import RecordLimits

NOW = datetime(2026, 11, 22, tzinfo=UTC)
MAX_BYTES = 64 * 1024
LIMITS = RecordLimits(MAX_BYTES, timedelta(minutes=5), timedelta(days=30))
ROOM = PendingBudget(1000, "")


def reading(sensor: str, kind: str = "air") -> Reading:
    return Reading(sensor, kind, NOW, {"pm25": 1.0}, NOW, f"urbanpulse/v1/{kind}/{sensor}/data")


def test_a_record_that_is_not_an_envelope_is_dead_lettered_with_its_offset() -> None:
    good = ConsumedRecord("urbanpulse.readings", 0, 1, reading("a").to_json())
    bad = ConsumedRecord("urbanpulse.readings", 2, 9, b"\x00garbage")
    assert [r.sensor_id for r in decode_record(good, NOW, LIMITS)[0]] == ["a"]
    accepted, [dead] = decode_record(bad, NOW, LIMITS)
    assert accepted == []
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
    accepted, [dead] = decode_record(record(value, headers), NOW, LIMITS)
    assert accepted == []
    assert dead.source == "kafka:urbanpulse.readings/1@7" and dead.stage == "stream"
    return dead.reason


def test_a_valid_envelope_with_the_reading_schema_header_is_accepted() -> None:
    accepted, dead = decode_record(
        record(reading("s-1").to_json(), (("schema", b"reading/1"),)), NOW, LIMITS
    )
    assert [r.sensor_id for r in accepted] == ["s-1"] and dead == []


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
    assert "schema header b'alert-event/1' is neither reading/1 nor readings/2" in reason


def test_an_oversized_record_is_refused_and_kept_in_part() -> None:
    value = envelope(source="x" * 900_000)
    _, [dead] = decode_record(record(value), NOW, LIMITS)
    assert f"record of {len(value)} bytes is larger than the {MAX_BYTES} bytes" in dead.reason
    assert dead.raw == value[:MAX_BYTES]


@given(st.binary(max_size=300))
def test_no_bytes_crash_the_decode_step(value: bytes) -> None:
    accepted, dead = decode_record(record(value), NOW, LIMITS)
    assert len(accepted) + len(dead) == 1


# --- readings/2: the bridge's records of several readings -----------------------------------

BRIDGE_TOPIC = "urbanpulse/v1/air/s-9/data"


def bridged(items: list[dict[str, object]]) -> ConsumedRecord:
    """The bridge's own record of one MQTT message of ``items``, as the processor gets it."""
    maker = RecordMaker(Settings(), BridgeCounters(Metrics()))
    message = IncomingMessage(BRIDGE_TOPIC, orjson.dumps(items), 1, 1, NOW)
    [made] = maker.records(message)
    return ConsumedRecord("urbanpulse.readings", 3, 40, made.value, tuple(made.headers))


def items(count: int) -> list[dict[str, object]]:
    return [{"ts": f"2026-11-21T23:{m:02d}:00Z", "values": {"pm25": m}} for m in range(count)]


def test_the_bridges_record_of_a_message_gives_back_each_reading() -> None:
    accepted, dead = decode_record(bridged(items(20)), NOW, LIMITS)
    assert dead == []
    assert [(r.sensor_id, r.ts.minute, r.values) for r in accepted] == [
        ("s-9", m, {"pm25": float(m)}) for m in range(20)
    ]
    assert {(r.source, r.received_at) for r in accepted} == {(BRIDGE_TOPIC, NOW)}


def with_readings(record: ConsumedRecord, change: dict[int, object]) -> ConsumedRecord:
    """The record as another producer might write it: some of its readings replaced."""
    obj = orjson.loads(record.value)
    for index, reading in change.items():
        obj["readings"][index] = reading
    return replace(record, value=orjson.dumps(obj))


def test_bad_readings_in_a_good_record_are_dead_lettered_alone_and_the_rest_kept() -> None:
    record = with_readings(
        bridged(items(5)),
        {
            1: {"ts": "2026-11-21T23:01:00Z", "values": {"pm25": 2000.5}},  # beyond the catalogue
            3: {"ts": "2026-11-21T23:03:00Z", "values": {"pm25": [[[]]]}},  # not an envelope
        },
    )
    accepted, dead = decode_record(record, NOW, LIMITS)
    assert [r.ts.minute for r in accepted] == [0, 2, 4]
    assert [d.reason for d in dead] == [
        "reading [1] of the record: values.pm25=2000.5 outside the possible range 0..2000 µg/m³",
        "reading [3] of the record: not a reading: values must map metric names to numbers",
    ]
    assert {d.source for d in dead} == {"kafka:urbanpulse.readings/3@40"}
    # Each dead letter holds its reading alone, not the whole record.
    assert orjson.loads(dead[0].raw)["values"] == {"pm25": 2000.5}
    assert dead[1].raw == b'{"ts":"2026-11-21T23:03:00Z","values":{"pm25":[[[]]]}}'


def test_a_record_is_parted_into_its_readings_each_decoded_alone() -> None:
    record = with_readings(bridged(items(3)), {2: "junk"})
    parts = parts_of(record)
    assert [p.part for p in parts] == [0, 1, 2]
    decoded = [decode_record(p, NOW, LIMITS) for p in parts]
    assert [([r.ts.minute for r in ok], len(dead)) for ok, dead in decoded] == [
        ([0], 0),
        ([1], 0),
        ([], 1),
    ]
    single = ConsumedRecord("urbanpulse.readings", 0, 1, reading("a").to_json())
    assert parts_of(single) == [single] and parts_of(bridged(items(1))) == [bridged(items(1))]


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
