"""Scenario files: what to simulate, where, when, with which events and which expectations.

A scenario is a YAML file (see ``scenarios/README.md`` for the format).  ``load_scenario``
validates it with pydantic and against the shipped areas, roads and the kind catalogue; every
problem is reported as ``<file> line <n>: <path>: <problem>``, all problems at once.

Time in a scenario: ``start`` is a local time of day (``"06:00"``: the most recent day on which
the whole run has already happened, so accelerated runs publish only past timestamps, which the
platform accepts for 30 days), ``now`` or ``now-3h``, or an ISO 8601 instant with its offset.
Event and expectation times are local times of day (the first such time at or after the
start), offsets from the start (``+1h30m``) or ISO 8601 instants.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from urbanpulse.core.catalogue import KINDS
from urbanpulse.core.untrusted import is_number
from urbanpulse.simulators.conditions import VIETNAM_UTC_OFFSET
from urbanpulse.simulators.fleet import CITY_PROVINCES, areas_of_city
from urbanpulse.simulators.traffic import ROADS
from urbanpulse.simulators.yamlmarks import (
    YamlSyntaxError,
    dotted,
    line_of,
    load_with_lines,
)

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_NOW = re.compile(r"^now(?:-(.+))?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class ScenarioError(ValueError):
    """An invalid scenario file; ``problems`` are lines like ``f.yaml line 14: x.y: what``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def parse_duration(value: Any) -> timedelta:
    """``"90s"``, ``"2m"``, ``"1h30m"``, ``"1.5h"``, ``"2d"`` or a number of seconds."""
    if is_number(value):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip().replace(" ", "")
        parts = _DURATION_PART.findall(text)
        if "".join(a + b for a, b in parts) != text:
            raise ValueError(f"{value!r} is not a duration (e.g. 90s, 2m, 1h30m, 1.5h)")
        seconds = sum(float(a) * _UNITS[b] for a, b in parts)
    else:
        raise ValueError(f"{value!r} is not a duration (e.g. 90s, 2m, 1h30m, 1.5h)")
    if seconds < 0:
        raise ValueError(f"{value!r}: a duration cannot be negative")
    return timedelta(seconds=seconds)


def check_time(value: Any) -> str:
    """A scenario time: ``HH:MM`` (local), ``+<duration>`` (after the start) or ISO 8601."""
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a time: use HH:MM, +1h30m or ISO 8601 with offset")
    text = value.strip()
    if _CLOCK.match(text):
        return text
    if text.startswith("+"):
        parse_duration(text[1:])
        return text
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{value!r} is not a time: use HH:MM (local), +1h30m (after the start) or "
            "ISO 8601 with an offset"
        ) from None
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no UTC offset (write e.g. 2026-11-23T07:00:00+07:00)")
    return text


def resolve_time(value: str, start: datetime) -> datetime:
    """The instant a (checked) scenario time means, for a run that starts at ``start``."""
    if clock := _CLOCK.match(value):
        local_start = start.astimezone(UTC) + VIETNAM_UTC_OFFSET
        local = local_start.replace(
            hour=int(clock[1]), minute=int(clock[2]), second=0, microsecond=0
        )
        if local < local_start:
            local += timedelta(days=1)
        return local - VIETNAM_UTC_OFFSET
    if value.startswith("+"):
        return start + parse_duration(value[1:])
    return datetime.fromisoformat(value).astimezone(UTC)


# A duration like 90s, 2m, 1h30m; a time like 07:30 (local), +1h30m (after the start) or ISO.
Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Time = Annotated[str, BeforeValidator(check_time)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _known_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
    return kind


class FleetEntry(_Model):
    kind: str
    count: int = Field(gt=0, le=10_000)
    area: str | None = None
    road: str | None = None
    interval: Duration | None = None

    _kind = field_validator("kind")(_known_kind)


class ClockSkew(_Model):
    sensors: list[str] = Field(min_length=1)
    offset: Duration
    ahead: bool = False  # clock runs ahead (future timestamps); default: behind


class Faults(_Model):
    duplicate: float = Field(default=0.0, ge=0, le=1)
    out_of_order: float = Field(default=0.0, ge=0, le=1)
    late: float = Field(default=0.0, ge=0, le=1)
    late_by: Duration = timedelta(minutes=10)
    malformed: float = Field(default=0.0, ge=0, le=1)
    clock_skew: ClockSkew | None = None
    silent: list[str] = Field(default_factory=list)


class Gateway(_Model):
    batch: int = Field(default=1, ge=1, le=100)
    faults: Faults = Field(default_factory=lambda: Faults())


class _Event(_Model):
    at: Time


class PollutionEpisode(_Event):
    type: Literal["pollution_episode"]
    area: str
    duration: Duration
    factor: float = Field(default=3.0, gt=1, le=50)
    ramp: Duration = timedelta(minutes=15)


class Rain(_Event):
    type: Literal["rain"]
    duration: Duration
    intensity: float = Field(default=0.8, gt=0, le=1)
    area: str | None = None


class WaterPlume(_Event):
    type: Literal["water_plume"]
    area: str
    duration: Duration
    strength: float = Field(default=1.0, gt=0, le=1)


class BinOverflowWave(_Event):
    type: Literal["bin_overflow_wave"]
    area: str
    duration: Duration
    rate: float = Field(default=60.0, gt=0, le=1000, description="extra fill, % per hour")


class BinFire(_Event):
    type: Literal["bin_fire"]
    sensor: str
    duration: Duration = timedelta(minutes=30)


class FacilityUpset(_Event):
    """A landfill or incinerator in trouble: one sensor, or every facility sensor of an area."""

    type: Literal["facility_upset"]
    duration: Duration
    sensor: str | None = None
    area: str | None = None
    strength: float = Field(default=1.0, gt=0, le=1)
    ramp: Duration = timedelta(minutes=10)


class TrafficIncident(_Event):
    type: Literal["traffic_incident"]
    road: str
    duration: Duration
    code: int = Field(default=1, ge=1, le=999)


class SensorOutage(_Event):
    type: Literal["sensor_outage"]
    duration: Duration
    sensors: list[str] = Field(default_factory=list)
    area: str | None = None
    kind: str | None = None


class MalformedBurst(_Event):
    type: Literal["malformed_burst"]
    count: int = Field(gt=0, le=100_000)
    kind: str | None = None


class Burst(_Event):
    type: Literal["burst"]
    sensor: str
    count: int = Field(gt=0, le=100_000)
    every: Duration = timedelta(seconds=1)


Event = Annotated[
    PollutionEpisode
    | Rain
    | WaterPlume
    | BinOverflowWave
    | BinFire
    | FacilityUpset
    | TrafficIncident
    | SensorOutage
    | MalformedBurst
    | Burst,
    Field(discriminator="type"),
]


class _Series(_Model):
    kind: str
    metric: str
    area: str | None = None

    _kind = field_validator("kind")(_known_kind)


class HourlyMeanAbove(_Series):
    threshold: float
    by: Time


class HourlyMeanBelow(_Series):
    threshold: float
    by: Time


class HourlyPeak(_Series):
    peak: Time
    over: Time
    ratio: float = Field(default=1.2, gt=0)


class MaxAbove(_Series):
    threshold: float
    sensor: str | None = None


class RowsStored(_Model):
    kind: str | None = None
    area: str | None = None
    at_least: int = Field(default=0, ge=0)
    at_most: int | None = Field(default=None, ge=0)


class NoRowsFrom(_Model):
    sensor: str
    since: Time | None = None
    until: Time | None = None


class AlertRaised(_Model):
    rule: str
    area: str | None = None
    after: Time
    within: Duration = timedelta(minutes=2)


class Expectation(_Model):
    hourly_mean_above: HourlyMeanAbove | None = None
    hourly_mean_below: HourlyMeanBelow | None = None
    hourly_peak: HourlyPeak | None = None
    max_above: MaxAbove | None = None
    rows_stored: RowsStored | None = None
    no_rows_from: NoRowsFrom | None = None
    alert_raised: AlertRaised | None = None

    @property
    def name(self) -> str:
        [name] = [n for n in type(self).model_fields if getattr(self, n) is not None]
        return name

    @property
    def spec(self) -> Any:
        return getattr(self, self.name)


class Scenario(_Model):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    description: str = Field(min_length=1, max_length=200)
    city: Literal["hcmc", "hanoi"]
    start: str
    duration: Duration
    speed: float = Field(default=60.0, gt=0, le=100_000)
    seed: int = 1
    sensor_prefix: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,40}$")
    gateway: Gateway = Field(default_factory=lambda: Gateway())
    fleet: list[FleetEntry] = Field(min_length=1)
    events: list[Event] = Field(default_factory=list)
    expect: list[Expectation] = Field(default_factory=list)

    @field_validator("start")
    @classmethod
    def _start(cls, value: str) -> str:
        if isinstance(value, str) and (now := _NOW.match(value.strip())):
            if now[1]:
                parse_duration(now[1])
            return value.strip()
        if isinstance(value, str) and _CLOCK.match(value.strip()):
            return value.strip()
        try:
            parsed = datetime.fromisoformat(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"{value!r} is not a start: use HH:MM (local), now, now-3h or ISO 8601"
            ) from None
        if parsed.tzinfo is None:
            raise ValueError(f"{value!r} has no UTC offset")
        return value

    @property
    def prefix(self) -> str:
        return self.sensor_prefix or {"hcmc": "hcm", "hanoi": "hn"}[self.city]

    def start_at(self, now: datetime) -> datetime:
        """The run's first simulated instant, for a run launched at ``now``."""
        text = self.start
        if match := _NOW.match(text):
            return now - (parse_duration(match[1]) if match[1] else timedelta(0))
        if _CLOCK.match(text):
            start = resolve_time(text, now - timedelta(days=1))
            while start + self.duration > now:
                start -= timedelta(days=1)
            return start
        return datetime.fromisoformat(text).astimezone(UTC)

    def fleet_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for entry in self.fleet:
            counts[entry.kind] = counts.get(entry.kind, 0) + entry.count
        return counts


# --------------------------------------------------------------------------- loading


def load_scenario(path: Path | str) -> Scenario:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError([f"{path}: cannot read the file: {exc}"]) from exc
    return parse_scenario(text, str(path), default_name=path.stem)


def parse_scenario(
    text: str, source: str = "<scenario>", default_name: str | None = None
) -> Scenario:
    try:
        data, lines = load_with_lines(text)
    except YamlSyntaxError as exc:
        where = f"{source} line {exc.line}" if exc.line else source
        raise ScenarioError([f"{where}: {exc.message}"]) from exc
    if not isinstance(data, dict):
        raise ScenarioError([f"{source} line 1: a scenario must be a mapping of keys to values"])
    if default_name is not None and "name" not in data:
        data = {"name": default_name, **data}
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            message = str(error["msg"]).removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown field"
            elif error["type"] == "missing":
                message = "missing (required)"
            problems.append(_at(source, lines, tuple(error["loc"]), message))
        raise ScenarioError(problems) from None
    problems = [_at(source, lines, loc, msg) for loc, msg in semantic_problems(scenario)]
    if problems:
        raise ScenarioError(problems)
    return scenario


def _at(
    source: str, lines: dict[tuple[str | int, ...], int], loc: tuple[Any, ...], msg: str
) -> str:
    path, line = line_of(tuple(loc), lines)
    where = f"{source} line {line}" if line else source
    return f"{where}: {dotted(path)}: {msg}"


def fleet_sensor_names(scenario: Scenario) -> set[str]:
    """Local names (``air-0003``) of the sensors the fleet defines, without the prefix."""
    names: set[str] = set()
    for kind, count in scenario.fleet_counts().items():
        names |= {f"{kind}-{i:04d}" for i in range(count)}
    return names


def semantic_problems(scenario: Scenario) -> list[tuple[tuple[str | int, ...], str]]:
    """What pydantic cannot see: areas, roads, sensors, metrics and times that do not exist."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    areas = areas_of_city(scenario.city)
    roads = ROADS[scenario.city]
    sensors = fleet_sensor_names(scenario)
    province = CITY_PROVINCES[scenario.city]

    def area(loc: tuple[str | int, ...], area_id: str | None) -> None:
        if area_id is not None and area_id not in areas:
            problems.append(
                (
                    loc,
                    f"unknown area {area_id!r} in {scenario.city} (e.g. {province}, "
                    f"{next(a for a in areas if a != province)})",
                )
            )

    def sensor(loc: tuple[str | int, ...], name: str | None) -> None:
        if name is not None and name not in sensors:
            problems.append(
                (loc, f"unknown sensor {name!r}: the fleet defines {_sensor_range(scenario)}")
            )

    def road(loc: tuple[str | int, ...], name: str) -> None:
        if name not in roads:
            problems.append((loc, f"unknown road {name!r} (known: {', '.join(roads)})"))

    def metric(loc: tuple[str | int, ...], kind: str, name: str) -> None:
        if name not in KINDS[kind].by_name:
            problems.append(
                (
                    loc,
                    f"unknown metric {name!r} for kind {kind!r} "
                    f"(known: {', '.join(KINDS[kind].by_name)})",
                )
            )

    absolute_start = not (_NOW.match(scenario.start) or _CLOCK.match(scenario.start))
    reference = scenario.start_at(datetime(2026, 1, 15, 12, tzinfo=UTC))

    def time(loc: tuple[str | int, ...], value: str | None) -> None:
        if value is None:
            return
        relative = value.startswith("+") or _CLOCK.match(value)
        if not relative and not absolute_start:
            problems.append(
                (loc, f"{value!r}: an ISO time needs an ISO start; use HH:MM or +offset")
            )
            return
        if _CLOCK.match(value) and _NOW.match(scenario.start):
            return  # depends on the actual start; resolved when the run begins
        instant = resolve_time(value, reference)
        if not reference <= instant <= reference + scenario.duration + timedelta(hours=1):
            problems.append((loc, f"{value!r} is outside the scenario's time span"))

    loc: tuple[str | int, ...]
    for i, entry in enumerate(scenario.fleet):
        loc = ("fleet", i)
        if (entry.area is None) == (entry.road is None):
            problems.append((loc, "give exactly one of area or road"))
        area((*loc, "area"), entry.area)
        if entry.road is not None:
            road((*loc, "road"), entry.road)
            if entry.kind != "traffic_camera":
                problems.append(((*loc, "road"), "only traffic_camera sensors stand on roads"))
    faults = scenario.gateway.faults
    if faults.clock_skew is not None:
        for j, name in enumerate(faults.clock_skew.sensors):
            sensor(("gateway", "faults", "clock_skew", "sensors", j), name)
        if faults.clock_skew.ahead and faults.clock_skew.offset > timedelta(minutes=4):
            problems.append(
                (
                    ("gateway", "faults", "clock_skew", "offset"),
                    "a clock ahead by more than 4 minutes makes the platform reject every reading",
                )
            )
    for j, name in enumerate(faults.silent):
        sensor(("gateway", "faults", "silent", j), name)
    for i, event in enumerate(scenario.events):
        loc = ("events", i)
        time((*loc, "at"), event.at)
        for field in ("area", "sensor", "road", "kind"):
            value = getattr(event, field, None)
            if value is None:
                continue
            if field == "area":
                area((*loc, field), value)
            elif field == "sensor":
                sensor((*loc, field), value)
            elif field == "road":
                road((*loc, field), value)
            elif value not in KINDS:
                problems.append(((*loc, field), f"unknown kind {value!r}"))
        if isinstance(event, SensorOutage):
            for j, name in enumerate(event.sensors):
                sensor((*loc, "sensors", j), name)
            if not event.sensors and event.area is None and event.kind is None:
                problems.append((loc, "name the sensors, or an area and/or kind, to silence"))
    for i, expectation in enumerate(scenario.expect):
        names = [n for n in Expectation.model_fields if getattr(expectation, n) is not None]
        if len(names) != 1:
            problems.append(
                (
                    ("expect", i),
                    "each expectation is exactly one of " + ", ".join(Expectation.model_fields),
                )
            )
            continue
        name = names[0]
        spec = expectation.spec
        loc = ("expect", i, name)
        area((*loc, "area"), getattr(spec, "area", None))
        sensor((*loc, "sensor"), getattr(spec, "sensor", None))
        if isinstance(spec, _Series):
            metric((*loc, "metric"), spec.kind, spec.metric)
        if isinstance(spec, RowsStored) and spec.kind is not None and spec.kind not in KINDS:
            problems.append(((*loc, "kind"), f"unknown kind {spec.kind!r}"))
        for field in ("by", "peak", "over", "since", "until", "after"):
            time((*loc, field), getattr(spec, field, None))
    return problems


def _sensor_range(scenario: Scenario) -> str:
    return ", ".join(
        f"{kind}-0000..{kind}-{count - 1:04d}" for kind, count in scenario.fleet_counts().items()
    )
