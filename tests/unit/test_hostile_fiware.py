"""The real published FIWARE examples with one attribute at a time made hostile: the decoder
names the problem and keeps everything else the entity says, in both NGSI forms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from urbanpulse.core.vocabulary import Rejection
from urbanpulse.ingest.decode import Decoded, DecodeRules, decode_message
from urbanpulse.ingest.fiware import MODELS, TIME_OBSERVED

ROOT = "urbanpulse/v1"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "smart-data-models"
# The examples are from 2016-2018: an age limit of 20 years keeps them readable; their local
# times are Madrid's.
RULES = DecodeRules(max_age=timedelta(days=20 * 366), naive_time_zone=ZoneInfo("Europe/Madrid"))
NOW = datetime(2026, 11, 22, 8, tzinfo=UTC)

HOSTILE: list[Any] = [
    None,
    True,
    "",
    "x" * 100_000,
    "\u202e\x00",
    1.7976931348623157e308,
    -1.7976931348623157e308,
    5e-324,
    2**64 - 1,
    -(2**63),
    [],
    [1, 2, 3] * 400,
    {},
    {"value": None},
    {"value": {"value": {"value": 1}}},
    {"type": "Number", "value": 1e308, "metadata": {"unitCode": {"value": "C62"}}},
    {"type": "Number", "value": 1, "metadata": {"unitCode": {"value": ["GP"]}}},
    {"type": "Number", "value": 1, "metadata": "GP"},
    "9999-12-31T23:59:59-01:00",
    "0001-01-01T00:00:00+01:00",
    "2016-03-15T11:00:00/9999-12-31T23:59:59-23:59",
    {"type": "Point", "coordinates": [1e308, -1e308]},
    {"type": "LineString", "coordinates": [[[[[1, 2]]]]]},
    {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [2**64 - 1, 0]}},
]

EXAMPLES = [
    (model, form)
    for model in sorted(MODELS)
    for form in ("example.json", "example-normalized.json")
    if (FIXTURES / f"{model}.{form}").exists()
]


def decode(kind: str, entity: dict[str, Any]) -> Decoded:
    topic = f"{ROOT}/{kind}/dev-1/data"
    decoded = decode_message(ROOT, topic, orjson.dumps(entity), NOW, RULES)
    assert decoded is not None
    return decoded


def test_every_published_example_is_here() -> None:
    assert len(EXAMPLES) == 8


@pytest.mark.parametrize(("model", "form"), EXAMPLES)
def test_one_hostile_attribute_costs_only_itself(model: str, form: str) -> None:
    kind = MODELS[model].kind
    original = orjson.loads((FIXTURES / f"{model}.{form}").read_bytes())
    # The published WasteContainer example carries no measurement we store: no reading at all.
    references = decode(kind, original).readings
    stated = references[0].values if references else {}
    for name in original:
        if name in ("type", *TIME_OBSERVED):
            continue  # the entity's type and time decide whether there is a reading at all
        mapped = MODELS[model].attributes.get(name)
        for value in HOSTILE:
            decoded = decode(kind, {**original, name: value})
            assert decoded.rejection is not Rejection.CRASH
            others = {
                metric: v
                for metric, v in stated.items()
                if mapped is None or metric != mapped.metric
            }
            if mapped is not None and name == "intensity":
                others = {}  # the count's metric follows vehicleType: checked below
            if not others and not decoded.readings:
                assert decoded.problems, (name, value)
                continue
            [reading] = decoded.readings
            assert others.items() <= reading.values.items(), (name, value)
            assert reading.ts == references[0].ts


@pytest.mark.parametrize(("model", "form"), EXAMPLES)
@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_time_is_that_reading_s_problem(model: str, form: str, value: Any) -> None:
    original = orjson.loads((FIXTURES / f"{model}.{form}").read_bytes())
    entity = {k: v for k, v in original.items() if k not in TIME_OBSERVED}
    entity.setdefault("fillingLevel", 0.5)  # the WasteContainer example states none
    decoded = decode(MODELS[model].kind, {**entity, "dateObserved": value})
    assert decoded.rejection is not Rejection.CRASH
    assert decoded.readings or any(p.startswith("ts: ") for p in decoded.problems), decoded.problems
