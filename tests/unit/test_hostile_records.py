"""Hostile records on the readings topic: any producer may write there, so the processor
re-applies the bridge's age limit and never lets one record stop a batch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from urbanpulse.core.envelope import READINGS_SCHEMA
from urbanpulse.stream.steps import ConsumedRecord, decode_record, parts_of
from urbanpulse.stream.validate import RecordLimits

NOW = datetime(2026, 11, 22, 8, tzinfo=UTC)
# The bridge's defaults: ingest.max_future_skew_s = 300, ingest.max_age_days = 30.
LIMITS = RecordLimits(64 * 1024, timedelta(minutes=5), timedelta(days=30))
HEADERS = (("schema", READINGS_SCHEMA),)
RECENT = "2026-11-22T07:00:00Z"
YEAR_1_RECEIPT = "received_at 0001-01-01T00:00:00+00:00 is older than 30 days"


def record(receipt: str, *stamps: str, **shared: object) -> ConsumedRecord:
    value = {
        "sensor_id": "hcm-air-0001",
        "kind": "air",
        "source": "hand-written",
        "received_at": receipt,
        "location": None,
        "readings": [{"ts": ts, "values": {"pm25": 12.5}} for ts in stamps],
        **shared,
    }
    return ConsumedRecord("urbanpulse.readings", 0, 7, orjson.dumps(value), HEADERS)


def test_a_year_1_reading_is_refused_alone_and_its_sibling_is_stored() -> None:
    accepted, [dead] = decode_record(record(RECENT, "0001-01-01T00:00:00Z", RECENT), NOW, LIMITS)
    assert [r.ts for r in accepted] == [datetime(2026, 11, 22, 7, tzinfo=UTC)]
    assert dead.reasons == (
        "reading [0] of the record: ts 0001-01-01T00:00:00+00:00 is older than 30 days before "
        "it was received (2026-11-22T07:00:00+00:00)",
    )


def test_a_record_claiming_a_receipt_in_year_1_is_refused_whole() -> None:
    old = "0001-01-01T00:00:00Z"
    accepted, dead = decode_record(record(old, old, old), NOW, LIMITS)
    assert accepted == []
    assert [d.reasons for d in dead] == [
        (f"reading [{i}] of the record: {YEAR_1_RECEIPT}",) for i in (0, 1)
    ]


@pytest.mark.parametrize(
    ("received_at", "ts", "stored"),
    [
        # The bridge's rule, measured from receipt: exactly 30 days is still accepted.
        ("2026-11-22T07:00:00Z", "2026-10-23T07:00:00Z", True),
        ("2026-11-22T07:00:00Z", "2026-10-23T06:59:59Z", False),
        # A record that waited in Kafka keeps what the bridge accepted (29 + 29 days old).
        ("2026-10-24T08:00:00Z", "2026-09-25T08:00:00Z", True),
        ("2026-10-23T07:59:59Z", "2026-10-23T07:59:59Z", False),
        ("9999-12-31T23:59:59Z", RECENT, False),  # received in the future
    ],
)
def test_the_age_limit_is_the_bridge_s(received_at: str, ts: str, stored: bool) -> None:
    accepted, dead = decode_record(record(received_at, ts), NOW, LIMITS)
    assert (len(accepted), len(dead)) == ((1, 0) if stored else (0, 1))


@pytest.mark.parametrize(
    "shared",
    [
        {"received_at": "9999-12-31T23:59:59-01:00"},
        {"received_at": "0001-01-01T00:00:00+01:00"},
        {"location": [1e308, -1e308]},
        {"location": [18446744073709551615, 0]},
        {"location": [None, None]},
        {"sensor_id": "x" * 100_000},
        {"kind": "\u0000"},
        {"readings": [{"ts": RECENT, "values": {"pm25": 18446744073709551615}}]},
        {"readings": [{"ts": RECENT, "values": {"pm25": 1}, "seq": 18446744073709551615}] * 3},
        {"readings": [{"ts": "9999-12-31T23:59:59-01:00", "values": {"pm25": 1}}]},
    ],
)
def test_no_hostile_record_raises_out_of_decode_record(shared: dict[str, object]) -> None:
    hostile = record(RECENT, RECENT, **shared)
    accepted, dead = decode_record(hostile, NOW, LIMITS)
    assert accepted or dead
    assert parts_of(hostile)
    for letter in dead:
        assert letter.to_json()
