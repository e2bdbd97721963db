"""Rule files: the shipped defaults load; bad files are rejected naming the line, rule, problem."""

from __future__ import annotations

import argparse
from datetime import timedelta
from fractions import Fraction
from pathlib import Path

import pytest

from urbanpulse.alerts.command import add_rules_parser
from urbanpulse.alerts.rules import WINDOWED_METRICS, RulesError, load_rules, parse_rules
from urbanpulse.core.settings import Settings
from urbanpulse.indices.vn_aqi import POLLUTANTS

DEFAULT = Path(__file__).resolve().parents[2] / "rules" / "default.yaml"

HEADER = "version: 1\nrules:\n"


def problems(text: str) -> list[str]:
    with pytest.raises(RulesError) as caught:
        parse_rules(text, "rules/bad.yaml")
    return caught.value.problems


def test_the_default_rules_load_and_cover_the_four_families() -> None:
    rules = load_rules(DEFAULT)
    assert {r.kind for r in rules} >= {"air", "water", "waste_bin", "traffic_camera"}
    by_id = {r.id: r for r in rules}
    pm25 = by_id["pm25-24h-qcvn"]
    assert (pm25.metric, pm25.window_hours, pm25.threshold) == ("pm25", 24, 45.0)
    assert "QCVN 05:2023" in pm25.citation and "50" in pm25.citation and "45" in pm25.citation
    assert by_id["vn-aqi-bad"].triggers(151) and not by_id["vn-aqi-bad"].triggers(150)
    assert by_id["wqi-poor"].triggers(25) and not by_id["wqi-poor"].triggers(26)
    assert by_id["traffic-occupancy-high"].min_duration == timedelta(minutes=5)
    assert by_id["area-air-aqi-bad"].area is not None
    assert by_id["area-air-aqi-bad"].area.more_than == Fraction(1, 3)
    assert all(r.citation for r in rules)
    assert all(r.cooldown == timedelta(minutes=30) for r in rules)
    assert rules.offline_rule("air") is not None


def test_settings_point_at_the_shipped_rules() -> None:
    assert Settings().alerts.rules_path == DEFAULT


def test_windowed_metrics_are_what_the_processor_windows() -> None:
    assert set(POLLUTANTS) == WINDOWED_METRICS["air"]


def test_hysteresis_on_the_wrong_side_names_line_rule_and_values() -> None:
    text = HEADER + (
        "  - id: pm25-24h-qcvn\n"
        "    kind: air\n"
        "    metric: pm25\n"
        "    above: 50\n"
        "    clear_below: 55\n"
        "    severity: warning\n"
        "    citation: QCVN 05:2023/BTNMT\n"
    )
    [problem] = problems(text)
    assert problem.startswith("rules/bad.yaml line 7: rule 'pm25-24h-qcvn': ")
    assert "clear_below (55) must be below above (50)" in problem


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("metric: pm99\n    above: 1", "'pm99' is not a number of kind 'air'"),
        ("metric: vn_aqi_pollutant\n    above: 1", "'vn_aqi_pollutant' is not a number"),
        ("metric: pm25\n    above: 1\n    below: 2", "exactly one threshold"),
        ("metric: pm25\n    above: 99999", "outside what pm25 can read"),
        ("metric: humidity\n    window: 24h\n    above: 90", "have windowed means"),
        ("metric: pm25\n    window: 90m\n    above: 9", "whole hours"),
        ("metric: pm25\n    above: 9\n    for: soon", "not a duration"),
        ("metric: pm25\n    above: 9\n    clear_above: 10", "clear_above goes with below"),
        ("metric: pm25\n    above: 9\n    colour: red", "colour: Extra inputs"),
        ("metric: pm25\n    above: 9\n    scope: area", "needs an 'area' block"),
        ("offline_after: 0s", "longer than zero"),
    ],
)
def test_each_problem_is_explained(body: str, expected: str) -> None:
    text = HEADER + (
        f"  - id: r1\n    kind: air\n    severity: warning\n    citation: c\n    {body}\n"
    )
    found = problems(text)
    assert any(expected in p for p in found), found
    assert all("rule 'r1'" in p and "line" in p for p in found)


def test_all_problems_are_reported_at_once_with_their_lines() -> None:
    text = HEADER + (
        "  - id: a\n    kind: lava\n    severity: warning\n    citation: c\n"
        "  - id: b\n    kind: air\n    metric: pm25\n    above: 1\n    severity: loud\n"
        "    citation: c\n"
        "  - id: a\n    kind: air\n    offline_after: 5m\n    severity: info\n    citation: c\n"
    )
    found = problems(text)
    assert any(p.startswith("rules/bad.yaml line 4: rule 'a': kind: unknown kind") for p in found)
    assert any("line 11: rule 'b': severity" in p for p in found)
    assert any("line 13: rule 'a': id: used by an earlier rule" in p for p in found)


def test_missing_citation_and_bad_yaml_and_version() -> None:
    found = problems(HEADER + "  - id: x\n    kind: air\n    metric: pm25\n    above: 1\n"
                     "    severity: info\n")  # fmt: skip
    assert any("rule 'x': citation: Field required" in p for p in found)
    assert "not valid YAML" in problems("version: 1\nrules: [\n")[0]
    assert "version" in problems("version: 2\nrules: []\n")[0]


def test_cooldown_comes_from_the_rule_then_the_file_then_the_default() -> None:
    text = (
        "version: 1\ndefaults: {cooldown: 10m}\nrules:\n"
        "  - {id: a, kind: air, offline_after: 5m, severity: info, citation: c}\n"
        "  - {id: b, kind: water, offline_after: 5m, severity: info, citation: c, cooldown: 1h}\n"
    )
    rules = parse_rules(text)
    assert [r.cooldown for r in rules] == [timedelta(minutes=10), timedelta(hours=1)]
    bare = parse_rules(text.replace("defaults: {cooldown: 10m}\n", ""), "x", timedelta(seconds=7))
    assert bare.rules[0].cooldown == timedelta(seconds=7)


def test_rules_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_rules_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["rules", "check", str(DEFAULT)])
    assert args.handler(Settings(), args) == 0
    assert "rules OK" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(HEADER + "  - {id: z, kind: air, metric: pm25, severity: info, citation: c}\n")
    args = parser.parse_args(["rules", "check", str(bad)])
    assert args.handler(Settings(), args) == 1
    err = capsys.readouterr().err
    assert f"{bad} line 3: rule 'z': give exactly one threshold" in err


def test_the_processor_reloads_changed_rules_and_keeps_the_old_ones_on_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import os

    from urbanpulse.core.metrics import Metrics
    from urbanpulse.stream.alerting import AlertStage

    path = tmp_path / "rules.yaml"
    rule = "  - {id: r1, kind: air, metric: pm25, above: 50, severity: info, citation: c}\n"
    path.write_text(HEADER + rule)
    settings = Settings()
    settings.alerts.rules_path = path
    stage = AlertStage(settings, producer=None, metrics=Metrics())  # type: ignore[arg-type]
    assert [r.threshold for r in stage.rules] == [50.0]

    def rewrite(text: str, tick: int) -> None:
        path.write_text(text)
        os.utime(path, ns=(tick * 10**9, tick * 10**9))

    rewrite(HEADER + rule.replace("above: 50", "above: 50, clear_below: 70"), 1)
    stage.reload_if_changed()
    assert [r.threshold for r in stage.rules] == [50.0]
    assert stage.counters.rule_reload_errors == 1
    assert "clear_below (70) must be below above (50)" in caplog.text
    rewrite(HEADER + rule.replace("above: 50", "above: 45"), 2)
    stage.reload_if_changed()
    assert [r.threshold for r in stage.rules] == [45.0]
    assert stage.counters.rule_reloads == 1
