"""Ids are checked against their whole pattern: ``re.match`` with ``$`` lets a trailing newline
through (``$`` also matches just before a final ``\\n``), so every id check must full-match.

Each case goes through the real entry point that receives the id (MQTT topic, registry file,
area file, rule file, API path) with the id once clean (accepted) and once with ``\\n`` appended.
"""

from __future__ import annotations

from typing import Any

import pytest

from urbanpulse.alerts.rules import RulesError, parse_rules
from urbanpulse.api.errors import ApiError
from urbanpulse.api.routers.sensors import _check_sensor_id
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
