from __future__ import annotations

import contextlib
import hashlib
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from urbanpulse.core.envelope import (
    MAX_DEAD_LETTER_BYTES,
    READING_SCHEMA,
    READINGS_SCHEMA,
    DeadLetter,
    DeadLetterLimits,
    EnvelopeError,
    Reading,
    decode_readings,
    readings_records,
)

TS = datetime(2026, 11, 22, 7, 0, 0, 123456, tzinfo=UTC)


def test_reading_round_trips_through_json() -> None:
    reading = Reading("s-1", "air", TS, {"pm25": 12.5}, TS, "urbanpulse/v1/air/s-1/data", 4)
    assert Reading.from_json(reading.to_json()) == reading


@pytest.mark.parametrize(
    "data",
    [
        b"{}",
        b"[1]",
        b"garbage",
        b'{"sensor_id":"s","kind":"air","ts":"2026-01-01T00:00:00","values":{},"received_at":"2026-01-01T00:00:00Z"}',
        b'{"sensor_id":"s","kind":"air","ts":"2026-01-01T00:00:00Z","values":{"pm25":"x"},"received_at":"2026-01-01T00:00:00Z"}',
        # Another producer's record: fields of the wrong type, nested past what repr can show.
        b'{"sensor_id":' + b"[" * 1000 + b"]" * 1000 + b',"kind":"air","ts":"2026-01-01T00:00:00Z",'
        b'"values":{},"received_at":"2026-01-01T00:00:00Z"}',
        b'{"sensor_id":"s","kind":{"a":1},"ts":"2026-01-01T00:00:00Z","values":{},'
        b'"received_at":"2026-01-01T00:00:00Z"}',
        b'{"sensor_id":"s","kind":"air","ts":17,"values":{},"received_at":"2026-01-01T00:00:00Z"}',
        b'{"sensor_id":"s","kind":"air","ts":"2026-01-01T00:00:00Z","values":{},'
        b'"received_at":"2026-01-01T00:00:00Z","location":["x","y"]}',
        b'{"sensor_id":"s","kind":"air","ts":"2026-01-01T00:00:00Z","values":{},'
        b'"received_at":"2026-01-01T00:00:00Z","seq":"7"}',
    ],
)
def test_invalid_envelopes_raise_envelope_error(data: bytes) -> None:
    with pytest.raises(EnvelopeError):
        Reading.from_json(data)


@pytest.mark.parametrize("raw", [b'{"half": ', b"\xff\xfe\x00binary"])
def test_dead_letter_keeps_the_raw_payload_whole(raw: bytes) -> None:
    dead = DeadLetter(("malformed JSON", "second"), "urbanpulse/v1/air/x/data", "ingest", raw, TS)
    back = DeadLetter.from_json(dead.to_json())
    assert back == dead
    assert back.reason == "malformed JSON; second"


# Kafka's default maximum for a record batch (broker message.max.bytes) is 1,048,588 bytes and
# for a produce request (client max_request_size) 1,048,576: a dead letter must stay below both.
KAFKA_DEFAULT_MAX_BYTES = 1_048_576
SOURCE = "urbanpulse/v1/air/x/data"


def _reading_array(count: int) -> bytes:
    item = b'{"ts":"2026-11-22T07:00:00Z","values":{"pm25":12.5}}'
    return b"[" + b",".join([item] * count) + b"]"


@pytest.mark.parametrize(
    "raw",
    [
        _reading_array(100_000),  # the 6 MB array of the bug report
        bytes(range(32)) * 32_768,  # 1 MiB of control bytes: 6 bytes each as JSON text
        b"\xff\xfe" + bytes(range(256)) * 8192,  # 2 MiB, not UTF-8
        "Nguy hại ".encode() * 200_000,  # multi-byte UTF-8, cut inside a character
    ],
    ids=["6MB-array", "control-bytes", "invalid-utf8", "vietnamese-text"],
)
def test_a_dead_letter_of_any_payload_fits_kafka_and_identifies_the_whole(raw: bytes) -> None:
    dead = DeadLetter(("too large",), SOURCE, "ingest", raw, TS)
    data = dead.to_json()
    assert len(data) < KAFKA_DEFAULT_MAX_BYTES
    back = DeadLetter.from_json(data)
    assert back.raw_size == len(raw)
    assert back.raw_sha256 == hashlib.sha256(raw).hexdigest()
    assert back.raw_truncated
    assert 64 * 1024 - 3 <= len(back.raw) <= 64 * 1024
    assert raw.startswith(back.raw)


def test_a_dead_letter_keeps_fifty_reasons_each_bounded_and_counts_the_rest() -> None:
    junk = "\x01" * 5000
    reasons = tuple(f"[{i}] values.pm25: {junk} is not a number" for i in range(10_000))
    dead = DeadLetter(reasons, SOURCE * 3000, "ingest", b"{}", TS)
    data = dead.to_json()
    assert len(data) < KAFKA_DEFAULT_MAX_BYTES
    back = DeadLetter.from_json(data)
    assert len(back.reasons) == 50
    assert back.reasons_omitted == 9_950
    assert back.reasons[0].startswith("[0] values.pm25: ")
    assert all(len(r) <= 500 for r in back.reasons)
    assert orjson.loads(data)["reason"].endswith("… and 9950 more reasons")
    assert len(back.source) <= 300


def test_worst_case_of_every_field_at_once_stays_under_the_computed_bound() -> None:
    limits = DeadLetterLimits()
    reasons = tuple("\x00" * 10_000 for _ in range(1000))
    raw = b"\xff" * (1024 * 1024)
    data = DeadLetter(reasons, "\x00" * 10_000, "\x00" * 10_000, raw, TS).to_json(limits)
    assert len(data) <= limits.worst_case_json_bytes() <= MAX_DEAD_LETTER_BYTES


def test_limits_that_could_outgrow_kafka_are_refused() -> None:
    with pytest.raises(ValueError, match="Kafka accepts"):
        DeadLetterLimits(raw_prefix_bytes=1024 * 1024)
    with pytest.raises(ValueError, match="Kafka accepts"):
        DeadLetterLimits(max_reasons=10_000)


def test_readable_text_stays_text_and_control_bytes_become_base64() -> None:
    text = DeadLetter(("r",), SOURCE, "ingest", b'{"ts": 1, "values": {}}', TS).to_json()
    assert orjson.loads(text)["raw_encoding"] == "utf-8"
    control = DeadLetter(("r",), SOURCE, "ingest", b"\x00\x01\x02" * 100, TS).to_json()
    assert orjson.loads(control)["raw_encoding"] == "base64"


def test_a_configured_prefix_is_honoured() -> None:
    data = DeadLetter(("r",), SOURCE, "ingest", b"a" * 5000, TS).to_json(
        DeadLetterLimits(raw_prefix_bytes=100)
    )
    back = DeadLetter.from_json(data)
    assert back.raw == b"a" * 100 and back.raw_size == 5000


def test_a_prefix_never_splits_a_character_of_valid_utf8() -> None:
    raw = b"a" * (64 * 1024 - 1) + "ạ".encode() * 10  # "ạ" is 3 bytes: the cut falls inside it
    data = orjson.loads(DeadLetter(("r",), SOURCE, "ingest", raw, TS).to_json())
    assert data["raw_encoding"] == "utf-8"
    assert data["raw"] == "a" * (64 * 1024 - 1)


# --- readings/2: the readings of one MQTT message in one record -------------------------------

SENT = datetime(2026, 11, 22, 7, 0, 5, tzinfo=UTC)
TOPIC = "urbanpulse/v1/air/s-1/data"


def message_readings(count: int, location: tuple[float, float] | None = None) -> list[Reading]:
    return [
        Reading(
            "s-1", "air", TS + timedelta(minutes=i), {"pm25": 10.0 + i}, SENT, TOPIC, i, location
        )
        for i in range(count)
    ]


def test_a_messages_readings_make_one_record_stating_what_they_share_once() -> None:
    readings = message_readings(3, (106.7, 10.78))
    readings[1] = replace(readings[1], seq=None)
    [value] = readings_records(readings, 16 * 1024)
    # The shape the README's contract shows, written out by hand.
    assert orjson.loads(value) == {
        "sensor_id": "s-1",
        "kind": "air",
        "source": TOPIC,
        "received_at": "2026-11-22T07:00:05Z",
        "location": [106.7, 10.78],
        "readings": [
            {"ts": "2026-11-22T07:00:00.123456Z", "values": {"pm25": 10.0}, "seq": 0},
            {"ts": "2026-11-22T07:01:00.123456Z", "values": {"pm25": 11.0}},
            {"ts": "2026-11-22T07:02:00.123456Z", "values": {"pm25": 12.0}, "seq": 2},
        ],
    }
    for schema in (READINGS_SCHEMA, None):  # by its header, or by its content without one
        decoded = decode_readings(value, schema)
        assert decoded.readings == list(enumerate(readings)) and decoded.bad == []
        assert decoded.several


def test_readings_that_would_make_a_large_record_are_cut_into_several_in_order() -> None:
    readings = message_readings(1000)
    values = readings_records(readings, 4096)
    assert len(values) > 1 and all(len(v) <= 4096 for v in values)
    back = [r for v in values for _, r in decode_readings(v, READINGS_SCHEMA).readings]
    assert back == readings


def test_a_new_record_starts_where_the_shared_fields_change() -> None:
    moving = message_readings(4, (106.7, 10.78))
    moving[2:] = [replace(r, location=(106.8, 10.79)) for r in moving[2:]]
    values = readings_records(moving, 16 * 1024)
    assert [orjson.loads(v)["location"] for v in values] == [[106.7, 10.78], [106.8, 10.79]]
    assert [r for v in values for _, r in decode_readings(v).readings] == moving


def test_a_single_reading_larger_than_the_bound_still_gets_its_record() -> None:
    [value] = readings_records(message_readings(1), 10)
    assert decode_readings(value).readings == [(0, message_readings(1)[0])]


def test_a_reading_1_record_is_still_read() -> None:
    reading = message_readings(1)[0]
    for schema in (READING_SCHEMA, None):
        decoded = decode_readings(reading.to_json(), schema)
        assert decoded.readings == [(0, reading)] and not decoded.several


def test_a_bad_reading_in_a_good_record_is_set_apart_with_its_index() -> None:
    obj = orjson.loads(readings_records(message_readings(4), 16 * 1024)[0])
    obj["readings"][1]["values"] = {"pm25": "high"}
    obj["readings"][2]["ts"] = [[[[[]]]]]
    obj["readings"][3] = 7
    decoded = decode_readings(orjson.dumps(obj), READINGS_SCHEMA)
    assert [i for i, _ in decoded.readings] == [0]
    assert [(b.index, b.reason) for b in decoded.bad] == [
        (1, "values must map metric names to numbers"),
        (2, "timestamp [[[[[]]]]] is not an ISO 8601 string"),
        (3, "reading 7 is not an object"),
    ]
    assert [b.raw for b in decoded.bad] == [
        b'{"ts":"2026-11-22T07:01:00.123456Z","values":{"pm25":"high"},"seq":1}',
        b'{"ts":[[[[[]]]]],"values":{"pm25":12.0},"seq":2}',
        b"7",
    ]
    assert decoded.count == 4


def test_a_reading_whose_time_has_no_utc_date_is_set_apart_alone() -> None:
    obj = orjson.loads(readings_records(message_readings(3), 16 * 1024)[0])
    obj["readings"][1]["ts"] = "0001-01-01T00:00:00+01:00"  # before year 1 once in UTC
    decoded = decode_readings(orjson.dumps(obj), READINGS_SCHEMA)
    assert [i for i, _ in decoded.readings] == [0, 2]
    [bad] = decoded.bad
    assert bad.index == 1 and "outside the years 1 to 9999 in UTC" in bad.reason


def test_a_reading_nested_too_deep_to_write_back_is_set_apart_without_its_json() -> None:
    deep = b"[" * 600 + b"]" * 600
    value = b'{"sensor_id":"s","kind":"air","received_at":"2026-11-22T07:00:00Z","readings":[' + (
        b'{"ts":"2026-11-22T07:00:00Z","values":{"pm25":1}},{"ts":' + deep + b',"values":{}}]}'
    )
    decoded = decode_readings(value, READINGS_SCHEMA)
    assert [i for i, _ in decoded.readings] == [0]
    [bad] = decoded.bad
    assert bad.index == 1 and bad.raw is None and bad.reason.startswith("timestamp [[[[")


SHARED = b'"sensor_id":"s","kind":"air","received_at":"2026-11-22T07:00:00Z"'
ONE = b'{"ts":"2026-11-22T07:00:00Z","values":{"pm25":1}}'


@pytest.mark.parametrize(
    ("value", "schema", "expected"),
    [
        (b"{" + SHARED + b',"readings":[]}', READINGS_SCHEMA, "is not a non-empty array"),
        (b"{" + SHARED + b',"readings":{"a":1}}', None, "is not a non-empty array"),
        (
            b'{"kind":"air","received_at":"2026-11-22T07:00:00Z","readings":[' + ONE + b"]}",
            None,
            "sensor_id None is not a string",
        ),
        (b"{" + SHARED + b',"location":[1],"readings":[' + ONE + b"]}", None, "not [lon, lat]"),
        (b"{" + SHARED + b',"readings":[' + ONE + b"]}", b"alert-event/1", "neither reading/1"),
        (b"{" + SHARED + b',"readings":[' + ONE + b"]}", READING_SCHEMA, "timestamp None"),
        (b"[1]", READINGS_SCHEMA, "[1] is not an object"),
        (b"\xff", None, "not JSON"),
    ],
)
def test_a_record_whose_shared_part_is_wrong_is_refused_whole(
    value: bytes, schema: bytes | None, expected: str
) -> None:
    with pytest.raises(EnvelopeError, match=re.escape(expected)):
        decode_readings(value, schema)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats()
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=30,
)


@given(JSON, st.sampled_from([READING_SCHEMA, READINGS_SCHEMA, None]))
def test_no_json_value_makes_decoding_fail_otherwise_than_by_envelope_error(
    document: object, schema: bytes | None
) -> None:
    """As a record, as its list of readings, and as one reading beside a good one."""
    shared = {"sensor_id": "s", "kind": "air", "received_at": "2026-11-22T07:00:00Z"}
    good = {"ts": "2026-11-22T07:00:00Z", "values": {"pm25": 1}}
    for candidate in (document, {**shared, "readings": document}):
        with contextlib.suppress(EnvelopeError):
            decode_readings(orjson.dumps(candidate), schema)
    decoded = decode_readings(orjson.dumps({**shared, "readings": [document, good]}))
    assert decoded.count == 2 and decoded.readings[-1][0] == 1
