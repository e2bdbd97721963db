"""Hostile MQTT topics as a gateway may publish them: each is a TOPIC dead letter with a short,
printable reason that names the level at fault, never an exception or a reading."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from urbanpulse.core.vocabulary import Rejection
from urbanpulse.ingest.decode import DecodeRules, decode_message, parse_topic

ROOT = "urbanpulse/v1"
NOW = datetime(2026, 11, 22, 8, tzinfo=UTC)
GOOD_PAYLOAD = b'{"ts": "2026-11-22T07:00:00Z", "values": {"pm25": 12.5}}'


@pytest.mark.parametrize(
    ("topic", "named"),
    [
        (f"{ROOT}/air/+/data", "invalid sensor id '+'"),  # wildcards are not names
        (f"{ROOT}/air/#/data", "invalid sensor id '#'"),
        (f"{ROOT}/+/s1/data", "unknown kind '+'"),
        (f"{ROOT}/air/s1/#", "unknown channel '#'"),
        (f"{ROOT}/air//data", "invalid sensor id ''"),  # an empty level
        (f"{ROOT}//s1/data", "unknown kind ''"),
        (f"{ROOT}/air/s1/data/", "has 4 levels"),
        (f"/{ROOT}/air/s1/data", "is outside urbanpulse/v1/"),
        (ROOT, "is outside urbanpulse/v1/"),
        ("", "is outside urbanpulse/v1/"),
        (f"{ROOT}/AIR/s1/data", "unknown kind 'AIR'"),
        (f"{ROOT}/air/s1/DATA", "unknown channel 'DATA'"),
        # Look-alikes and invisible characters are not the ASCII sensor id they resemble.
        (f"{ROOT}/air/\uff531/data", "invalid sensor id"),  # fullwidth s
        (f"{ROOT}/air/s\u0661/data", "invalid sensor id"),  # Arabic-Indic digit one
        (f"{ROOT}/air/s1\ufeff/data", "invalid sensor id 's1\\ufeff'"),  # byte-order mark
        (f"{ROOT}/air/s\u202e1/data", "invalid sensor id 's\\u202e1'"),  # right-to-left override
        (f"{ROOT}/air/s1\n/data", "invalid sensor id 's1\\n'"),
        (f"{ROOT}/air/s1\x00/data", "invalid sensor id 's1\\x00'"),
        (f"{ROOT}/air/{'x' * 65}/data", "invalid sensor id"),  # one above the 64 allowed
        (f"{ROOT}/air/{'x' * 65_000}/data", "invalid sensor id"),
        ("/".join([ROOT, *["x"] * 20_000]), "has 20000 levels"),
    ],
)
def test_a_hostile_topic_is_a_topic_dead_letter_naming_its_fault(topic: str, named: str) -> None:
    decoded = decode_message(ROOT, topic, GOOD_PAYLOAD, NOW, DecodeRules())
    assert decoded is not None and decoded.rejection is Rejection.TOPIC
    assert decoded.readings == []
    [reason] = decoded.problems
    assert named in reason
    assert len(reason) < 400 and reason.isprintable(), reason


def test_the_longest_sensor_id_still_is_one() -> None:
    topic = f"{ROOT}/air/{'x' * 64}/data"
    decoded = decode_message(ROOT, topic, GOOD_PAYLOAD, NOW, DecodeRules())
    assert decoded is not None and decoded.problems == [] and len(decoded.readings) == 1


@given(st.lists(st.text(max_size=70), min_size=0, max_size=6))
def test_no_topic_of_any_levels_raises(levels: list[str]) -> None:
    topic = "/".join([ROOT, *levels])
    address = parse_topic(ROOT, topic)
    if isinstance(address, str):
        assert len(address) < 600 and address.isprintable()
    else:
        assert "/".join([ROOT, address.kind, address.sensor_id, address.channel]) == topic
