"""The day's bulletin from hourly means: pure functions, no I/O.

Per station:
- air: the daily VN_AQI of Decision 1459/QĐ-TCMT (24-hour means for PM, the day's highest 1-hour
  mean for the gases, O3 the larger of its 1-hour and 8-hour sub-indices; ``daily_aqi``), its band
  and dominant pollutant; for each QCVN 05:2023/BTNMT limit of the alert rules, the hours whose
  hourly mean breaks it (a 24-hour limit also reports the day's mean and whether it breaks it);
- water: the VN_WQI (Decision 1460/QĐ-TCMT) of the day's mean of each parameter, and its band;
- completeness: hours with data / 24.
Per ward (the station's area): the worst station (highest AQI, lowest WQI), the hours in which
any station broke a limit, and the hours in which any station reported.
The limits come from the rule set, never re-typed here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from urbanpulse.alerts.rules import Rule
from urbanpulse.indices.vn_aqi import POLLUTANTS, daily_aqi
from urbanpulse.indices.vn_wqi import INPUTS, Combination, water_quality_index

HOURS = 24
LIMIT_SOURCE = "QCVN 05:2023"

# One station's day: metric -> 24 hourly means (00h local first), None where no data.
HourlySeries = Mapping[str, Sequence[float | None]]


@dataclass(frozen=True)
class StationDay:
    sensor_id: str
    kind: str  # "air" or "water"
    area_id: str | None
    hours: HourlySeries


@dataclass(frozen=True)
class LimitHours:
    rule_id: str
    metric: str
    limit: float
    window_hours: int
    hours_above: list[int]  # local hours (0..23) whose hourly mean breaks the limit
    daily_mean: float | None = None  # 24-hour limits: the day's mean ...
    exceeded: bool | None = None  # ... and whether it breaks the limit

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rule": self.rule_id,
            "metric": self.metric,
            "limit": self.limit,
            "window_hours": self.window_hours,
            "hours_above": len(self.hours_above),
            "hours": self.hours_above,
        }
        if self.window_hours > 1:
            out["daily_mean"] = None if self.daily_mean is None else round(self.daily_mean, 1)
            out["exceeded"] = self.exceeded
        return out


@dataclass(frozen=True)
class IndexValue:
    name: str  # "vn_aqi" or "wqi"
    value: int
    band: dict[str, str]
    dominant: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.name,
            "value": self.value,
            "band": self.band,
            "dominant": self.dominant,
        }


@dataclass(frozen=True)
class Entry:
    """One line of the bulletin: a station or a ward."""

    scope: str  # "station" or "ward"
    id: str
    kind: str
    area_id: str | None
    index: IndexValue | None
    limits: list[LimitHours]
    hours_with_data: int
    stations: list[str] = field(default_factory=list)

    @property
    def completeness(self) -> float:
        return round(self.hours_with_data / HOURS, 3)

    def to_json(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "id": self.id,
            "kind": self.kind,
            "area_id": self.area_id,
            "index": None if self.index is None else self.index.to_json(),
            "limits": [lim.to_json() for lim in self.limits],
            "hours_with_data": self.hours_with_data,
            "completeness": self.completeness,
            **({"stations": self.stations} if self.scope == "ward" else {}),
        }


@dataclass(frozen=True)
class Bulletin:
    day: date
    stations: list[Entry]
    wards: list[Entry]

    def to_json(self) -> dict[str, Any]:
        return {
            "date": self.day.isoformat(),
            "timezone": "Asia/Ho_Chi_Minh",
            "stations": [s.to_json() for s in self.stations],
            "wards": [w.to_json() for w in self.wards],
        }


def air_limit_rules(rules: Iterable[Rule]) -> list[Rule]:
    """The rules that carry a QCVN 05:2023 limit on an hourly-averaged air pollutant."""
    return [
        r
        for r in rules
        if r.kind == "air"
        and r.scope == "sensor"
        and r.metric in POLLUTANTS
        and r.window_hours is not None
        and LIMIT_SOURCE in r.citation
    ]


def _hours_with_data(hours: HourlySeries) -> list[int]:
    return [h for h in range(HOURS) if any(_at(s, h) is not None for s in hours.values())]


def _at(series: Sequence[float | None], hour: int) -> float | None:
    return series[hour] if hour < len(series) else None


def limit_hours(rule: Rule, series: Sequence[float | None]) -> LimitHours:
    """The hours whose mean breaks ``rule`` (and for a longer window, the day's mean)."""
    assert rule.metric is not None and rule.window_hours is not None
    above = [h for h in range(HOURS) if (c := _at(series, h)) is not None and rule.triggers(c)]
    if rule.window_hours == 1:
        return LimitHours(rule.id, rule.metric, rule.threshold, 1, above)
    present = [c for c in series if c is not None]
    enough = len(present) >= (rule.min_hours or 1)
    mean = sum(present) / len(present) if present and enough else None
    exceeded = None if mean is None else rule.triggers(mean)
    return LimitHours(
        rule.id, rule.metric, rule.threshold, rule.window_hours, above, mean, exceeded
    )


def station_entry(station: StationDay, rules: Sequence[Rule], combination: Combination) -> Entry:
    index: IndexValue | None = None
    limits: list[LimitHours] = []
    if station.kind == "air":
        aqi = daily_aqi({p: s for p, s in station.hours.items() if p in POLLUTANTS})
        if aqi is not None:
            index = IndexValue("vn_aqi", aqi.value, aqi.band.to_json(), aqi.dominant)
        limits = [
            limit_hours(r, station.hours.get(r.metric or "", ())) for r in air_limit_rules(rules)
        ]
    elif station.kind == "water":
        means = {
            name: sum(present) / len(present)
            for name, series in station.hours.items()
            if name in INPUTS or name == "temperature"
            if (present := [c for c in series if c is not None])
        }
        wqi = water_quality_index(means, combination)
        if wqi is not None:
            index = IndexValue("wqi", wqi.value, wqi.band.to_json())
    hours = len(_hours_with_data(station.hours))
    return Entry("station", station.sensor_id, station.kind, station.area_id, index, limits, hours)


def ward_entry(
    area_id: str, kind: str, stations: Sequence[StationDay], entries: Sequence[Entry]
) -> Entry:
    """A ward from its stations: the worst index, limit hours and data hours by union."""
    indexed = [e for e in entries if e.index is not None]
    index: IndexValue | None = None
    if indexed:
        # Air: the highest AQI is the worst; water: the lowest WQI.
        worst = max if kind == "air" else min
        index = worst(indexed, key=lambda e: e.index.value if e.index else 0).index
    limits = []
    for i, first in enumerate(entries[0].limits if entries else []):
        union = sorted({h for e in entries for h in e.limits[i].hours_above})
        means = [e.limits[i] for e in entries if e.limits[i].exceeded is not None]
        worst_mean = max(means, key=lambda lim: lim.daily_mean or 0.0, default=None)
        limits.append(
            LimitHours(
                first.rule_id,
                first.metric,
                first.limit,
                first.window_hours,
                union,
                None if worst_mean is None else worst_mean.daily_mean,
                None if worst_mean is None else any(lim.exceeded for lim in means),
            )
        )
    hours = len({h for s in stations for h in _hours_with_data(s.hours)})
    ids = sorted(s.sensor_id for s in stations)
    return Entry("ward", area_id, kind, area_id, index, limits, hours, ids)


def compute_bulletin(
    day: date,
    stations: Sequence[StationDay],
    rules: Sequence[Rule],
    combination: Combination = Combination.WEIGHTED_CUBE_ROOT,
) -> Bulletin:
    ordered = sorted(stations, key=lambda s: (s.kind, s.area_id or "", s.sensor_id))
    entries = [station_entry(s, rules, combination) for s in ordered]
    groups: dict[tuple[str, str], list[int]] = {}
    for i, s in enumerate(ordered):
        if s.area_id is not None:
            groups.setdefault((s.kind, s.area_id), []).append(i)
    wards = [
        ward_entry(area, kind, [ordered[i] for i in idx], [entries[i] for i in idx])
        for (kind, area), idx in sorted(groups.items())
    ]
    return Bulletin(day, entries, wards)


CSV_HEADER = [
    "date",
    "scope",
    "id",
    "kind",
    "area_id",
    "index",
    "value",
    "band",
    "dominant",
    "hours_with_data",
    "completeness",
    "limits",
]


def csv_rows(bulletin: Bulletin) -> list[list[Any]]:
    """One row per station and ward; limits as ``rule:hours_above`` pairs separated by ``;``."""
    rows: list[list[Any]] = [CSV_HEADER]
    for e in [*bulletin.stations, *bulletin.wards]:
        idx = e.index
        rows.append(
            [
                bulletin.day.isoformat(),
                e.scope,
                e.id,
                e.kind,
                e.area_id or "",
                "" if idx is None else idx.name,
                "" if idx is None else idx.value,
                "" if idx is None else idx.band["key"],
                "" if idx is None or idx.dominant is None else idx.dominant,
                e.hours_with_data,
                e.completeness,
                ";".join(f"{lim.rule_id}:{len(lim.hours_above)}" for lim in e.limits),
            ]
        )
    return rows
