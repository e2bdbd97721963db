"""Ids are checked against their whole pattern: ``re.match`` with ``$`` lets a trailing newline
through (``$`` also matches just before a final ``\\n``), so every id check must full-match.

Each case goes through the real entry point that receives the id (MQTT topic, registry file,
area file, rule file, API path) with the id once clean (accepted) and once with ``\\n`` appended.
The API's request bodies check sensor ids with pydantic ``pattern``s, which search: those (and the
OpenAPI schema made from them) carry the anchored form of the pattern.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from urbanpulse.alerts.rules import RulesError, parse_rules
from urbanpulse.api.errors import ApiError
from urbanpulse.api.routers.gateways import GatewayBind
from urbanpulse.api.routers.sensors import SensorCreate, _check_sensor_id
from urbanpulse.core.areas import AreaFileError, areas_from_geojson
from urbanpulse.ingest.decode import TopicAddress, parse_topic
from urbanpulse.storage.registry import RegistryFileError, sensors_from_geojson

NEWLINE = "\n"


def test_a_topic_with_a_trailing_newline_in_its_sensor_id_is_refused() -> None:
    assert isinstance(parse_topic("urbanpulse/v1", "urbanpulse/v1/air/hcm-01/data"), TopicAddress)
    refused = parse_topic("urbanpulse/v1", f"urbanpulse/v1/air/hcm-01{NEWLINE}/data")
    assert isinstance(refused, str) and "invalid sensor id" in refused


def _sensor_file(sensor_id: str) -> dict[str, Any]:
    feature = {
        "type": "Feature",
        "properties": {"sensor_id": sensor_id, "kind": "air"},
        "geometry": {"type": "Point", "coordinates": [106.7, 10.8]},
    }
    return {"type": "FeatureCollection", "features": [feature]}


def test_a_registry_file_with_a_trailing_newline_in_a_sensor_id_is_refused() -> None:
    assert sensors_from_geojson(_sensor_file("hcm-01"))[0].sensor_id == "hcm-01"
    with pytest.raises(RegistryFileError, match="invalid or missing sensor_id"):
        sensors_from_geojson(_sensor_file("hcm-01" + NEWLINE))


def _area_file(area_id: str, parent_id: str | None = None) -> dict[str, Any]:
    ring = [[106.7, 10.7], [106.71, 10.7], [106.71, 10.71], [106.7, 10.71], [106.7, 10.7]]
    properties: dict[str, Any] = {"area_id": area_id, "name": "Phường Một", "level": "ward"}
    if parent_id is not None:
        properties["parent_id"] = parent_id
    feature = {
        "type": "Feature",
        "properties": properties,
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }
    return {"type": "FeatureCollection", "features": [feature]}


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (_area_file("vn-x" + NEWLINE), "invalid or missing area_id"),
        (_area_file("vn-x", parent_id="vn" + NEWLINE), "invalid parent_id"),
    ],
)
def test_an_area_file_with_a_trailing_newline_in_an_id_is_refused(
    document: dict[str, Any], problem: str
) -> None:
    assert areas_from_geojson(_area_file("vn-x"))[0].area_id == "vn-x"
    with pytest.raises(AreaFileError, match=problem):
        areas_from_geojson(document)


def _rule_file(rule_id: str) -> str:
    # Double-quoted YAML: "\n" in the text is a newline in the id.
    return (
        "version: 1\nrules:\n"
        f'  - id: "{rule_id}"\n'
        "    kind: waste_bin\n    metric: temperature\n    above: 60\n"
        '    severity: critical\n    citation: "test"\n'
    )


def test_a_rule_id_with_a_trailing_newline_is_refused() -> None:
    assert [rule.id for rule in parse_rules(_rule_file("bin-hot"), "rules.yaml")] == ["bin-hot"]
    with pytest.raises(RulesError) as caught:
        parse_rules(_rule_file("bin-hot\\n"), "rules.yaml")
    assert any("id:" in problem for problem in caught.value.problems)


def test_the_api_refuses_a_sensor_id_with_a_trailing_newline() -> None:
    _check_sensor_id("hcm-01")
    with pytest.raises(ApiError) as caught:
        _check_sensor_id("hcm-01" + NEWLINE)
    assert caught.value.status_code == 422


BAD_IDS = ["hcm-01" + NEWLINE, "hcm 01", "hcm/01", "-hcm-01", "hcm-01+", "x" * 65, ""]


def _body_with(model: type[BaseModel], sensor_id: str) -> BaseModel:
    if model is GatewayBind:
        return GatewayBind.model_validate({"sensor_ids": [sensor_id]})
    return SensorCreate.model_validate({"sensor_id": sensor_id, "kind": "air"})


@pytest.mark.parametrize("model", [SensorCreate, GatewayBind])
def test_the_apis_request_bodies_refuse_a_sensor_id_with_anything_around_it(
    model: type[BaseModel],
) -> None:
    _body_with(model, "hcm-01")
    _body_with(model, "a" * 64)
    for bad in BAD_IDS:
        with pytest.raises(ValidationError):
            _body_with(model, bad)


def test_the_openapi_sensor_id_pattern_refuses_extra_characters_when_searched() -> None:
    # JSON Schema patterns are searched for in the value (ECMA-262), hence anchored ones.
    schemas = [
        SensorCreate.model_json_schema()["properties"]["sensor_id"],
        GatewayBind.model_json_schema()["properties"]["sensor_ids"]["items"],
    ]
    for schema in schemas:
        assert re.search(schema["pattern"], "hcm-01")
        for extra in ("hcm 01", "hcm/01", "x" * 65):
            assert re.search(schema["pattern"], extra) is None, extra
