"""The MQTT decoder: every kind of bad input gets a precise reason; good parts are kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from urbanpulse.core.metrics import Metrics
from urbanpulse.core.settings import Settings
from urbanpulse.core.vocabulary import Rejection
from urbanpulse.ingest.decode import (
    Decoded,
    DecodeRules,
    TopicAddress,
    decode_message,
    parse_topic,
)
from urbanpulse.ingest.mqtt_source import IncomingMessage
from urbanpulse.ingest.records import BridgeCounters, RecordMaker

ROOT = "urbanpulse/v1"
TOPIC = f"{ROOT}/air/hcm-air-0001/data"
NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
RULES = DecodeRules()


def decode(payload: object, topic: str = TOPIC, rules: DecodeRules = RULES) -> Decoded:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    decoded = decode_message(ROOT, topic, raw, NOW, rules)
    assert decoded is not None
    return decoded


def test_single_reading_is_decoded_in_canonical_form() -> None:
    decoded = decode({"ts": "2026-11-22T14:59:00+07:00", "values": {"pm25": 35.2}, "seq": 7})
    assert decoded.problems == []
    [reading] = decoded.readings
    assert reading.sensor_id == "hcm-air-0001"
    assert reading.kind == "air"
    assert reading.ts == datetime(2026, 11, 22, 7, 59, tzinfo=UTC)
    assert reading.values == {"pm25": 35.2}
    assert reading.seq == 7
    assert reading.received_at == NOW
    assert reading.source == TOPIC


def test_epoch_milliseconds_and_batched_arrays() -> None:
    epoch_ms = int((NOW - timedelta(minutes=1)).timestamp() * 1000)
    decoded = decode(
        [{"ts": epoch_ms, "values": {"pm25": 1}}, {"ts": epoch_ms + 1000, "values": {"no2": 2}}]
    )
    assert decoded.problems == []
    assert [r.ts for r in decoded.readings] == [
        NOW - timedelta(minutes=1),
        NOW - timedelta(seconds=59),
    ]


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"values": {"pm25": 1}}, "ts: missing"),
        ({"ts": "yesterday", "values": {"pm25": 1}}, "is not an ISO 8601 timestamp"),
        ({"ts": "2026-11-22T07:00:00", "values": {"pm25": 1}}, "has no UTC offset"),
        ({"ts": True, "values": {"pm25": 1}}, "neither an ISO 8601 string nor epoch"),
        ({"ts": "2026-11-22T09:00:00Z", "values": {"pm25": 1}}, "is in the future"),
        ({"ts": "2020-01-01T00:00:00Z", "values": {"pm25": 1}}, "older than 30 days"),
        ({"ts": 1e300, "values": {"pm25": 1}}, "not a plausible epoch-milliseconds"),
        ({"ts": -62_200_000_000_000, "values": {"pm25": 1}}, "not a plausible epoch-milliseconds"),
        ({"ts": "2026-11-22T07:00:00Z"}, "values: must be an object"),
        ({"ts": "2026-11-22T07:00:00Z", "values": {}}, "values: no metric given"),
        (
            {"ts": "2026-11-22T07:00:00Z", "values": {"pm25": "high"}},
            "values.pm25: 'high' is not a number",
        ),
        (
            {"ts": "2026-11-22T07:00:00Z", "values": {"pm25": True}},
            "values.pm25: True is not a number",
        ),
        (
            {"ts": "2026-11-22T07:00:00Z", "values": {"pm25": -3}},
            "pm25=-3.0 outside the possible range 0..2000",
        ),
        (
            {"ts": "2026-11-22T07:00:00Z", "values": {"radon": 3}},
            "values.radon: unknown metric for kind 'air'",
        ),
        (
            {"ts": "2026-11-22T07:00:00Z", "values": {"pm25": 1}, "seq": -1},
            "seq: -1 is not a non-negative",
        ),
    ],
)
def test_each_bad_field_is_named(item: dict[str, object], expected: str) -> None:
    decoded = decode(item)
    assert any(expected in problem for problem in decoded.problems), decoded.problems


def test_one_bad_field_keeps_the_good_ones() -> None:
    decoded = decode({"ts": "2026-11-22T07:00:00Z", "values": {"pm25": 12, "no2": "x", "o3": 9e9}})
    assert [r.values for r in decoded.readings] == [{"pm25": 12.0}]
    assert len(decoded.problems) == 2


def test_bad_item_in_a_batch_is_labelled_with_its_index_and_others_kept() -> None:
    decoded = decode([{"ts": "2026-11-22T07:00:00Z", "values": {"pm25": 1}}, "nonsense"])
    assert len(decoded.readings) == 1
    assert decoded.problems == ["[1] reading must be a JSON object, got str"]


@pytest.mark.parametrize("ts", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_a_time_with_no_utc_date_is_a_problem_of_its_reading_only(ts: str) -> None:
    # Both are valid ISO 8601, but in UTC they fall after 9999 or before year 1: converting
    # them raised OverflowError, which turned the whole message into a "crash" dead letter.
    good = {"ts": "2026-11-22T07:00:00Z", "values": {"pm25": 1}}
    decoded = decode([good, {"ts": ts, "values": {"pm25": 2}}])
    assert [r.values for r in decoded.readings] == [{"pm25": 1.0}]
    [problem] = decoded.problems
    assert problem.startswith("[1] ts: ") and "outside the years 1 to 9999 in UTC" in problem


def test_integer_metrics_refuse_fractions() -> None:
    topic = f"{ROOT}/traffic_camera/cam-1/data"
    decoded = decode({"ts": "2026-11-22T07:00:00Z", "values": {"motorbike": 3.5}}, topic)
    assert decoded.problems == ["values.motorbike=3.5 must be a whole number"]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"{not json", "malformed JSON"),
        (b"", "malformed JSON"),
        (b"NaN", "malformed JSON"),
        (b'{"ts": "2026-11-22T07:00:00Z", "values": {"pm25": 1e400}}', "malformed JSON"),
        (b"[]", "empty batch"),
        (b'"just a string"', "reading must be a JSON object"),
    ],
)
def test_malformed_payloads(payload: bytes, expected: str) -> None:
    decoded = decode(payload)
    assert decoded.readings == []
    assert expected in decoded.problems[0]


def test_oversized_payload_is_refused_before_parsing() -> None:
    decoded = decode(b"x" * 101, rules=DecodeRules(max_payload_bytes=100))
    assert decoded.problems == ["payload of 101 bytes exceeds the limit of 100"]


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("other/air/x/data", "is outside urbanpulse/v1/"),
        (f"{ROOT}/air/x", "has 2 levels"),
        (f"{ROOT}/noise/x/data", "unknown kind 'noise'"),
        (f"{ROOT}/air/bad id!/data", "invalid sensor id"),
        (f"{ROOT}/air/x/config", "unknown channel 'config'"),
    ],
)
def test_wrong_topics(topic: str, expected: str) -> None:
    address = parse_topic(ROOT, topic)
    assert isinstance(address, str) and expected in address


def test_status_messages_are_not_readings() -> None:
    assert parse_topic(ROOT, f"{ROOT}/air/x/status") == TopicAddress("air", "x", "status")
    assert decode_message(ROOT, f"{ROOT}/air/x/status", b"online", NOW, RULES) is None


@given(st.binary(max_size=512))
def test_no_byte_string_crashes_the_decoder(payload: bytes) -> None:
    decoded = decode(payload)
    assert decoded.readings or decoded.problems


# orjson (and JSON in practice) holds integers within 64 bits.
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
metric_names = st.sampled_from(["pm25", "no2", "motorbike", "radon", ""])
json_values = (
    scalars
    | st.lists(scalars, max_size=3)
    | st.dictionaries(metric_names, scalars | st.lists(scalars, max_size=2), max_size=4)
)


@given(st.dictionaries(st.sampled_from(["ts", "values", "seq", "other"]), json_values, max_size=4))
def test_no_json_document_crashes_the_decoder(document: dict[str, object]) -> None:
    decoded = decode(document)
    assert decoded.readings or decoded.problems


@pytest.mark.parametrize(
    ("units", "values", "expected"),
    [
        ({"co": "mg/m3"}, {"co": 1.2}, {"co": 1200.0}),
        ({"co": "mg/m³"}, {"co": 1.2}, {"co": 1200.0}),
        ({"pm25": "μg/m3"}, {"pm25": 12.0}, {"pm25": 12.0}),
        ({"temperature": "degF"}, {"temperature": 86.0}, {"temperature": 30.0}),
        ({"humidity": "fraction"}, {"humidity": 0.81}, {"humidity": 81.0}),
    ],
)
def test_stated_units_are_converted_to_canonical_ones(
    units: dict[str, str], values: dict[str, float], expected: dict[str, float]
) -> None:
    decoded = decode({"ts": "2026-11-22T07:00:00Z", "values": values, "units": units})
    assert decoded.problems == []
    assert decoded.readings[0].values == pytest.approx(expected)


def test_an_unconvertible_unit_names_the_accepted_ones() -> None:
    decoded = decode(
        {"ts": "2026-11-22T07:00:00Z", "values": {"no2": 20, "o3": 5}, "units": {"no2": "ppb"}}
    )
    assert decoded.readings[0].values == {"o3": 5.0}
    assert decoded.problems == [
        "values.no2: unit 'ppb' is not accepted for no2 (accepted: µg/m³, ug/m3, gq, mg/m3, gp)"
    ]


def test_location_is_carried_and_a_bad_one_is_named_without_losing_the_reading() -> None:
    good = decode(
        {
            "ts": "2026-11-22T07:00:00Z",
            "values": {"pm25": 5},
            "location": {"type": "Point", "coordinates": [106.70, 10.78]},
        }
    )
    assert good.readings[0].location == (106.70, 10.78)
    bad = decode(
        {
            "ts": "2026-11-22T07:00:00Z",
            "values": {"pm25": 5},
            "location": {"type": "Point", "coordinates": [10.78, 196.7]},
        }
    )
    assert len(bad.readings) == 1 and bad.readings[0].location is None
    assert bad.problems == ["location: coordinates [10.78, 196.7] are not WGS 84 lon, lat"]


def test_naive_timestamps_follow_the_configured_zone() -> None:
    from zoneinfo import ZoneInfo

    payload = {"ts": "2026-11-22T14:00:00", "values": {"pm25": 5}}
    assert "has no UTC offset" in decode(payload).problems[0]
    local = decode(payload, rules=DecodeRules(naive_time_zone=ZoneInfo("Asia/Ho_Chi_Minh")))
    assert local.readings[0].ts == datetime(2026, 11, 22, 7, 0, tzinfo=UTC)


def nested(depth: int, inner: bytes = b"1") -> bytes:
    return b"[" * depth + inner + b"]" * depth


def test_an_array_over_the_length_limit_is_refused_whole() -> None:
    item = {"ts": "2026-11-22T07:00:00Z", "values": {"pm25": 1}}
    assert len(decode([item] * 1000).readings) == 1000
    decoded = decode([item] * 1001)
    assert decoded.readings == []
    assert decoded.rejection is Rejection.TOO_MANY
    assert decoded.problems == [
        "array of 1001 readings exceeds the limit of 1000 per message; send smaller batches"
    ]


def test_a_hundred_thousand_item_array_under_the_byte_limit_is_refused_by_length() -> None:
    payload = b"[" + b",".join([b"0"] * 100_000) + b"]"
    assert len(payload) < RULES.max_payload_bytes
    decoded = decode(payload)
    assert decoded.rejection is Rejection.TOO_MANY
    assert decoded.problems == [
        "array of 100000 readings exceeds the limit of 1000 per message; send smaller batches"
    ]


@pytest.mark.parametrize("depth", [17, 1023, 1024])
def test_nesting_over_the_depth_limit_is_refused(depth: int) -> None:
    decoded = decode(nested(depth))
    assert decoded.rejection is Rejection.TOO_DEEP
    assert decoded.problems == ["JSON nests deeper than the limit of 16 levels"]


GOOD_ITEM = b'{"ts": "2026-11-22T07:59:00Z", "values": {"pm25": 1}, "note": "[[{{"}'


@pytest.mark.parametrize(("levels", "too_deep"), [(15, True), (14, False)])
@pytest.mark.parametrize("where", [0, 10, 20])
def test_one_deep_item_among_many_shallow_ones_is_found_wherever_it_is(
    levels: int, too_deep: bool, where: int
) -> None:
    """[ {"extra": [[...]]} ]: 2 + levels nest in all (the limit is 16); brackets in strings
    and the shallow items' many brackets neither hide it nor make a shallow batch too deep."""
    deep = b'{"ts": "2026-11-22T07:59:00Z", "values": {"pm25": 1}, "extra": ' + nested(levels)
    items = [GOOD_ITEM] * 20
    items.insert(where, deep + b"}")
    decoded = decode(b"[" + b",".join(items) + b"]")
    assert (decoded.rejection is Rejection.TOO_DEEP) is too_deep
    assert len(decoded.readings) == (0 if too_deep else 21)


def test_nesting_beyond_the_parsers_own_limit_is_malformed_json() -> None:
    decoded = decode(nested(1025))  # orjson refuses more than 1024 levels
    assert decoded.rejection is Rejection.MALFORMED
    assert decoded.problems[0].startswith("malformed JSON: ")


def test_nesting_at_the_limit_is_examined_item_by_item() -> None:
    # [ {"ts": [[...]]} ]: 16 levels in all, so each field is checked and named.
    deep_ts = b'[{"ts": ' + nested(13) + b', "values": {"pm25": 1}}]'
    decoded = decode(deep_ts)
    assert decoded.rejection is Rejection.INVALID
    assert decoded.problems == [
        "[0] ts: [[[[[[[[[[[[[1]]]]]]]]]]]]] is neither an ISO 8601 string nor epoch milliseconds"
    ]


@pytest.mark.parametrize(
    "field",
    ["ts", "values", "seq", "location", "units"],
)
def test_deep_values_in_any_field_are_named_without_recursion(field: str) -> None:
    """A value nested 1000 deep made ``repr`` raise RecursionError and crash the bridge."""
    item = {"ts": "2026-11-22T07:00:00Z", "values": {"pm25": 1}}
    payload = orjson.dumps({**item, field: "DEEP"}).replace(b'"DEEP"', nested(1000))
    rules = DecodeRules(max_depth=1024)  # let the depth through to the field checks
    decoded = decode(payload, rules=rules)
    assert decoded.problems, field
    assert all(len(problem) < 200 for problem in decoded.problems), decoded.problems


def test_huge_and_control_character_values_make_short_readable_problems() -> None:
    decoded = decode(
        {
            "ts": "\x00" * 100_000,
            "values": {"pm25": "x" * 100_000, "\x01" * 100_000: 1},
            "units": {"pm25": "u" * 100_000},
        },
        rules=DecodeRules(max_payload_bytes=2_000_000),
    )
    assert len(decoded.problems) == 3
    assert all(len(problem) < 250 for problem in decoded.problems), decoded.problems
    assert all("\x00" not in p and "\x01" not in p for p in decoded.problems)
    bad_topic = decode_message(ROOT, f"{ROOT}/air/{'x' * 60_000}/data", b"{}", NOW, RULES)
    assert bad_topic is not None and bad_topic.rejection is Rejection.TOPIC
    assert len(bad_topic.problems[0]) < 300


# Any JSON document at all, nested up to well past the depth limit.
any_json = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=6) | metric_names, children, max_size=4)
    ),
    max_leaves=60,
)
readingish = st.fixed_dictionaries(
    {},
    optional={
        "ts": any_json | st.just("2026-11-22T07:00:00Z"),
        "values": any_json | st.dictionaries(metric_names, any_json, max_size=3),
        "seq": any_json,
        "units": any_json,
        "location": any_json,
        "type": st.sampled_from(["AirQualityObserved", "WaterQualityObserved", "x"]),
        "pm25": any_json,
        "dateObserved": any_json,
    },
)


# Values inside valid formats that are still hostile: times with no UTC date or at the
# datetime range's edges, numbers at the float and 64-bit limits, odd units and geometries.
extreme_numbers = st.sampled_from(
    [1.7976931348623157e308, -1.7976931348623157e308, 5e-324, 2**63 - 1, -(2**63), 2**64 - 1]
)
iso_times = st.builds(
    lambda day, clock, offset: f"{day}T{clock}{offset}",
    st.sampled_from(["0001-01-01", "9999-12-31", "2026-11-22"]),
    st.sampled_from(["00:00:00", "23:59:59.999999", "24:00:00"]),
    st.sampled_from(["-01:00", "+01:00", "Z", "-23:59", ""]),
)
hostile_times = (
    iso_times
    | st.builds(lambda a, b: f"{a}/{b}", iso_times, iso_times)  # FIWARE intervals
    | extreme_numbers
    | st.text(max_size=12)
    | any_json
)
unit_codes = (
    st.sampled_from(["GP", "GQ", "C62", "FAH", "KEL", "MTS", "P1", "", "x" * 300]) | any_json
)
coordinates = st.lists(
    extreme_numbers | scalars | st.lists(extreme_numbers, max_size=3), max_size=4
)
geometries = st.fixed_dictionaries(
    {"type": st.sampled_from(["Point", "LineString", "Polygon"]), "coordinates": coordinates}
) | st.fixed_dictionaries(
    {"type": st.just("LineString"), "coordinates": st.lists(coordinates, max_size=5)}
)
hostile_values = extreme_numbers | scalars | any_json


def _normalized(value: object, unit: object) -> dict[str, object]:
    return {"type": "Number", "value": value, "metadata": {"unitCode": {"value": unit}}}


FIWARE_TYPES = {  # model -> the topic of its kind, and attributes it maps
    "AirQualityObserved": ("air", ["pm25", "co", "temperature", "relativeHumidity"]),
    "WaterQualityObserved": ("water", ["pH", "conductivity", "NH4", "PO4"]),
    "WasteContainer": ("waste_bin", ["fillingLevel", "temperature"]),
    "TrafficFlowObserved": ("traffic_camera", ["intensity", "occupancy", "averageVehicleSpeed"]),
}


@st.composite
def hostile_entities(draw: st.DrawFn) -> tuple[str, dict[str, object]]:
    """A FIWARE entity, key-values or normalized, with hostile times, values, units, places."""
    model = draw(st.sampled_from(sorted(FIWARE_TYPES)))
    kind, attributes = FIWARE_TYPES[model]
    entity: dict[str, object] = {"id": draw(st.text(max_size=5)), "type": model}
    time = draw(hostile_times)
    entity["dateObserved"] = draw(st.sampled_from([time, {"type": "DateTime", "value": time}]))
    for name in draw(st.lists(st.sampled_from(attributes), max_size=4)):
        value = draw(hostile_values)
        entity[name] = draw(st.sampled_from([value, _normalized(value, draw(unit_codes))]))
    if draw(st.booleans()):
        place = draw(geometries | any_json)
        entity["location"] = draw(st.sampled_from([place, {"type": "GeoProperty", "value": place}]))
    if kind == "traffic_camera" and draw(st.booleans()):
        entity["vehicleType"] = draw(st.sampled_from(["Car", "BUS", "", "x" * 300]) | any_json)
    return kind, entity


hostile_readings = st.fixed_dictionaries(
    {"ts": hostile_times, "values": st.dictionaries(metric_names, hostile_values, max_size=3)},
    optional={
        "seq": extreme_numbers | scalars,
        "units": st.dictionaries(metric_names, unit_codes, max_size=2),
        "location": geometries | any_json,
    },
)


@given(any_json | readingish | st.lists(readingish, max_size=5))
def test_no_json_document_of_any_shape_crashes_the_decoder(document: object) -> None:
    decoded = decode(document)
    assert decoded.readings or decoded.problems


@given(
    st.lists(hostile_entities(), min_size=1, max_size=4) | st.lists(hostile_readings, max_size=4)
)
def test_no_hostile_value_in_a_valid_format_is_classed_a_crash(items: list[object]) -> None:
    """Through the bridge's record maker, whose crash handler would otherwise hide an exception
    as a "crash" dead letter of the whole message (good siblings included)."""
    entities = [i for i in items if isinstance(i, tuple)]
    kind = entities[0][0] if entities else "air"
    payload = orjson.dumps([e for _, e in entities] if entities else items)
    topic = f"{ROOT}/{kind}/hcm-{kind}-0001/data"
    counters = BridgeCounters(Metrics())
    RecordMaker(Settings(), counters).records(IncomingMessage(topic, payload, 1, 1, NOW))
    assert counters.rejected_crash == 0
    decoded = decode(payload, topic)
    assert decoded.rejection is not Rejection.CRASH
    # Every item is either a reading or named in a problem.
    assert len(decoded.readings) + len(decoded.problems) >= 1


@given(st.integers(1, 1100), st.sampled_from([b"1", b'{"a": 1}', b'"\\u0000"', b""]))
def test_no_depth_of_nesting_crashes_the_decoder(depth: int, inner: bytes) -> None:
    decoded = decode(nested(depth, inner))
    assert decoded.problems
