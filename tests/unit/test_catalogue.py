from __future__ import annotations

import pytest

from urbanpulse.core.catalogue import KINDS, UnknownKindError, get_kind

# Words PostgreSQL reserves that a metric name could plausibly collide with.
RESERVED = {"do", "end", "user", "order", "limit", "offset", "table", "check", "default", "to"}


def test_the_seven_families_are_catalogued() -> None:
    assert set(KINDS) == {
        "air",
        "water",
        "waste_bin",
        "waste_truck",
        "traffic_camera",
        "landfill",
        "incinerator",
    }


@pytest.mark.parametrize("kind", KINDS.values(), ids=list(KINDS))
def test_metrics_have_sane_ranges_and_safe_unique_columns(kind) -> None:  # type: ignore[no-untyped-def]
    columns = [m.column for m in kind.metrics]
    assert len(set(columns)) == len(columns)
    assert not set(columns) & RESERVED
    assert not set(columns) & {"sensor_id", "ts", "received_at", "seq"}
    for metric in kind.metrics:
        assert metric.minimum < metric.maximum, metric.name


def test_motorbikes_are_a_first_class_traffic_class() -> None:
    assert "motorbike" in get_kind("traffic_camera").by_name


def test_range_and_integer_checks() -> None:
    pm25 = get_kind("air").by_name["pm25"]
    assert pm25.problem_with(35.0) is None
    assert "outside the possible range" in (pm25.problem_with(-1.0) or "")
    cars = get_kind("traffic_camera").by_name["car"]
    assert "whole number" in (cars.problem_with(2.5) or "")


def test_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(UnknownKindError, match="known kinds: air"):
        get_kind("noise")
