"""The decoder at its exact edges, through decode_message: limits are inclusive where the
settings say "at most", and every accepted field arrives exactly as stated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from urbanpulse.ingest.decode import Decoded, DecodeRules, decode_message, parse_topic

ROOT = "urbanpulse/v1"
NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
TOPIC = f"{ROOT}/air/dev-1/data"


def decode(
    payload: Any, topic: str = TOPIC, rules: DecodeRules | None = None, raw: bool = False
) -> Decoded:
    body = payload if raw else orjson.dumps(payload)
    decoded = decode_message(ROOT, topic, body, NOW, rules or DecodeRules())
    assert decoded is not None
    return decoded


def one(item: dict[str, Any], topic: str = TOPIC, rules: DecodeRules | None = None) -> Decoded:
    return decode(item, topic, rules)


def reading(ts: Any = "2026-11-22T07:59:00Z", **values: Any) -> dict[str, Any]:
    return {"ts": ts, "values": values or {"pm25": 12.5}}


# --- size, time and sequence limits ---------------------------------------------------------


def test_a_payload_of_exactly_the_limit_is_read_one_byte_more_is_not() -> None:
    body = orjson.dumps(reading())
    exact = DecodeRules(max_payload_bytes=len(body))
    assert len(decode(body, rules=exact, raw=True).readings) == 1
    smaller = DecodeRules(max_payload_bytes=len(body) - 1)
    refused = decode(body, rules=smaller, raw=True)
    assert refused.readings == []
    assert refused.problems == [
        f"payload of {len(body)} bytes exceeds the limit of {len(body) - 1}"
    ]


@pytest.mark.parametrize(
    ("ts", "accepted"),
    [
        (NOW + timedelta(minutes=5), True),  # max_future_skew 5 min: at most, inclusive
        (NOW + timedelta(minutes=5, microseconds=1), False),
        (NOW - timedelta(days=30), True),  # max_age 30 days: at most, inclusive
        (NOW - timedelta(days=30, microseconds=1), False),
    ],
)
def test_time_limits_are_inclusive(ts: datetime, accepted: bool) -> None:
    decoded = one(reading(ts.isoformat()))
    assert bool(decoded.readings) is accepted
    if accepted:
        assert decoded.readings[0].ts == ts and decoded.problems == []
    else:
        [problem] = decoded.problems
        assert problem.startswith(f"ts: {ts.isoformat()} is ")
        assert ("in the future" in problem) is (ts > NOW)
        assert ("older than 30 days" in problem) is (ts < NOW)


def test_time_limits_follow_the_rules_given() -> None:
    rules = DecodeRules(max_future_skew=timedelta(0), max_age=timedelta(days=2))
    assert one(reading(NOW.isoformat()), rules=rules).readings
    ahead = one(reading((NOW + timedelta(seconds=1)).isoformat()), rules=rules)
    assert ahead.readings == [] and "in the future" in ahead.problems[0]
    old = one(reading((NOW - timedelta(days=2, seconds=1)).isoformat()), rules=rules)
    assert old.readings == [] and "older than 2 days" in old.problems[0]


def test_an_offset_is_converted_to_utc_and_the_receipt_time_kept() -> None:
    [r] = one(reading("2026-11-22T14:30:00+07:00")).readings
    assert r.ts == datetime(2026, 11, 22, 7, 30, tzinfo=UTC) and r.ts.tzinfo is UTC
    assert (r.received_at, r.source, r.sensor_id, r.kind) == (NOW, TOPIC, "dev-1", "air")


def test_epoch_milliseconds_keep_their_milliseconds() -> None:
    ms = int(datetime(2026, 11, 22, 7, 59, 1, 250000, tzinfo=UTC).timestamp() * 1000)
    [r] = one(reading(ms)).readings
    assert r.ts == datetime(2026, 11, 22, 7, 59, 1, 250000, tzinfo=UTC)
    [r] = one(reading(ms + 0.5)).readings  # a float is accepted too
    assert r.ts == datetime(2026, 11, 22, 7, 59, 1, 250500, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seq", "expected"),
    [(0, 0), (2**63 - 1, 2**63 - 1), (None, None)],
)
def test_seq_range_accepted(seq: int | None, expected: int | None) -> None:
    item = reading() | ({"seq": seq} if seq is not None else {})
    decoded = one(item)
    assert decoded.problems == [] and decoded.readings[0].seq == expected


@pytest.mark.parametrize("seq", [-1, 2**63, True, 1.0, "7"])
def test_seq_outside_the_range_is_named_and_the_reading_kept(seq: Any) -> None:
    decoded = one(reading() | {"seq": seq})
    assert [p.split(" is not")[0] for p in decoded.problems] == [f"seq: {seq!r}"]
    assert "is not a non-negative integer" in decoded.problems[0]
    [r] = decoded.readings
    assert r.seq is None


# --- values -------------------------------------------------------------------------------------


def test_values_at_the_range_limits_are_accepted_and_beyond_them_named() -> None:
    # air pm25 is 0..2000 µg/m³ in the catalogue (the sensor's possible range).
    decoded = one(reading(pm25=0, pm10=0.0))
    assert decoded.readings[0].values == {"pm25": 0.0, "pm10": 0.0}
    decoded = one(reading(pm25=-0.001, no2=40))
    assert decoded.readings[0].values == {"no2": 40.0}
    assert decoded.problems == ["values.pm25=-0.001 outside the possible range 0..2000 µg/m³"]


def test_a_stated_unit_is_converted_exactly() -> None:
    item = reading(pm25=0.035, temperature=86.0) | {
        "units": {"pm25": "mg/m3", "temperature": "degF"}
    }
    [r] = one(item).readings
    assert r.values == {"pm25": pytest.approx(35.0, rel=1e-12), "temperature": pytest.approx(30.0)}


def test_units_that_are_not_names_are_refused_but_values_kept_in_canonical_units() -> None:
    decoded = one(reading(pm25=12.0) | {"units": {"pm25": 5}})
    assert decoded.problems == ["units: must be an object of metric -> unit name"]
    assert decoded.readings[0].values == {"pm25": 12.0}
    decoded = one(reading(pm25=12.0) | {"units": ["mg/m3"]})
    assert decoded.problems == ["units: must be an object of metric -> unit name"]
    assert decoded.readings[0].values == {"pm25": 12.0}


def test_integer_metrics_absorb_binary_noise_only() -> None:
    topic = f"{ROOT}/traffic_camera/cam-1/data"
    [r] = one(reading(motorbike=412.0000000001, car=3), topic).readings
    assert r.values == {"motorbike": 412.0, "car": 3.0}
    decoded = one(reading(motorbike=412.001, car=3), topic)
    assert decoded.readings[0].values == {"car": 3.0}
    assert decoded.problems == ["values.motorbike=412.001 must be a whole number"]


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        (b"{}", "values: no metric given"),
        (b'{"pm25": true}', "values.pm25: True is not a number"),
        (b'{"pm25": null}', "values.pm25: None is not a number"),
        (b"[1]", "values: must be an object of metric -> number, got [1]"),
    ],
)
def test_no_reading_without_a_good_value(values: bytes, problem: str) -> None:
    payload = b'{"ts": "2026-11-22T07:59:00Z", "values": ' + values + b"}"
    decoded = decode(payload, raw=True)
    assert decoded.readings == [] and decoded.problems == [problem]


# --- location -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ({"type": "Point", "coordinates": [-180, -90]}, (-180.0, -90.0)),
        ({"type": "Point", "coordinates": [180, 90, 12.5]}, (180.0, 90.0)),  # altitude ignored
        ({"type": "LineString", "coordinates": [[1, 2], [3, 4], [5, 6]]}, (3.0, 4.0)),
        ({"type": "LineString", "coordinates": [[1, 2], [3, 4]]}, (3.0, 4.0)),
        ({"type": "LineString", "coordinates": [[1, 2]]}, (1.0, 2.0)),
    ],
)
def test_locations_at_the_limits_and_road_segments(
    location: dict[str, Any], expected: tuple[float, float]
) -> None:
    decoded = one(reading() | {"location": location})
    assert decoded.problems == []
    assert decoded.readings[0].location == expected


@pytest.mark.parametrize(
    "location",
    [
        {"type": "Point", "coordinates": [180.0001, 0]},
        {"type": "Point", "coordinates": [-180.0001, 0]},
        {"type": "Point", "coordinates": [0, 90.0001]},
        {"type": "Point", "coordinates": [0, -90.0001]},
        {"type": "Point", "coordinates": [1]},
        {"type": "Point", "coordinates": [True, 1]},
        {"type": "Point", "coordinates": [1, "2"]},
        {"type": "Point", "coordinates": "1,2"},
        {"type": "LineString", "coordinates": []},
    ],
)
def test_bad_coordinates_are_named_and_the_reading_kept(location: dict[str, Any]) -> None:
    decoded = one(reading() | {"location": location})
    [problem] = decoded.problems
    assert problem.startswith("location: coordinates ")
    assert problem.endswith("are not WGS 84 lon, lat")
    [r] = decoded.readings
    assert r.location is None


@pytest.mark.parametrize("location", [{"type": "Polygon", "coordinates": []}, [106.7, 10.8]])
def test_a_location_that_is_not_a_point_or_line_is_named(location: Any) -> None:
    decoded = one(reading() | {"location": location})
    [problem] = decoded.problems
    assert problem.startswith("location: ") and "is not a GeoJSON Point or LineString" in problem
    assert decoded.readings[0].location is None


# --- batches and topics --------------------------------------------------------------------------


def test_a_batch_labels_problems_by_index_and_collects_ignored_attributes() -> None:
    decoded = decode([reading(pm25=1.0), 5, reading(pm25=-1.0), reading(pm25=3.0)])
    assert [r.values["pm25"] for r in decoded.readings] == [1.0, 3.0]
    assert decoded.problems == [
        "[1] reading must be a JSON object, got int",
        "[2] values.pm25=-1.0 outside the possible range 0..2000 µg/m³",
    ]


def test_a_single_item_is_not_labelled() -> None:
    assert decode(5).problems == ["reading must be a JSON object, got int"]


@pytest.mark.parametrize(
    ("topic", "address"),
    [
        (f"{ROOT}/air/dev-1/data", ("air", "dev-1", "data")),
        (f"{ROOT}/water/w.2_x/status", ("water", "w.2_x", "status")),
    ],
)
def test_topics_parse_into_their_address(topic: str, address: tuple[str, str, str]) -> None:
    parsed = parse_topic(ROOT + "/", topic)  # a trailing slash on the root is tolerated
    assert not isinstance(parsed, str)
    assert (parsed.kind, parsed.sensor_id, parsed.channel) == address


def test_only_slashes_are_trimmed_from_the_root() -> None:
    # A root ending in a letter keeps it: "cityX/" is the prefix, not "city/".
    for root in ("cityX", "cityX/", "cityX//"):
        parsed = parse_topic(root, "cityX/air/dev-1/data")
        assert not isinstance(parsed, str), parsed
        assert (parsed.kind, parsed.sensor_id, parsed.channel) == ("air", "dev-1", "data")
    outside = parse_topic("cityX", "city/air/dev-1/data")
    assert isinstance(outside, str) and "is outside cityX/" in outside


@pytest.mark.parametrize(
    ("topic", "fragment"),
    [
        ("other/air/dev-1/data", "is outside urbanpulse/v1/; expected urbanpulse/v1/<kind>/"),
        (f"{ROOT}/air/dev-1", "has 2 levels after the root"),
        (f"{ROOT}/air/dev-1/data/x", "has 4 levels after the root"),
        (f"{ROOT}/noise/dev-1/data", "unknown kind 'noise' (known: air, water"),
        (f"{ROOT}/air/dev 1/data", "invalid sensor id 'dev 1'"),
        (f"{ROOT}/air/dev-1/config", "unknown channel 'config'"),
    ],
)
def test_wrong_topics_say_what_is_wrong(topic: str, fragment: str) -> None:
    parsed = parse_topic(ROOT, topic)
    assert isinstance(parsed, str) and fragment in parsed
    decoded = decode_message(ROOT, topic, b"{}", NOW, DecodeRules())
    assert decoded is not None and decoded.problems == [parsed] and decoded.readings == []


# --- messages in full, and the next field or item still read ------------------------------------


def test_an_empty_batch_and_a_missing_ts_say_so() -> None:
    assert decode([]).problems == ["empty batch: the array holds no readings"]
    missing = one({"values": {"pm25": 1.0}})
    assert missing.problems == ["ts: missing (ISO 8601 with offset, or epoch milliseconds)"]


def test_a_configured_zone_applies_only_to_timestamps_without_an_offset() -> None:
    from zoneinfo import ZoneInfo

    rules = DecodeRules(naive_time_zone=ZoneInfo("Asia/Ho_Chi_Minh"))
    [naive] = one(reading("2026-11-22T14:30:00"), rules=rules).readings
    [stated] = one(reading("2026-11-22T07:30:00+00:00"), rules=rules).readings
    assert naive.ts == stated.ts == datetime(2026, 11, 22, 7, 30, tzinfo=UTC)


def test_after_a_bad_value_the_next_one_is_still_read() -> None:
    decoded = one(reading(radon=1.0, pm25="x", so2=-1.0, pm10=5.0))
    assert decoded.readings[0].values == {"pm10": 5.0}
    assert decoded.problems == [
        "values.radon: unknown metric for kind 'air' "
        "(known: pm25, pm10, no2, o3, so2, co, temperature, humidity)",
        "values.pm25: 'x' is not a number",
        "values.so2=-1.0 outside the possible range 0..10000 µg/m³",
    ]


def test_only_the_first_two_coordinates_are_checked() -> None:
    location = {"type": "Point", "coordinates": [106.7, 10.8, "2 m"]}
    decoded = one(reading() | {"location": location})
    assert decoded.problems == [] and decoded.readings[0].location == (106.7, 10.8)


def test_the_noise_allowed_on_whole_numbers_is_below_one_billionth() -> None:
    topic = f"{ROOT}/traffic_camera/cam-1/data"
    decoded = one(reading(motorbike=1e-9, car=3), topic)  # 1e-9 away from 0: not noise
    assert decoded.problems == ["values.motorbike=1e-09 must be a whole number"]
    [r] = one(reading(motorbike=0.9e-9, car=3), topic).readings
    assert r.values == {"motorbike": 0.0, "car": 3.0}
