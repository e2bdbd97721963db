from __future__ import annotations

from datetime import UTC, datetime

import pytest

from urbanpulse.core.envelope import DeadLetter, EnvelopeError, Reading

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
