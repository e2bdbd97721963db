from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import orjson
import pytest

from urbanpulse.core.envelope import (
    MAX_DEAD_LETTER_BYTES,
    DeadLetter,
    DeadLetterLimits,
    EnvelopeError,
    Reading,
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
