"""The per-sensor hourly means at their exact edges, through HourlyMeans' public methods:
hour boundaries, seeding, what is kept for a day and what is pruned, means over hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from urbanpulse.stream.windows import HourlyMeans, HourlySeed, hour_of

T0 = datetime(2026, 11, 22, 0, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_an_hour_runs_from_its_first_microsecond_to_its_last() -> None:
    assert hour_of(T0 + timedelta(minutes=59, seconds=59, microseconds=999999)) == T0
    assert hour_of(T0 + HOUR) == T0 + HOUR
    means = HourlyMeans(["pm25"])
    means.add("a", T0, {"pm25": 10.0})
    means.add("a", T0 + HOUR - timedelta(microseconds=1), {"pm25": 20.0})
    means.add("a", T0 + HOUR, {"pm25": 90.0})
    assert means.series("a", T0 + HOUR, length=2) == {"pm25": [90.0, 15.0]}


def test_series_is_twelve_hours_by_default_newest_first_and_per_metric() -> None:
    means = HourlyMeans(["pm25", "no2"])
    for hour in range(14):
        means.add("a", T0 + hour * HOUR, {"pm25": float(hour)})
    means.add("a", T0 + 13 * HOUR, {"no2": 7.0, "co": 900.0})  # co is not tracked
    series = means.series("a", T0 + 13 * HOUR + timedelta(minutes=30))
    assert series["pm25"] == [float(h) for h in range(13, 1, -1)]
    assert series["no2"] == [7.0] + [None] * 11
    assert set(series) == {"pm25", "no2"}


def test_an_unknown_sensor_has_an_empty_series() -> None:
    assert HourlyMeans(["pm25"]).series("nobody", T0, length=3) == {"pm25": [None] * 3}


def test_seeding_adds_stored_sums_and_counts_and_marks_sensors_known() -> None:
    means = HourlyMeans(["pm25"])
    means.seed(
        ["a", "quiet"],
        [HourlySeed("a", T0, "pm25", 50.0, 2), HourlySeed("a", T0, "pm25", 10.0, 2)],
    )
    assert means.knows("a") and means.knows("quiet") and not means.knows("b")
    assert means.series("a", T0, length=1) == {"pm25": [15.0]}  # (50 + 10) / 4
    means.add("a", T0 + timedelta(minutes=10), {"pm25": 40.0})
    assert means.series("a", T0, length=1) == {"pm25": [20.0]}  # (60 + 40) / 5
    means.add("quiet", T0, {"pm25": 3.0})
    assert means.series("quiet", T0, length=1) == {"pm25": [3.0]}


def test_seeding_again_starts_the_sensor_over() -> None:
    means = HourlyMeans(["pm25"])
    means.add("a", T0, {"pm25": 99.0})
    means.seed(["a"], [HourlySeed("a", T0, "pm25", 10.0, 1)])
    assert means.series("a", T0, length=1) == {"pm25": [10.0]}


def test_a_day_of_hours_is_kept_and_the_25th_prunes_the_oldest() -> None:
    means = HourlyMeans(["pm25"])
    for hour in range(24):
        means.add("a", T0 + hour * HOUR, {"pm25": float(hour + 1)})
    newest = T0 + 23 * HOUR
    assert means.series("a", newest, length=24)["pm25"][-1] == 1.0  # hour 0 still there
    means.add("a", T0 + 24 * HOUR, {"pm25": 25.0})
    series = means.series("a", T0 + 24 * HOUR, length=25)["pm25"]
    assert series[0] == 25.0 and series[-2] == 2.0 and series[-1] is None  # hour 0 gone


def test_pruning_keeps_hours_within_a_day_of_the_newest_even_after_a_gap() -> None:
    means = HourlyMeans(["pm25"])
    for hour in range(24):
        means.add("a", T0 + hour * HOUR, {"pm25": 1.0})
    # A reading 30 h later: every hour at or before 30 - 24 = 6 goes, 7..23 stay.
    means.add("a", T0 + 30 * HOUR, {"pm25": 5.0})
    series = means.series("a", T0 + 30 * HOUR, length=31)["pm25"]  # index i = hour 30 - i
    assert series[0] == 5.0
    assert series[30 - 23 : 30 - 6] == [1.0] * 17  # hours 23 .. 7
    assert series[30 - 6 :] == [None] * 7  # hours 6 .. 0


def test_sensors_are_pruned_independently() -> None:
    means = HourlyMeans(["pm25"])
    for hour in range(25):
        means.add("a", T0 + hour * HOUR, {"pm25": 1.0})
    means.add("b", T0, {"pm25": 2.0})
    assert means.series("b", T0, length=1) == {"pm25": [2.0]}


def test_mean_over_hours_counts_the_hours_with_data() -> None:
    means = HourlyMeans(["pm25"])
    for hour, value in [(0, 10.0), (1, 20.0), (3, 60.0)]:
        means.add("a", T0 + hour * HOUR, {"pm25": value})
    at = T0 + 3 * HOUR + timedelta(minutes=5)
    assert means.mean_over("a", at, 4, "pm25") == (30.0, 3)  # (10 + 20 + 60) / 3
    assert means.mean_over("a", at, 3, "pm25") == (40.0, 2)  # hours 1..3: (20 + 60) / 2
    assert means.mean_over("a", at, 1, "pm25") == (60.0, 1)
    assert means.mean_over("a", at - HOUR, 1, "pm25") is None  # hour 2 is empty
    assert means.mean_over("a", at, 4, "no2") is None  # not tracked


def test_forget_all_drops_every_sensor() -> None:
    means = HourlyMeans(["pm25"])
    means.add("a", T0, {"pm25": 1.0})
    means.seed(["b"], [])
    means.forget_all()
    assert not means.knows("a") and not means.knows("b")
    assert means.series("a", T0, length=1) == {"pm25": [None]}


def test_pruning_starts_only_past_24_hours_held() -> None:
    # 24 buckets (hours 0..22 and 40) are not more than a day's worth: none is dropped yet,
    # even though most are over a day older than the newest.
    means = HourlyMeans(["pm25"])
    for hour in [*range(23), 40]:
        means.add("a", T0 + hour * HOUR, {"pm25": 1.0})
    assert means.series("a", T0 + 40 * HOUR, length=41)["pm25"][-1] == 1.0
