"""Rule files to the letter: every problem with its file, line, rule and full text; durations,
fractions and comparisons at their edges; what a loaded rule set answers."""

from __future__ import annotations

from datetime import timedelta
from fractions import Fraction
from pathlib import Path

import pytest

from urbanpulse.alerts.rules import RulesError, load_rules, parse_rules

SOURCE = "rules/bad.yaml"
# A rule's first four lines; its body starts on line 7.
HEAD = "version: 1\nrules:\n  - id: r1\n    kind: air\n    severity: warning\n    citation: c\n"
AIR_METRICS = "['pm25', 'pm10', 'no2', 'o3', 'so2', 'co', 'temperature', 'humidity', 'vn_aqi']"
SPLIT = "or a value between them would open and clear the alert at once"


def problems(text: str) -> list[str]:
    with pytest.raises(RulesError) as caught:
        parse_rules(text, SOURCE)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def body(*lines: str) -> str:
    return HEAD + "".join(f"    {line}\n" for line in lines)


def at(line: int, message: str, rule: str | None = "r1") -> str:
    who = f"rule {rule!r}: " if rule else ""
    return f"{SOURCE} line {line}: {who}{message}"


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (("above: 1",), [at(3, "metric: missing (or give offline_after for a staleness rule)")]),
        (
            ("metric: pm99", "above: 1"),
            [at(7, f"metric: 'pm99' is not a number of kind 'air': {AIR_METRICS}")],
        ),
        (
            ("metric: pm25", "above: 1", "below: 2"),
            [at(7, "give exactly one threshold of above, at_least, below, at_most, not_equal "
                   "(found ['above', 'below'])")],
        ),
        (
            ("metric: pm25",),
            [at(7, "give exactly one threshold of above, at_least, below, at_most, not_equal "
                   "(found 0)")],
        ),
        (
            ("metric: pm25", "above: 2000.5"),
            [at(8, "above (2000.5) is outside what pm25 can read (0..2000 µg/m³)")],
        ),
        (
            ("metric: pm25", "below: -1"),
            [at(8, "below (-1) is outside what pm25 can read (0..2000 µg/m³)")],
        ),
        (("metric: pm25", "above: 9", "for: -300"), [at(9, "for: a duration cannot be negative")]),
        (
            ("metric: pm25", "above: 9", "scope: area"),
            [at(9, "scope 'area' needs an 'area' block with more_than")],
        ),
        (
            ("metric: vn_aqi", "at_least: 151", "area: {more_than: 0.5}"),
            [at(9, "an 'area' block needs scope: area")],
        ),
        (
            ("scope: area", "metric: pm25", "window: 24h", "above: 45", "area: {more_than: 0.5}"),
            [at(9, "an area rule reads each sensor's latest value: it takes no window")],
        ),
        (
            ("scope: area", "metric: vn_aqi", "at_least: 151", "area: {more_than: 1}"),
            [at(10, "area.more_than (1) must be in [0, 1)")],
        ),
        (
            ("scope: area", "metric: vn_aqi", "at_least: 151",
             "area: {more_than: 0.25, clear_at_most: 0.5}"),
            [at(10, "area.clear_at_most (1/2) must not exceed more_than (1/4)")],
        ),
        (
            ("metric: pm25", "above: 50", "clear_below: 40", "clear_above: 60"),
            [at(9, "give clear_below or clear_above, not both")],
        ),
        (
            ("metric: pm25", "below: 50", "clear_below: 40"),
            [at(9, "clear_below goes with above/at_least, not below")],
        ),
        (
            ("metric: pm25", "at_least: 50", "clear_below: 50.5"),
            [at(9, f"clear_below (50.5) must be below at_least (50), {SPLIT}")],
        ),
        (
            ("metric: pm25", "above: 50", "clear_above: 60"),
            [at(9, "clear_above goes with below/at_most, not above")],
        ),
        (
            ("metric: pm25", "at_most: 50", "clear_above: 49.5"),
            [at(9, f"clear_above (49.5) must be above at_most (50), {SPLIT}")],
        ),
        (("metric: pm25", "above: 50", "min_hours: 2"), [at(9, "min_hours needs a window")]),
        (
            ("metric: humidity", "window: 24h", "above: 90"),
            [at(8, "window: only ['co', 'no2', 'o3', 'pm10', 'pm25', 'so2'] of kind 'air' have "
                   "windowed means (not 'humidity'); use 'for' for a minimum duration instead")],
        ),
        (
            ("metric: pm25", "window: 25h", "above: 45"),
            [at(8, "window must be whole hours from 1h to 24h")],
        ),
        (
            ("metric: pm25", "window: 0h", "above: 45"),
            [at(8, "window must be whole hours from 1h to 24h")],
        ),
        (
            ("metric: pm25", "window: 90m", "above: 45"),
            [at(8, "window must be whole hours from 1h to 24h")],
        ),
        (
            ("metric: pm25", "window: 8h", "min_hours: 9", "above: 45"),
            [at(9, "min_hours (9) exceeds the window (8h)")],
        ),
        (
            ("offline_after: 15m", "metric: pm25"),
            [at(7, "an offline rule takes no metric, threshold or area scope")],
        ),
        (
            ("offline_after: 15m", "scope: area"),
            [at(7, "an offline rule takes no metric, threshold or area scope")],
        ),
        (("offline_after: 0",), [at(7, "offline_after must be longer than zero")]),
    ],
)  # fmt: skip
def test_each_problem_in_full(lines: tuple[str, ...], expected: list[str]) -> None:
    assert problems(body(*lines)) == expected


@pytest.mark.parametrize(
    "lines",
    [
        ("metric: pm25", "above: 2000"),  # the range limits themselves are fine
        ("metric: pm25", "below: 0"),
        ("metric: pm25", "at_least: 50", "clear_below: 50"),  # equal limits are allowed
        ("metric: pm25", "at_most: 50", "clear_above: 50"),
        ("metric: pm25", "window: 24h", "min_hours: 24", "above: 45"),
        ("metric: pm25", "window: 1h", "above: 45"),
        ("scope: area", "metric: vn_aqi", "at_least: 151", "area: {more_than: 0}"),
        ("scope: area", "metric: vn_aqi", "at_least: 151",
         "area: {more_than: 0.5, clear_at_most: 0.5}"),
        ("offline_after: 1s",),
        ("metric: pm25", "above: 9", "for: 0"),
    ],
)  # fmt: skip
def test_limits_that_are_allowed(lines: tuple[str, ...]) -> None:
    [rule] = parse_rules(body(*lines), SOURCE)
    assert rule.id == "r1"


def test_ids_and_kinds_are_checked_by_name() -> None:
    text = HEAD.replace("id: r1", "id: R1").replace("kind: air", "kind: lava")
    assert problems(text) == [
        at(3, "id: use lower-case letters, digits, '-', '_' or '.' (at most 64)", "R1"),
        at(4, "kind: unknown kind 'lava'; known kinds: air, water, waste_bin, waste_truck, "
              "landfill, incinerator, traffic_camera", "R1"),
    ]  # fmt: skip


def test_items_that_are_not_rules_are_numbered() -> None:
    text = "version: 1\nrules:\n  - 5\n  - {id: 7, kind: air}\n"
    found = problems(text)
    assert found[0].startswith(f"{SOURCE} line 3: rule '#1': rule: ")
    assert any(p.startswith(f"{SOURCE} line 4: rule '#2': id: ") for p in found)
    assert any(p.startswith(f"{SOURCE} line 4: rule '#2': severity: Field required") for p in found)


def test_a_second_rule_with_the_same_id() -> None:
    rule = "  - {id: a, kind: air, offline_after: 5m, severity: info, citation: c}\n"
    assert problems("version: 1\nrules:\n" + rule + rule) == [
        at(4, "id: used by an earlier rule too", "a")
    ]


def test_file_level_problems() -> None:
    assert problems("version: 1\ndefaults: {cooldown: soon}\nrules: []\n") == [
        at(2, "defaults.cooldown: 'soon' is not a duration like '30s', '15m', '24h' or '1d'", None)
    ]
    assert problems("version: 1\ndefaults: {colour: red, cooldown: 1m}\nrules: []\n") == [
        at(2, "defaults: unknown settings ['colour']", None)
    ]
    [version] = problems("version: 2\nrules: []\n")
    assert version.startswith(f"{SOURCE} line 1: version: Input should be 1")
    [missing] = problems("version: 1\n")
    assert missing.startswith(f"{SOURCE} line 1: rules: Field required")
    [not_a_mapping] = problems("- 1\n")
    assert not_a_mapping.startswith(f"{SOURCE} line 1: file: ")


def test_bad_yaml_names_its_line() -> None:
    [problem] = problems("version: 1\nrules:\n  - {id: a\n")
    assert problem.startswith(f"{SOURCE} line 4: not valid YAML: ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90", timedelta(seconds=90)),
        ("1.5", timedelta(seconds=1.5)),
        ("'30s'", timedelta(seconds=30)),
        ("'30 sec'", timedelta(seconds=30)),
        ("'15m'", timedelta(minutes=15)),
        ("'15min'", timedelta(minutes=15)),
        ("'1.5h'", timedelta(minutes=90)),
        ("'2d'", timedelta(days=2)),
        ("' 45 '", timedelta(seconds=45)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    [rule] = parse_rules(body("metric: pm25", "above: 9", f"for: {text}"))
    assert rule.min_duration == expected


@pytest.mark.parametrize("text", ["'-5m'", "'5 weeks'", "[1]"])
def test_what_is_not_a_duration(text: str) -> None:
    [problem] = problems(body("metric: pm25", "above: 9", f"for: {text}"))
    assert problem.startswith(at(9, "for: ")), problem


@pytest.mark.parametrize(
    ("text", "expected"),
    [("'1/3'", Fraction(1, 3)), ("0.25", Fraction(1, 4)), ("'50%'", Fraction(1, 2)),
     ("' 12.5% '", Fraction(1, 8)), ("0", Fraction(0)), ("0.1", Fraction(1, 10))],
)  # fmt: skip
def test_shares_are_exact_fractions(text: str, expected: Fraction) -> None:
    lines = ("scope: area", "metric: vn_aqi", "at_least: 151", f"area: {{more_than: {text}}}")
    [rule] = parse_rules(body(*lines))
    assert rule.area is not None and rule.area.more_than == expected


@pytest.mark.parametrize("text", ["'a third'", "'1/0'", "[1]"])
def test_what_is_not_a_share(text: str) -> None:
    lines = ("scope: area", "metric: vn_aqi", "at_least: 151", f"area: {{more_than: {text}}}")
    [problem] = problems(body(*lines))
    assert problem.startswith(at(10, "area.more_than: ")), problem
    if text != "[1]":
        assert "is not a fraction like '1/3', 0.5 or '50%'" in problem


@pytest.mark.parametrize(
    ("comparator", "limit", "true_at", "false_at"),
    [
        ("above", 50, 50.01, 50),
        ("at_least", 50, 50, 49.99),
        ("below", 50, 49.99, 50),
        ("at_most", 50, 50, 50.01),
        ("not_equal", 0, 1, 0),
    ],
)
def test_comparators_at_their_limit(
    comparator: str, limit: float, true_at: float, false_at: float
) -> None:
    [rule] = parse_rules(body("metric: pm25", f"{comparator}: {limit}"))
    assert rule.comparator == (comparator, float(limit)) and rule.threshold == float(limit)
    assert rule.triggers(true_at) and not rule.triggers(false_at)
    # Without hysteresis a rule clears exactly when it stops triggering.
    assert not rule.clears(true_at) and rule.clears(false_at)


def test_hysteresis_limits_are_strict() -> None:
    [high] = parse_rules(body("metric: pm25", "above: 50", "clear_below: 40"))
    assert not high.clears(40) and high.clears(39.99) and not high.clears(45)
    [low] = parse_rules(body("metric: pm25", "below: 50", "clear_above: 60"))
    assert not low.clears(60) and low.clears(60.01) and not low.clears(55)


def test_a_loaded_rule_set_answers_by_kind_and_shape() -> None:
    text = (
        "version: 1\nrules:\n"
        "  - {id: a, kind: air, metric: pm25, above: 50, severity: info, citation: c}\n"
        "  - {id: b, kind: air, metric: pm25, window: 24h, above: 45, severity: info,\n"
        "     citation: c}\n"
        "  - {id: c, kind: air, metric: no2, window: 1h, above: 200, severity: info, citation: c}\n"
        "  - {id: d, kind: air, offline_after: 15m, severity: info, citation: c}\n"
        "  - {id: e, kind: air, scope: area, metric: vn_aqi, at_least: 151, severity: info,\n"
        "     citation: c, area: {more_than: 0.5}}\n"
        "  - {id: f, kind: water, metric: do, below: 4, severity: info, citation: c}\n"
        "  - {id: g, kind: water, metric: ph, below: 6, severity: info, citation: c,\n"
        "     enabled: false}\n"
    )
    rules = parse_rules(text, "rules/x.yaml")
    assert rules.source == "rules/x.yaml" and parse_rules(text).source == "<rules>"
    assert [r.id for r in rules] == ["a", "b", "c", "d", "e", "f"] and len(rules) == 6
    assert [r.id for r in rules.for_kind("air")] == ["a", "b", "c"]
    assert [r.id for r in rules.for_kind("air", "area")] == ["e"]
    assert [r.id for r in rules.area_rules] == ["e"]
    offline = rules.offline_rule("air")
    assert offline is not None and offline.id == "d" and offline.is_offline
    assert rules.offline_rule("water") is None
    assert rules.windows("air") == {("pm25", 24), ("no2", 1)}
    assert rules.windows("water") == set()
    assert [r.window_hours for r in rules][:3] == [None, 24, 1]


def test_load_rules_reads_a_file_and_names_one_it_cannot(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        "version: 1\nrules:\n  - {id: a, kind: air, offline_after: 5m, severity: info, "
        "citation: Quyết định}\n",
        encoding="utf-8",
    )
    rules = load_rules(path, timedelta(seconds=42))
    assert rules.source == str(path) and rules.rules[0].cooldown == timedelta(seconds=42)
    assert rules.rules[0].citation == "Quyết định"
    missing = tmp_path / "none.yaml"
    with pytest.raises(RulesError) as caught:
        load_rules(missing)
    assert caught.value.problems == [
        f"{missing}: cannot read the rule file: No such file or directory"
    ]


def test_a_kind_without_windowed_metrics_says_so() -> None:
    text = body("metric: do", "window: 24h", "below: 4").replace("kind: air", "kind: water")
    assert problems(text) == [
        at(8, "window: only no metrics of kind 'water' have windowed means (not 'do'); "
              "use 'for' for a minimum duration instead")
    ]  # fmt: skip


def test_lines_point_at_the_field_itself() -> None:
    # id on the rule's second line: its problems point there, not at the rule's first line.
    rule = "  - kind: air\n    id: R1\n    offline_after: 5m\n    severity: info\n    citation: c\n"
    assert problems("version: 1\nrules:\n" + rule) == [
        at(4, "id: use lower-case letters, digits, '-', '_' or '.' (at most 64)", "R1")
    ]
    twice = rule.replace("R1", "a")
    assert problems("version: 1\nrules:\n" + twice + twice) == [
        at(9, "id: used by an earlier rule too", "a")
    ]
    block = "version: 1\ndefaults:\n  cooldown: soon\nrules: []\n"
    assert problems(block) == [
        at(3, "defaults.cooldown: 'soon' is not a duration like '30s', '15m', '24h' or '1d'", None)
    ]


def test_a_bad_cooldown_that_is_not_the_first_default_is_found_on_its_own_line() -> None:
    # The defaults block starts on line 3 (colour); the cooldown is on line 4.
    block = "version: 1\ndefaults:\n  colour: red\n  cooldown: soon\nrules: []\n"
    assert problems(block) == [
        at(4, "defaults.cooldown: 'soon' is not a duration like '30s', '15m', '24h' or '1d'", None),
        at(3, "defaults: unknown settings ['colour']", None),
    ]


def test_an_empty_file_has_no_line_to_name() -> None:
    [problem] = problems("")
    assert problem.startswith(f"{SOURCE}: file: ")


@pytest.mark.parametrize("field", ["metric: pm25, above: 9, for: true", "offline_after: yes"])
def test_a_yaml_boolean_is_not_a_duration(field: str) -> None:
    head = "version: 1\nrules:\n  - {id: r1, kind: air, severity: warning, citation: c, "
    with pytest.raises(RulesError, match="not a duration"):
        parse_rules(head + field + "}\n")
