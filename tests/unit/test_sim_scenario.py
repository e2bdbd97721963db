"""Scenario files: the shipped ones load; every kind of bad file is named with its line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from urbanpulse.simulators.command import REPO_SCENARIOS
from urbanpulse.simulators.scenario import (
    ScenarioError,
    load_scenario,
    parse_duration,
    parse_scenario,
)

GOOD = """\
description: a test scenario
city: hcmc
start: "06:00"
duration: 2h
speed: 360
seed: 4
fleet:
  - {kind: air, area: vn-hcm-ward-ben-thanh, count: 3}
  - {kind: traffic_camera, road: nguyen-hue, count: 2}
events:
  - {type: pollution_episode, at: "07:00", duration: 30m, area: vn-hcm-ward-ben-thanh}
  - {type: sensor_outage, at: +10m, duration: 5m, sensors: [air-0001]}
expect:
  - hourly_mean_above: {kind: air, metric: pm25, area: vn-hcm-ward-ben-thanh, threshold: 80,
                        by: "07:30"}
"""


def test_every_shipped_scenario_loads_and_is_documented_in_one_line() -> None:
    paths = sorted(REPO_SCENARIOS.glob("*.yaml"))
    assert len(paths) >= 5
    readme = (REPO_SCENARIOS / "README.md").read_text()
    for path in paths:
        scenario = load_scenario(path)
        assert scenario.name == path.stem
        assert "\n" not in scenario.description
        assert f"`{scenario.name}`" in readme


def test_a_good_scenario_parses() -> None:
    scenario = parse_scenario(GOOD, "s.yaml", default_name="s")
    assert scenario.duration == timedelta(hours=2)
    assert scenario.fleet_counts() == {"air": 3, "traffic_camera": 2}
    assert scenario.expect[0].name == "hourly_mean_above"


def test_a_time_of_day_start_is_the_latest_run_already_over() -> None:
    scenario = parse_scenario(GOOD, "s.yaml", default_name="s")
    now = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)  # 10:00 in Vietnam
    assert scenario.start_at(now) == datetime(2026, 11, 22, 23, 0, tzinfo=UTC)  # 06:00 today
    early = datetime(2026, 11, 23, 0, 30, tzinfo=UTC)  # 07:30: today's run is not over
    assert scenario.start_at(early) == datetime(2026, 11, 21, 23, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", 90),
        ("2m", 120),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("2d", 172800),
        (45, 45),
    ],
)
def test_durations(text: object, expected: float) -> None:
    assert parse_duration(text).total_seconds() == expected


def bad(text: str) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "scenarios/bad.yaml", default_name="bad")
    return info.value.problems


def replace(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("city: hcmc\n  bad: [\n", 2, "invalid YAML"),
        ("- just\n- a list\n", 1, "must be a mapping"),
        (replace("city: hcmc", "city: saigon"), 2, "city: Input should be 'hcmc' or 'hanoi'"),
        (replace("duration: 2h", "duration: two hours"), 4, "duration: 'two hours' is not a dur"),
        (replace("speed: 360", "speed: -1"), 5, "speed: Input should be greater than 0"),
        (replace("seed: 4\n", "seed: 4\nseeds: 5\n"), 7, "seeds: unknown field"),
        (replace("seed: 4\n", "seed: 4\nseed: 5\n"), 7, "seed: duplicate key"),
        (replace("description: a test scenario\n", ""), 1, "description: missing (required)"),
        (replace("kind: air, area", "kind: noise, area"), 8, "fleet[0].kind: unknown kind 'noise'"),
        (replace("count: 3", "count: 0"), 8, "fleet[0].count: Input should be greater than 0"),
        (
            replace("area: vn-hcm-ward-ben-thanh, count: 3", "area: vn-hcm-ward-nowhere, count: 3"),
            8,
            "fleet[0].area: unknown area 'vn-hcm-ward-nowhere'",
        ),
        (replace("road: nguyen-hue", "road: le-loi"), 9, "fleet[1].road: unknown road 'le-loi'"),
        (
            replace("{kind: traffic_camera, road: nguyen-hue, count: 2}", "{kind: air, count: 2}"),
            9,
            "fleet[1]: give exactly one of area or road",
        ),
        (
            replace("type: pollution_episode", "type: earthquake"),
            11,
            "events[0]: Input tag 'earthquake' found using 'type' does not match",
        ),
        (
            replace('at: "07:00", duration: 30m, area', 'at: "7 am", duration: 30m, area'),
            11,
            "events[0].at: '7 am' is not a time",
        ),
        (
            replace('at: "07:00", duration: 30m, area', 'at: "05:00", duration: 30m, area'),
            11,
            "events[0].at: '05:00' is outside the scenario's time span",
        ),
        (
            replace("duration: 30m, area: vn-hcm-ward-ben-thanh}", "duration: 30m}"),
            11,
            "events[0].area: missing (required)",
        ),
        (
            replace("sensors: [air-0001]", "sensors: [air-0007]"),
            12,
            "events[1].sensors[0]: unknown sensor 'air-0007': the fleet defines air-0000..air-0002",
        ),
        (
            replace("metric: pm25", "metric: pm1"),
            14,
            "expect[0].hourly_mean_above.metric: unknown metric 'pm1' for kind 'air'",
        ),
        (
            replace("hourly_mean_above:", "hourly_mean_over:"),
            14,
            "expect[0].hourly_mean_over: unknown field",
        ),
        (
            replace("threshold: 80,", "threshold: high,"),
            14,
            "expect[0].hourly_mean_above.threshold: Input should be a valid number",
        ),
    ],
)
def test_bad_files_name_the_line_and_the_problem(text: str, line: int, fragment: str) -> None:
    problems = bad(text)
    assert any(
        p.startswith(f"scenarios/bad.yaml line {line}: ") and fragment in p for p in problems
    ), problems


def test_all_problems_are_reported_at_once() -> None:
    text = replace("speed: 360", "speed: 0").replace("count: 3", "count: -1")
    problems = bad(text)
    assert len(problems) == 2


def test_an_unreadable_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.yaml")
