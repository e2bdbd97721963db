from __future__ import annotations

from datetime import UTC, datetime, timedelta

from urbanpulse.core.envelope import Reading
from urbanpulse.indices.vn_aqi import POLLUTANTS
from urbanpulse.indices.vn_wqi import Combination
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
    # Hourly means, newest first: PM2.5 80, (60 + 70) / 2 = 65.  NowCast (Decision 1459):
    # w* = 65/80 = 0.8125 -> w = 0.81; (80 + 0.81*65) / 1.81 = 132.65 / 1.81 = 73.287;
    # on the 50..80 -> 100..150 segment: 100 + 50/30 * 23.287 = 138.8 -> 139.
    # NO2 1h 50 -> 50/100 * 50 = 25.  The AQI is PM2.5's 139.
    assert derived == {("a", second.ts): {"vn_aqi": 139, "vn_aqi_pollutant": "pm25"}}


def test_water_readings_get_their_wqi() -> None:
    values = {"ph": 7.2, "do": 6.5, "temperature": 28.0, "bod5": 4.0, "cod": 10.0, "nh4_n": 0.2}
    sample = Reading("w", "water", T0, values, T0, "t")
    derived = derive_indices([sample], HourlyMeans(POLLUTANTS), Combination.WEIGHTED_CUBE_ROOT)
    # Decision 1460: DO_sat(28 °C) = 14.652 - 11.48616 + 6.264944 - 1.707295 = 7.723489 mg/L;
    # 6.5 / 7.723489 = 84.159 % -> 75 + 25 * 9.159/13 = 92.61; BOD5 4, COD 10, N-NH4 0.2 -> 100;
    # no group V: mean IV = (92.61 + 300) / 4 = 98.15; pH 7.2 -> factor 1.  WQI 98.
    assert derived == {("w", T0): {"wqi": 98}}
