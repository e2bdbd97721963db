"""The per-reading alert path's indexes: the rules of a kind looked up once, every windowed mean
of a reading from one hourly series.  Expected values are computed by hand."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from urbanpulse.alerts.rules import KindRules, RuleSet, parse_rules
from urbanpulse.core.envelope import Reading
from urbanpulse.indices.vn_aqi import POLLUTANTS
from urbanpulse.storage.registry import RegisteredSensor
from urbanpulse.stream.alerting import observations, window_means
from urbanpulse.stream.windows import HourlyMeans

RULES = parse_rules(
    """
version: 1
rules:
  - {id: pm25-24h, kind: air, metric: pm25, window: 24h, above: 45, severity: info, citation: c}
  - {id: no2-1h, kind: air, metric: no2, window: 1h, above: 200, severity: info, citation: c}
  - {id: aqi, kind: air, metric: vn_aqi, at_least: 151, severity: info, citation: c}
  - {id: air-off, kind: air, offline_after: 15m, severity: info, citation: c}
  - {id: area, kind: air, scope: area, metric: vn_aqi, at_least: 151, severity: info,
     citation: c, area: {more_than: 0.5}}
  - {id: water-never, kind: water, never_reported_after: 2h, severity: info, citation: c}
  - {id: any-never, kind: any, never_reported_after: 1h, severity: info, citation: c}
  - {id: late-water-never, kind: water, never_reported_after: 3h, severity: info, citation: c}
  - {id: do-low, kind: water, metric: do, below: 2, severity: info, citation: c}
"""
)
BY_ID = {r.id: r for r in RULES}


def at(hour: int, minute: int) -> datetime:
    return datetime(2026, 11, 30, hour, minute, tzinfo=UTC)


def test_the_rules_of_a_kind_are_its_thresholds_staleness_and_windows_in_file_order() -> None:
    assert RULES.of_kind("air") == KindRules(
        thresholds=(BY_ID["pm25-24h"], BY_ID["no2-1h"], BY_ID["aqi"]),  # not the area rule
        offline=BY_ID["air-off"],
        never_reported=BY_ID["any-never"],  # the only never-reported rule watching air
        windows=(("no2", 1), ("pm25", 24)),
    )
    water = RULES.of_kind("water")
    # Two never-reported rules watch water: the first in the file decides.
    assert water.never_reported == BY_ID["water-never"]
    assert water.thresholds == (BY_ID["do-low"],) and water.offline is None
    assert water.windows == ()
    nothing = RULES.of_kind("landfill")
    assert nothing.thresholds == () and nothing.offline is None and nothing.windows == ()
    assert nothing.never_reported == BY_ID["any-never"]


def test_the_index_is_built_once_and_is_no_part_of_the_rule_sets_identity() -> None:
    assert RULES.of_kind("air") is RULES.of_kind("air")
    fresh = RuleSet(RULES.rules, RULES.source)
    assert fresh == RULES and hash(fresh) == hash(RULES)


def hours_with_data() -> HourlyMeans:
    hours = HourlyMeans(POLLUTANTS)
    hours.add("a1", at(8, 10), {"pm25": 10.0, "no2": 100.0})
    hours.add("a1", at(8, 20), {"pm25": 20.0})
    hours.add("a1", at(7, 30), {"pm25": 30.0})
    hours.add("a1", at(5, 0), {"pm25": 50.0})
    return hours


def test_every_windowed_mean_of_a_reading_from_one_series() -> None:
    spans = [("pm25", 24), ("pm25", 2), ("pm25", 1), ("no2", 1), ("so2", 1)]
    means = window_means(hours_with_data(), "a1", at(8, 40), spans)
    # Hourly means: 08h (10+20)/2 = 15, 07h 30, 05h 50.
    assert means[("pm25", 24)] == (95 / 3, 3)
    assert means[("pm25", 2)] == (22.5, 2)
    assert means[("pm25", 1)] == (15.0, 1)
    assert means[("no2", 1)] == (100.0, 1)
    assert ("so2", 1) not in means  # no hour with data: no mean
    # At 06:59 the window ends with hour 06: the 24 h mean is the 05h one alone.
    assert window_means(hours_with_data(), "a1", at(6, 59), [("pm25", 24)]) == {
        ("pm25", 24): (50.0, 1)
    }


def reading(sensor_id: str, kind: str, ts: datetime, **values: float) -> Reading:
    return Reading(sensor_id, kind, ts, dict(values), ts, "test")


def test_observations_carry_numeric_indices_and_the_windows_the_kinds_rules_read() -> None:
    hours = hours_with_data()
    air = reading("a1", "air", at(8, 40), pm25=12.0)
    water = reading("w1", "water", at(8, 40), do=5.0)
    pending = reading("p1", "air", at(8, 40), pm25=12.0)
    known = {
        "a1": RegisteredSensor("air", "active", "ward-1"),
        "w1": RegisteredSensor("water", "active", None),
        "p1": RegisteredSensor("air", "pending", None),
    }
    derived: dict[tuple[str, datetime], dict[str, Any]] = {
        ("a1", air.ts): {"vn_aqi": 60, "vn_aqi_pollutant": "pm25", "flag": True},
        ("w1", water.ts): {"wqi": 80.5},
    }
    a1, w1 = observations([air, water, pending], derived, known, hours, RULES.per_sensor())
    assert a1.values == {"pm25": 12.0, "vn_aqi": 60.0}  # the text and the bool left out
    assert isinstance(a1.values["vn_aqi"], float) and a1.area_id == "ward-1"
    assert a1.windows == {("pm25", 24): (95 / 3, 3), ("no2", 1): (100.0, 1)}
    assert w1.values == {"do": 5.0, "wqi": 80.5} and w1.windows == {}
    assert air.values == {"pm25": 12.0}  # the reading itself is left as it came
