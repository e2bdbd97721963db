"""Alert rules as configuration: a YAML file, validated against the kind catalogue.

Each rule watches one kind and is one of three shapes:

- threshold: ``metric`` (a catalogue metric or a numeric derived index) compared with a limit by
  exactly one of ``above``, ``at_least``, ``below``, ``at_most``, ``not_equal``; optionally over a
  ``window`` (mean of hourly means, air pollutants only), held for a minimum duration ``for``,
  and cleared with hysteresis at ``clear_below`` / ``clear_above``;
- staleness: ``offline_after`` (processing time without data from a sensor);
- never reported: ``never_reported_after`` (a registered, active sensor without a single reading
  this long after its registration); its ``kind`` may be ``any`` (every kind);
- area: a threshold rule with ``scope: area`` and an ``area`` block: the share of an area's
  sensors meeting the threshold that opens an alert for the area.

Every limit lives here with its ``citation``.  Errors name the file, the line, the rule and the
problem, and all of them are reported at once.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import operator
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from urbanpulse.core.catalogue import KINDS
from urbanpulse.core.untrusted import is_number
from urbanpulse.core.vocabulary import Severity

# Metrics the processor keeps hourly means of (its VN_AQI window): only these take a ``window``.
WINDOWED_METRICS = {"air": frozenset({"pm25", "pm10", "no2", "so2", "o3", "co"})}
MAX_WINDOW_HOURS = 24  # what the processor's hourly window keeps
ANY_KIND = "any"  # what a never-reported rule may watch: sensors of every kind
COMPARATORS = ("above", "at_least", "below", "at_most", "not_equal")
_TRIGGERS: dict[str, Callable[[float, float], bool]] = {
    "above": operator.gt,
    "at_least": operator.ge,
    "below": operator.lt,
    "at_most": operator.le,
    "not_equal": operator.ne,
}
RULE_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)?\s*$")
_UNIT_SECONDS = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


class RulesError(ValueError):
    """A rule file that cannot be used; one line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


def parse_duration(value: Any) -> Any:
    """``90``, ``"30s"``, ``"15m"``, ``"24h"``, ``"1d"`` -> timedelta (other input: unchanged)."""
    if is_number(value):
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration like '30s', '15m', '24h' or '1d'")
        return timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]])
    if isinstance(value, bool):
        # YAML's `yes`/`true` would otherwise pass pydantic as 1 second.
        raise ValueError(f"{value!r} is not a duration like '30s', '15m', '24h' or '1d'")
    return value


def parse_fraction(value: Any) -> Any:
    """``"1/3"``, ``0.5`` or ``"50%"`` -> an exact Fraction."""
    if isinstance(value, bool):
        return value
    try:
        if isinstance(value, str) and value.strip().endswith("%"):
            return Fraction(value.strip()[:-1]) / 100
        if isinstance(value, int | float | str):
            return Fraction(str(value) if isinstance(value, float) else value)
    except (ValueError, ZeroDivisionError):
        pass
    raise ValueError(f"{value!r} is not a fraction like '1/3', 0.5 or '50%'")


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Share = Annotated[Fraction, BeforeValidator(parse_fraction)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class Texts(_Strict):
    vi: str = Field(min_length=1)
    en: str = Field(min_length=1)


class AreaCondition(_Strict):
    more_than: Share  # share of the area's sensors meeting the threshold
    clear_at_most: Share | None = None  # hysteresis on the share; default: more_than
    min_sensors: int = Field(1, ge=1)  # fewer fresh sensors than this: no verdict
    fresh_within: Duration = timedelta(hours=1)  # a sensor counts only with data this recent

    @property
    def clear_share(self) -> Fraction:
        return self.more_than if self.clear_at_most is None else self.clear_at_most


class Rule(_Strict):
    id: str
    kind: str
    severity: Severity
    citation: str = Field(min_length=1)
    scope: Literal["sensor", "area"] = "sensor"
    enabled: bool = True
    title: Texts | None = None
    metric: str | None = None
    window: Duration | None = None
    min_hours: int | None = Field(None, ge=1)
    above: float | None = None
    at_least: float | None = None
    below: float | None = None
    at_most: float | None = None
    not_equal: float | None = None
    clear_below: float | None = None
    clear_above: float | None = None
    min_duration: Duration = Field(timedelta(0), alias="for")
    offline_after: Duration | None = None
    never_reported_after: Duration | None = None
    area: AreaCondition | None = None
    cooldown: Duration | None = None

    # --- what the engine asks -------------------------------------------------------------

    @property
    def is_offline(self) -> bool:
        return self.offline_after is not None

    @property
    def is_never_reported(self) -> bool:
        return self.never_reported_after is not None

    def watches(self, kind: str) -> bool:
        return self.kind in (kind, ANY_KIND) if self.is_never_reported else self.kind == kind

    # Cached: the engine reads these for every reading.  They derive from frozen fields, so a
    # copy may change only fields they do not read (``parse_rules`` copies before reading them).
    @functools.cached_property
    def comparator(self) -> tuple[str, float]:
        for name in COMPARATORS:
            limit = getattr(self, name)
            if limit is not None:
                return name, float(limit)
        raise ValueError(f"rule {self.id!r} has no threshold")

    @property
    def threshold(self) -> float:
        return self.comparator[1]

    @functools.cached_property
    def window_hours(self) -> int | None:
        return None if self.window is None else int(self.window.total_seconds() // 3600)

    def triggers(self, value: float) -> bool:
        op, limit = self.comparator
        return _TRIGGERS[op](value, limit)

    def clears(self, value: float) -> bool:
        """The condition has cleared, with hysteresis: a value between the two limits holds."""
        if self.clear_below is not None:
            return value < self.clear_below
        if self.clear_above is not None:
            return value > self.clear_above
        return not self.triggers(value)


@dataclass(frozen=True)
class KindRules:
    """What a sensor of one kind meets, as the engine asks it for every reading."""

    thresholds: tuple[Rule, ...]  # its threshold rules (sensor scope), in file order
    offline: Rule | None
    never_reported: Rule | None
    windows: tuple[tuple[str, int], ...]  # (metric, hours) means its rules read


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    source: str = "<memory>"
    # kind -> its rules, indexed on first use: the per-reading path asks per kind, not per rule.
    _by_kind: dict[str, KindRules] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def of_kind(self, kind: str) -> KindRules:
        found = self._by_kind.get(kind)
        if found is None:
            found = self._by_kind[kind] = KindRules(
                tuple(self.for_kind(kind)),
                self.offline_rule(kind),
                self.never_reported_rule(kind),
                tuple(sorted(self.windows(kind))),
            )
        return found

    def for_kind(self, kind: str, scope: str = "sensor") -> list[Rule]:
        return [
            r
            for r in self.rules
            if r.kind == kind and r.scope == scope and not (r.is_offline or r.is_never_reported)
        ]

    def offline_rule(self, kind: str) -> Rule | None:
        return next((r for r in self.rules if r.kind == kind and r.is_offline), None)

    def never_reported_rule(self, kind: str) -> Rule | None:
        return next((r for r in self.rules if r.is_never_reported and r.watches(kind)), None)

    @property
    def area_rules(self) -> list[Rule]:
        return [r for r in self.rules if r.scope == "area"]

    def per_sensor(self) -> RuleSet:
        """The rules a sensor's own partition evaluates: all but the area rules."""
        return RuleSet(tuple(r for r in self.rules if r.scope != "area"), self.source)

    def windows(self, kind: str) -> set[tuple[str, int]]:
        """(metric, hours) aggregates the rules of ``kind`` read."""
        return {
            (r.metric, hours)
            for r in self.rules
            if r.kind == kind and r.metric and (hours := r.window_hours) is not None
        }


class _FileModel(_Strict):
    version: Literal[1]
    defaults: dict[str, Any] = Field(default_factory=dict)
    rules: list[Any]


# --- loading ------------------------------------------------------------------------------


def load_rules(path: Path | str, default_cooldown: timedelta = timedelta(minutes=30)) -> RuleSet:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError([f"{path}: cannot read the rule file: {exc.strerror or exc}"]) from exc
    return parse_rules(text, str(path), default_cooldown)


def parse_rules(
    text: str, source: str = "<rules>", default_cooldown: timedelta = timedelta(minutes=30)
) -> RuleSet:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise RulesError([f"{source}{where}: not valid YAML: {exc}"]) from exc
    problems: list[str] = []

    def report(loc: Sequence[str | int], message: str, rule_id: str | None = None) -> None:
        line = _line_of(root, loc)
        where = f"{source} line {line}" if line else source
        who = f"rule {rule_id!r}: " if rule_id else ""
        problems.append(f"{where}: {who}{message}")

    try:
        top = _FileModel.model_validate(document)
    except ValidationError as exc:
        for error in exc.errors():
            loc = [str(p) if not isinstance(p, int) else p for p in error["loc"]]
            report(loc, f"{'.'.join(map(str, loc)) or 'file'}: {error['msg']}")
        raise RulesError(problems) from None
    file_cooldown = default_cooldown
    if "cooldown" in top.defaults:
        try:
            file_cooldown = parse_duration(top.defaults["cooldown"])
        except ValueError as exc:
            report(["defaults", "cooldown"], f"defaults.cooldown: {exc}")
    unknown_defaults = set(top.defaults) - {"cooldown"}
    if unknown_defaults:
        report(["defaults"], f"defaults: unknown settings {sorted(unknown_defaults)}")

    rules: list[Rule] = []
    seen: set[str] = set()
    for index, item in enumerate(top.rules):
        rule_id = item.get("id") if isinstance(item, dict) else None
        name = rule_id if isinstance(rule_id, str) else f"#{index + 1}"
        try:
            rule = Rule.model_validate(item)
        except ValidationError as exc:
            for error in exc.errors():
                field = ".".join(str(p) for p in error["loc"]) or "rule"
                report(["rules", index, *error["loc"]], f"{field}: {error['msg']}", name)
            continue
        cooldown = rule.cooldown if rule.cooldown is not None else file_cooldown
        rule = rule.model_copy(update={"cooldown": cooldown})
        for field, message in rule_problems(rule):
            report(["rules", index, field], message, rule.id)
        if rule.id in seen:
            report(["rules", index, "id"], "id: used by an earlier rule too", rule.id)
        seen.add(rule.id)
        if rule.enabled:
            rules.append(rule)
    if problems:
        raise RulesError(problems)
    return RuleSet(tuple(rules), source)


def rule_problems(rule: Rule) -> Iterator[tuple[str, str]]:
    """(field, problem) for what the types alone cannot check."""
    if not RULE_ID.fullmatch(rule.id):
        yield "id", "id: use lower-case letters, digits, '-', '_' or '.' (at most 64)"
    set_comparators = [name for name in COMPARATORS if getattr(rule, name) is not None]
    if rule.is_never_reported:
        yield from _never_reported_problems(rule, set_comparators)
        return
    kind = KINDS.get(rule.kind)
    if kind is None:
        yield "kind", f"kind: unknown kind {rule.kind!r}; known kinds: {', '.join(KINDS)}"
        return
    if rule.is_offline:
        extra = [f for f in ("metric", "window", *set_comparators) if getattr(rule, f) is not None]
        if extra or rule.scope != "sensor":
            yield "offline_after", "an offline rule takes no metric, threshold or area scope"
        if rule.offline_after is not None and rule.offline_after <= timedelta(0):
            yield "offline_after", "offline_after must be longer than zero"
        return
    if rule.metric is None:
        yield "metric", "metric: missing (or give offline_after for a staleness rule)"
        return
    numeric_derived = {f.name for f in kind.derived if f.sql_type != "text"}
    metric = kind.by_name.get(rule.metric)
    if metric is None and rule.metric not in numeric_derived:
        known = [*kind.by_name, *sorted(numeric_derived)]
        yield "metric", f"metric: {rule.metric!r} is not a number of kind {kind.name!r}: {known}"
        return
    if len(set_comparators) != 1:
        listed = ", ".join(COMPARATORS)
        yield "metric", f"give exactly one threshold of {listed} (found {set_comparators or 0})"
        return
    op, limit = rule.comparator
    if metric is not None and not metric.minimum <= limit <= metric.maximum:
        yield (
            op,
            (
                f"{op} ({limit:g}) is outside what {metric.name} can read "
                f"({metric.minimum:g}..{metric.maximum:g} {metric.unit})"
            ),
        )
    yield from _hysteresis_problems(rule, op, limit)
    yield from _window_problems(rule)
    if rule.min_duration < timedelta(0):
        yield "for", "for: a duration cannot be negative"
    if rule.scope == "area" and rule.area is None:
        yield "scope", "scope 'area' needs an 'area' block with more_than"
    if rule.scope == "sensor" and rule.area is not None:
        yield "area", "an 'area' block needs scope: area"
    if rule.scope == "area" and rule.window is not None:
        yield "window", "an area rule reads each sensor's latest value: it takes no window"
    if rule.area is not None:
        if not 0 <= rule.area.more_than < 1:
            yield "area", f"area.more_than ({rule.area.more_than}) must be in [0, 1)"
        if rule.area.clear_share > rule.area.more_than:
            yield (
                "area",
                (
                    f"area.clear_at_most ({rule.area.clear_share}) must not exceed "
                    f"more_than ({rule.area.more_than})"
                ),
            )


def _never_reported_problems(rule: Rule, comparators: list[str]) -> Iterator[tuple[str, str]]:
    if rule.kind != ANY_KIND and rule.kind not in KINDS:
        known = ", ".join([ANY_KIND, *KINDS])
        yield "kind", f"kind: unknown kind {rule.kind!r}; known kinds: {known}"
    fields = ("metric", "window", "offline_after", "area", *comparators)
    if [f for f in fields if getattr(rule, f) is not None] or rule.scope != "sensor":
        yield (
            "never_reported_after",
            "a never-reported rule takes no metric, threshold, offline_after or area scope",
        )
    if rule.never_reported_after is not None and rule.never_reported_after <= timedelta(0):
        yield "never_reported_after", "never_reported_after must be longer than zero"


def _hysteresis_problems(rule: Rule, op: str, limit: float) -> Iterator[tuple[str, str]]:
    if rule.clear_below is not None and rule.clear_above is not None:
        yield "clear_below", "give clear_below or clear_above, not both"
    elif rule.clear_below is not None:
        if op not in ("above", "at_least"):
            yield "clear_below", f"clear_below goes with above/at_least, not {op}"
        elif rule.clear_below > limit:
            yield (
                "clear_below",
                (
                    f"clear_below ({rule.clear_below:g}) must be below {op} ({limit:g}), "
                    "or a value between them would open and clear the alert at once"
                ),
            )
    elif rule.clear_above is not None:
        if op not in ("below", "at_most"):
            yield "clear_above", f"clear_above goes with below/at_most, not {op}"
        elif rule.clear_above < limit:
            yield (
                "clear_above",
                (
                    f"clear_above ({rule.clear_above:g}) must be above {op} ({limit:g}), "
                    "or a value between them would open and clear the alert at once"
                ),
            )


def _window_problems(rule: Rule) -> Iterator[tuple[str, str]]:
    if rule.window is None:
        if rule.min_hours is not None:
            yield "min_hours", "min_hours needs a window"
        return
    seconds = rule.window.total_seconds()
    hours = seconds / 3600
    allowed = WINDOWED_METRICS.get(rule.kind, frozenset())
    if rule.metric not in allowed:
        yield (
            "window",
            (
                f"window: only {sorted(allowed) or 'no metrics'} of kind {rule.kind!r} have "
                f"windowed means (not {rule.metric!r}); use 'for' for a minimum duration instead"
            ),
        )
    elif not math.isclose(hours, round(hours)) or not 1 <= hours <= MAX_WINDOW_HOURS:
        yield "window", f"window must be whole hours from 1h to {MAX_WINDOW_HOURS}h"
    elif rule.min_hours is not None and rule.min_hours > round(hours):
        yield "min_hours", f"min_hours ({rule.min_hours}) exceeds the window ({round(hours)}h)"


def _line_of(root: yaml.Node | None, loc: Sequence[str | int]) -> int | None:
    """1-based line of the deepest node along ``loc`` (where a missing field would go)."""
    node, line = root, None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), None)
            if node is None:
                # The key exists (a bad value), or the field is missing: point at the mapping.
                break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if part < len(node.value) else None
        else:
            break
    if node is not None:
        line = node.start_mark.line + 1
    return line
