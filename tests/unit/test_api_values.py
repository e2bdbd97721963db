"""The API shows a metric as the catalogue types it: counts as integers."""

from __future__ import annotations

from urbanpulse.api.values import present_values


def test_integer_metrics_lose_their_float_point() -> None:
    shown = present_values("traffic_camera", {"bus": 17.0, "incident": 0.0, "avg_speed": 23.0})
    assert shown == {"bus": 17, "incident": 0, "avg_speed": 23.0}
    assert type(shown["bus"]) is int and type(shown["incident"]) is int
    assert type(shown["avg_speed"]) is float  # a speed is not a count, even when whole


def test_a_mean_of_counts_stays_fractional() -> None:
    assert present_values("traffic_camera", {"bus": 17.5}) == {"bus": 17.5}


def test_other_kinds_and_no_values_pass_through() -> None:
    assert present_values("air", {"pm25": 12.0}) == {"pm25": 12.0}
    assert type(present_values("air", {"pm25": 12.0})["pm25"]) is float
    assert present_values("traffic_camera", None) == {}
