from __future__ import annotations

from datetime import UTC, datetime, timedelta

from urbanpulse.core.envelope import Reading
from urbanpulse.indices.vn_aqi import POLLUTANTS, hourly_aqi
from urbanpulse.indices.vn_wqi import Combination, water_quality_index
from urbanpulse.stream.derive import derive_indices
from urbanpulse.stream.windows import HOURS_KEPT, HourlyMeans, HourlySeed

T0 = datetime(2026, 11, 22, 0, 0, tzinfo=UTC)


def air(minutes: float, **values: float) -> Reading:
    ts = T0 + timedelta(minutes=minutes)
    return Reading("a", "air", ts, values, ts, "t")


def test_hourly_means_are_kept_per_event_time_hour_newest_first() -> None:
    means = HourlyMeans(["pm25"])
    for minutes, value in [(5, 10.0), (50, 20.0), (65, 40.0), (185, 7.0)]:
        means.add("a", T0 + timedelta(minutes=minutes), {"pm25": value})
    series = means.series("a", T0 + timedelta(minutes=190), length=4)
    assert series == {"pm25": [7.0, None, 40.0, 15.0]}


def test_seeded_hours_continue_with_new_readings() -> None:
    means = HourlyMeans(["pm25"])
    means.seed(["a"], [HourlySeed("a", T0, "pm25", 30.0, 2)])
    assert means.knows("a") and not means.knows("b")
    means.add("a", T0 + timedelta(minutes=30), {"pm25": 30.0})
    assert means.series("a", T0, length=1) == {"pm25": [20.0]}


def test_old_hours_are_pruned_beyond_a_day() -> None:
    means = HourlyMeans(["pm25"])
    for hour in range(HOURS_KEPT + 5):
        means.add("a", T0 + timedelta(hours=hour), {"pm25": 1.0})
    newest = T0 + timedelta(hours=HOURS_KEPT + 4)
    assert means.series("a", newest, length=HOURS_KEPT + 5)["pm25"][-5:] == [None] * 5


def test_vn_aqi_appears_once_the_nowcast_has_two_of_three_hours() -> None:
    means = HourlyMeans(POLLUTANTS)
    first_hour = derive_indices(
        [air(10, pm25=60.0), air(40, pm25=70.0)], means, Combination.WEIGHTED_CUBE_ROOT
    )
    assert first_hour == {}
    second = air(70, pm25=80.0, no2=50.0)
    derived = derive_indices([second], means, Combination.WEIGHTED_CUBE_ROOT)
    expected = hourly_aqi({"pm25": [80.0, 65.0], "no2": [50.0]})
    assert expected is not None
    assert derived == {("a", second.ts): {"vn_aqi": expected.value, "vn_aqi_pollutant": "pm25"}}


def test_water_readings_get_their_wqi() -> None:
    values = {"ph": 7.2, "do": 6.5, "temperature": 28.0, "bod5": 4.0, "cod": 10.0, "nh4_n": 0.2}
    sample = Reading("w", "water", T0, values, T0, "t")
    derived = derive_indices([sample], HourlyMeans(POLLUTANTS), Combination.WEIGHTED_CUBE_ROOT)
    expected = water_quality_index(values, Combination.WEIGHTED_CUBE_ROOT)
    assert expected is not None
    assert derived == {("w", T0): {"wqi": expected.value}}
