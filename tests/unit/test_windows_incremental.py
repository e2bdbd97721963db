"""The incremental hourly window against a plain model of what it must compute.

The window keeps each sensor's earlier hours prepared between readings of one hour; whatever
the readings do (late ones, gaps, hours rolling over, seeds, evictions, the cache forgotten),
every air reading's VN_AQI must be the one Decision 1459 gives on hourly means averaged from
the readings themselves.  The model below keeps the readings' values per sensor and hour, as
the window's documented rules say (a day kept past the newest hour, least recently used
sensors evicted), and scores them with the decision's NowCast written out here and the
breakpoint tables (``sub_index``, checked by hand in ``test_vn_aqi``).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from urbanpulse.core.envelope import Reading
from urbanpulse.indices.vn_aqi import PM, POLLUTANTS, sub_index
from urbanpulse.indices.vn_wqi import Combination
from urbanpulse.stream.derive import derive_indices
from urbanpulse.stream.windows import HourlyMeans, HourlySeed

T0 = datetime(2026, 11, 22, tzinfo=UTC)
HANOI = timezone(timedelta(hours=7))  # whole hours ahead: the same hours, written otherwise
SENSORS = ["a", "b", "c"]


def reference_nowcast(means: list[float | None]) -> float | None:
    """Decision 1459's NowCast of c1..c12 (newest first), written out from the formula:
    w = max(min/max, 1/2) rounded to two decimals, Σ w^(i-1)·c_i / Σ w^(i-1) over the hours
    present; none unless two of c1, c2, c3 are present."""
    if sum(c is not None for c in means[:3]) < 2:
        return None
    present = [(i, c) for i, c in enumerate(means) if c is not None]
    highest = max(c for _, c in present)
    if highest == 0:
        return 0.0
    w = round(max(min(c for _, c in present) / highest, 0.5), 2)
    return sum(w**i * c for i, c in present) / sum(w**i for i, _ in present)


def reference_aqi(means: dict[str, list[float | None]]) -> dict[str, Any] | None:
    """The hourly VN_AQI: gases from the current hour's mean, PM from the NowCast; the highest
    sub-index, PM first on ties; none without a PM sub-index."""
    subs: dict[str, int] = {}
    for pollutant in POLLUTANTS:
        series = means[pollutant]
        concentration = reference_nowcast(series) if pollutant in PM else series[0]
        if concentration is not None:
            subs[pollutant] = sub_index(pollutant, concentration, "1h")
    if not any(p in subs for p in PM):
        return None
    value = max(subs.values())
    return {
        "vn_aqi": value,
        "vn_aqi_pollutant": next(p for p in POLLUTANTS if subs.get(p) == value),
    }


@dataclass
class Model:
    """Per sensor and hour (hours since T0), each pollutant's values: [stored total, stored
    count] first when seeded, then the readings' values in the order they were added."""

    max_sensors: int
    sensors: OrderedDict[str, dict[int, dict[str, list[float]]]] = field(
        default_factory=OrderedDict
    )

    def keep(self, sensor: str, hours: dict[int, dict[str, list[float]]]) -> None:
        self.sensors[sensor] = hours
        self.sensors.move_to_end(sensor)
        while len(self.sensors) > self.max_sensors:
            self.sensors.popitem(last=False)

    def add(self, sensor: str, hour: int, values: dict[str, float]) -> None:
        if sensor in self.sensors:
            self.sensors.move_to_end(sensor)
        else:
            self.keep(sensor, {})
        hours = self.sensors[sensor]
        bucket = hours.setdefault(hour, {})
        for pollutant, value in values.items():
            bucket.setdefault(pollutant, [0.0, 0]).append(value)
        if len(hours) > 24:  # a day is kept before the newest hour, once more is held
            newest = max(hours)
            for old in [h for h in hours if h <= newest - 24]:
                del hours[old]

    def mean(self, sensor: str, hour: int, pollutant: str) -> float | None:
        entry = self.sensors.get(sensor, {}).get(hour, {}).get(pollutant)
        if entry is None:
            return None
        total, count, *values = entry
        return sum([total, *values]) / (count + len(values)) if count or values else None

    def series(self, sensor: str, hour: int, length: int) -> dict[str, list[float | None]]:
        return {p: [self.mean(sensor, hour - k, p) for k in range(length)] for p in POLLUTANTS}


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, each drawn ``weight`` times as often (first ones when shrunk)."""
    return st.sampled_from([s for weight, s in choices for _ in range(weight)]).flatmap(lambda s: s)


# Mostly a steady level (the NowCast's weight then moves above its floor of 1/2), at times
# a round value (ties, zeros) or anything on the scale.
CONCENTRATION = weighted(
    (4, st.floats(30, 60)),
    (1, st.sampled_from([0.0, 12.0, 35.5, 80.0, 250.0])),
    (1, st.floats(0, 700)),
)
VALUES = weighted(
    (3, st.fixed_dictionaries({p: CONCENTRATION for p in POLLUTANTS})),
    (1, st.dictionaries(st.sampled_from(POLLUTANTS), CONCENTRATION)),
)
# Minutes the clock moves between readings: mostly within the hour, at times across it (and
# past a long gap, a step of its own); a share of readings is stamped before the clock (late),
# some by over a day.
ADVANCE = weighted((6, st.integers(0, 3)), (1, st.sampled_from([10, 20, 59, 60, 61, 125])))
LATENESS = weighted((8, st.just(0)), (1, st.integers(1, 180)), (1, st.integers(1, 1800)))
READING = st.tuples(st.sampled_from(SENSORS), ADVANCE, LATENESS, VALUES, st.booleans())
SEED_ROW = st.tuples(
    st.integers(0, 30), st.sampled_from(POLLUTANTS), CONCENTRATION, st.integers(1, 5)
)
STEP = weighted(
    (16, st.tuples(st.just("batch"), st.lists(READING, min_size=1, max_size=8))),
    (1, st.tuples(st.just("gap"), st.integers(60, 3000))),
    (1, st.tuples(st.just("seed"), st.sampled_from(SENSORS), st.lists(SEED_ROW, max_size=12))),
    (1, st.tuples(st.just("forget"))),
)


@settings(max_examples=100)
@given(st.integers(2, 4), st.lists(STEP, min_size=10, max_size=50))
def test_every_air_readings_vn_aqi_is_the_decisions_on_its_hourly_means(
    max_sensors: int, steps: list[tuple[Any, ...]]
) -> None:
    window = HourlyMeans(POLLUTANTS, max_sensors)
    model = Model(max_sensors)
    clock = 0  # minutes since T0
    for step in steps:
        if step[0] == "gap":
            clock += step[1]
        elif step[0] == "forget":
            window.forget_all()
            model.sensors.clear()
        elif step[0] == "seed":
            _, sensor, rows = step
            hour_now = clock // 60
            unique = {(hour_now - back, p): (total, count) for back, p, total, count in rows}
            window.seed(
                [sensor],
                [
                    HourlySeed(sensor, T0 + timedelta(hours=h), p, total, count)
                    for (h, p), (total, count) in unique.items()
                ],
            )
            hours: dict[int, dict[str, list[float]]] = {}
            for (h, p), (total, count) in unique.items():
                hours.setdefault(h, {})[p] = [total, count]
            model.keep(sensor, hours)
        else:
            batch = []
            for sensor, advance, lateness, values, in_hanoi in step[1]:
                clock += advance
                minute = clock - lateness
                ts = T0 + timedelta(minutes=minute)
                ts = ts.astimezone(HANOI) if in_hanoi else ts
                batch.append((minute, Reading(sensor, "air", ts, values, ts, "t")))
            expected: dict[tuple[str, datetime], dict[str, Any]] = {}
            for minute, r in sorted(batch, key=lambda item: item[0]):  # derived in time order
                model.add(r.sensor_id, minute // 60, r.values)
                aqi = reference_aqi(model.series(r.sensor_id, minute // 60, 12))
                if aqi is not None:
                    expected[(r.sensor_id, r.ts)] = aqi
            readings = [r for _, r in batch]
            assert derive_indices(readings, window, Combination.WEIGHTED_CUBE_ROOT) == expected
            for minute, r in batch:  # the alert rules' means, read after the batch
                for span in (1, 8, 24):
                    means = model.series(r.sensor_id, minute // 60, span)["pm25"]
                    present = [m for m in means if m is not None]
                    mean = (sum(present) / len(present), len(present)) if present else None
                    assert window.mean_over(r.sensor_id, r.ts, span, "pm25") == mean
        assert len(window) == len(model.sensors)


def _pm25(sensor: str, at: timedelta, value: float) -> Reading:
    ts = T0 + at
    return Reading(sensor, "air", ts, {"pm25": value}, ts, "t")


def _derive(reading: Reading, window: HourlyMeans) -> dict[tuple[str, datetime], Any]:
    return derive_indices([reading], window, Combination.WEIGHTED_CUBE_ROOT)


def test_a_late_reading_in_an_earlier_hour_counts_in_the_next_nowcast() -> None:
    window = HourlyMeans(POLLUTANTS)
    _derive(_pm25("a", timedelta(minutes=10), 60.0), window)
    first = _pm25("a", timedelta(minutes=70), 80.0)
    # c1 80, c2 60: w = 0.75, (80 + 0.75 * 60) / 1.75 = 71.43 -> 100 + 50/30 * 21.43 = 135.7
    assert _derive(first, window) == {("a", first.ts): {"vn_aqi": 136, "vn_aqi_pollutant": "pm25"}}
    # Late, into hour 0: its mean becomes (60 + 100) / 2 = 80; alone in its hours, no NowCast.
    assert _derive(_pm25("a", timedelta(minutes=40), 100.0), window) == {}
    second = _pm25("a", timedelta(minutes=80), 80.0)
    # c1 80, c2 80: w = 1, NowCast 80 -> the 80 breakpoint, 150 (136 with hour 0 as it was).
    assert _derive(second, window) == {
        ("a", second.ts): {"vn_aqi": 150, "vn_aqi_pollutant": "pm25"}
    }


def test_the_nowcast_weight_follows_the_current_hour_within_it() -> None:
    window = HourlyMeans(POLLUTANTS)
    _derive(_pm25("a", timedelta(minutes=10), 60.0), window)
    first = _pm25("a", timedelta(minutes=70), 70.0)
    # w = 60/70 -> 0.86: (70 + 0.86 * 60) / 1.86 = 65.38 -> 100 + 50/30 * 15.38 = 125.6
    assert _derive(first, window) == {("a", first.ts): {"vn_aqi": 126, "vn_aqi_pollutant": "pm25"}}
    second = _pm25("a", timedelta(minutes=75), 110.0)
    # c1 (70 + 110) / 2 = 90: w = 60/90 -> 0.67, (90 + 0.67 * 60) / 1.67 = 77.96
    # -> 100 + 50/30 * 27.96 = 146.6 (144 with the weight of 0.86 kept)
    assert _derive(second, window) == {
        ("a", second.ts): {"vn_aqi": 147, "vn_aqi_pollutant": "pm25"}
    }


def test_an_hour_is_the_hour_of_the_time_as_written() -> None:
    # India is 5 h 30 ahead: its hours start at half past in UTC, and so do the window's.
    india = timezone(timedelta(hours=5, minutes=30))
    window = HourlyMeans(["pm25"])
    window.add("a", T0 + timedelta(hours=10), {"pm25": 10.0})
    window.add("a", (T0 + timedelta(hours=10, minutes=15)).astimezone(india), {"pm25": 30.0})
    at = T0 + timedelta(hours=10, minutes=20)
    assert window.series("a", at, length=1) == {"pm25": [10.0]}
    assert window.series("a", at.astimezone(india), length=1) == {"pm25": [30.0]}
