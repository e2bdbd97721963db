"""Ids are checked against their whole pattern: ``re.match`` with ``$`` lets a trailing newline
through (``$`` also matches just before a final ``\\n``), so every id check must full-match.

Each case goes through the real entry point that receives the id (MQTT topic, registry file,
area file, rule file, API path) with the id once clean (accepted) and once with ``\\n`` appended.
The API's request bodies check sensor, gateway and key names with pydantic ``pattern``s (the
area path parameter too), which search: those (and the OpenAPI schema made from them) carry the
anchored form of the pattern.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import pytest
from fastapi import FastAPI
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from urbanpulse.alerts.rules import RulesError, parse_rules
from urbanpulse.api.errors import ApiError
from urbanpulse.api.routers import areas as areas_api
from urbanpulse.api.routers.gateways import GatewayBind, GatewayCreate
from urbanpulse.api.routers.keys import KeyCreate
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
    if model is GatewayCreate:  # a gateway id follows the sensor id rule
        return GatewayCreate.model_validate({"gateway_id": sensor_id})
    return SensorCreate.model_validate({"sensor_id": sensor_id, "kind": "air"})


@pytest.mark.parametrize("model", [SensorCreate, GatewayBind, GatewayCreate])
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
        GatewayCreate.model_json_schema()["properties"]["gateway_id"],
    ]
    for schema in schemas:
        assert re.search(schema["pattern"], "hcm-01")
        for extra in ("hcm 01", "hcm/01", "x" * 65):
            assert re.search(schema["pattern"], extra) is None, extra


# Area ids: 1-128 of letters, digits, '.', '_', ':', '-', starting with a letter or digit.
BAD_AREA_IDS = ["vn-x" + NEWLINE, "vn x", "vn/x", "-vn-x", "vn+x", "x" * 129, ""]


@pytest.mark.parametrize("bad", BAD_AREA_IDS)
def test_an_area_file_refuses_an_area_or_parent_id_with_anything_around_it(bad: str) -> None:
    assert areas_from_geojson(_area_file("a" * 128, parent_id="vn.hcm:q1_p-1"))
    with pytest.raises(AreaFileError, match="invalid or missing area_id"):
        areas_from_geojson(_area_file(bad))
    with pytest.raises(AreaFileError, match="invalid parent_id"):
        areas_from_geojson(_area_file("vn-x", parent_id=bad))


def _searched_by_pydantic(pattern: str) -> TypeAdapter[str]:
    # What FastAPI checks a path parameter with; its regex engine, like ECMA-262's and unlike
    # Python's ``re``, ends ``$`` at the very end of the text, so the newline case applies too.
    return TypeAdapter(Annotated[str, Field(pattern=pattern)])


def test_the_area_id_path_pattern_refuses_extra_characters_when_searched() -> None:
    app = FastAPI()
    app.include_router(areas_api.router)
    [parameter] = [
        p
        for p in app.openapi()["paths"]["/v1/areas/{area_id}"]["get"]["parameters"]
        if p["name"] == "area_id"
    ]
    searched = _searched_by_pydantic(parameter["schema"]["pattern"])
    assert searched.validate_python("vn.hcm:q1_p-1") == "vn.hcm:q1_p-1"
    for bad in BAD_AREA_IDS:
        with pytest.raises(ValidationError):
            searched.validate_python(bad)


# Key names: 1-128 of letters, digits, '_', '.', '@', ':', '-', starting with a letter or digit.
BAD_KEY_NAMES = ["ops" + NEWLINE, "ops team", "ops/hcm", "-ops", "ops+1", "k" * 129, ""]


def test_the_key_request_body_refuses_a_name_with_anything_around_it() -> None:
    for good in ("ops@hcm.gov.vn", "svc:map_1-a", "k" * 128):
        assert KeyCreate.model_validate({"name": good, "role": "viewer"}).name == good
    for bad in BAD_KEY_NAMES:
        with pytest.raises(ValidationError):
            KeyCreate.model_validate({"name": bad, "role": "viewer"})


def test_the_openapi_key_name_pattern_refuses_extra_characters_when_searched() -> None:
    searched = _searched_by_pydantic(KeyCreate.model_json_schema()["properties"]["name"]["pattern"])
    assert searched.validate_python("ops@hcm.gov.vn") == "ops@hcm.gov.vn"
    for bad in BAD_KEY_NAMES:
        with pytest.raises(ValidationError):
            searched.validate_python(bad)
