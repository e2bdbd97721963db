"""Forecast pure parts; expected values computed by hand in the comments."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest

from urbanpulse.forecast.aqi import implied_aqi
from urbanpulse.forecast.bins import fill_trend
from urbanpulse.forecast.collection import BinStop, collection_order, urgency
from urbanpulse.forecast.forecaster import train
from urbanpulse.forecast.series import (
    HORIZONS,
    HourlySeries,
    persistence,
    same_hour_yesterday,
)
from urbanpulse.forecast.skill import MODEL, PERSISTENCE, mae, served_method, skill_score

START = datetime(2026, 6, 1, 17, tzinfo=UTC)  # 00:00 in Vietnam


def ramp(hours: int) -> HourlySeries:
    """PM2.5 equal to the hour's index: easy to check by hand."""
    values = np.arange(hours, dtype=np.float64)
    return HourlySeries("s", START, values, np.full(hours, 80.0), np.full(hours, 28.0))


def test_persistence_repeats_the_origin_hour_at_every_horizon() -> None:
    origins = np.array([30, 40])
    assert persistence(ramp(48), origins, 5).tolist() == [30.0, 40.0]
    assert persistence(ramp(48), origins, 24).tolist() == [30.0, 40.0]


def test_same_hour_yesterday_is_24_hours_before_the_target() -> None:
    # origin 30, horizon 5: target hour 35, a day earlier 11; origin 40, horizon 24: 40.
    series = ramp(48)
    assert same_hour_yesterday(series, np.array([30]), 5).tolist() == [11.0]
    assert same_hour_yesterday(series, np.array([40]), 24).tolist() == [40.0]
    # origin 10, horizon 1: hour -13 is before the series: unknown.
    assert math.isnan(same_hour_yesterday(series, np.array([10]), 1)[0])


def test_mae_uses_the_pairs_where_both_are_known() -> None:
    # |1-2| and |2-4|: (1 + 2) / 2
    assert mae(np.array([1.0, 2.0, np.nan]), np.array([2.0, 4.0, 5.0])) == 1.5
    assert math.isnan(mae(np.array([np.nan]), np.array([1.0])))


def test_skill_score_against_persistence() -> None:
    assert skill_score(1.5, 3.0) == 0.5  # 1 - 1.5/3
    assert skill_score(4.0, 2.0) == -1.0  # 1 - 4/2
    assert skill_score(0.0, 0.0) == 0.0
    assert skill_score(1.0, 0.0) == -math.inf


def test_the_model_is_served_only_where_it_beat_persistence() -> None:
    assert served_method(0.25) == MODEL
    assert served_method(0.0) == PERSISTENCE
    assert served_method(-0.3) == PERSISTENCE
    assert served_method(math.nan) == PERSISTENCE


def test_time_to_90_on_a_linear_fill() -> None:
    # 10 % + 5 %/h: 40 % at hour 6, 50 points to go at 5 %/h = 10 h.
    hours = np.arange(7, dtype=np.float64)
    trend = fill_trend(hours, 10.0 + 5.0 * hours)
    assert trend.slope_per_h == pytest.approx(5.0)
    assert trend.fill == pytest.approx(40.0)
    assert trend.hours_to_full == pytest.approx(10.0)


def test_time_to_90_ignores_a_stray_reading() -> None:
    # The same bin with 80 % read at hour 3: 15 of 21 pairwise slopes are still 5, and the
    # residuals' median is still 10, so the answer stays 10 h.
    hours = np.arange(7, dtype=np.float64)
    fill = 10.0 + 5.0 * hours
    fill[3] = 80.0
    assert fill_trend(hours, fill).hours_to_full == pytest.approx(10.0)


def test_time_to_90_starts_again_after_an_emptying() -> None:
    # Emptied between hours 2 and 3: 5, 10, 15 % at hours 3-5, 75 points at 5 %/h = 15 h.
    hours = np.arange(6, dtype=np.float64)
    trend = fill_trend(hours, np.array([50.0, 60.0, 70.0, 5.0, 10.0, 15.0]))
    assert trend.hours_to_full == pytest.approx(15.0)


def test_a_full_bin_is_due_now_and_a_steady_one_never() -> None:
    hours = np.arange(3, dtype=np.float64)
    assert fill_trend(hours, np.array([85.0, 88.0, 91.0])).hours_to_full == 0.0
    assert fill_trend(hours, np.array([40.0, 40.0, 40.0])).hours_to_full is None


def test_collection_order_is_urgency_first_then_distance() -> None:
    bins = [
        BinStop("far-full", 0.0, 900.0),
        BinStop("near-full", 0.0, 100.0),
        BinStop("in-1.5h", 1.5, 50.0),
        BinStop("in-5h", 5.0, 10.0),
        BinStop("in-11h", 11.0, 5.0),
        BinStop("in-20h", 20.0, 1.0),  # after the round
        BinStop("steady", None, 1.0),  # not filling
    ]
    order = [b.sensor_id for b in collection_order(bins, within_h=12.0)]
    assert order == ["near-full", "far-full", "in-1.5h", "in-5h", "in-11h"]
    assert [urgency(h) for h in (0.0, 0.5, 2.0, 2.1, 6.0, 7.0)] == [0, 1, 1, 2, 2, 3]


def test_implied_vn_aqi_is_the_nowcast_of_observed_and_forecast_hours() -> None:
    # A flat 30 µg/m³: NowCast 30, sub-index 50 + (30 - 25) * 50 / 25 = 60 (Decision 1459).
    assert implied_aqi([30.0] * 11, [30.0]) == [60]
    # Flat 50 then forecast 50: index 100 at both horizons.
    assert implied_aqi([50.0] * 12, [50.0, 50.0]) == [100, 100]


def daily_cycle(days: int, level: float) -> HourlySeries:
    hours = days * 24
    local = np.arange(hours) % 24
    pm25 = level * (1.0 + 0.8 * np.exp(-(((local - 7.5) / 1.5) ** 2)))
    return HourlySeries(f"c{level}", START, pm25, np.full(hours, 80.0), np.full(hours, 28.0))


def test_a_constant_series_serves_persistence_at_every_horizon() -> None:
    # Persistence is exact on a constant: no model can beat it, so none is served.
    flat = [replace(ramp(240), subject=f"f{k}", pm25=np.full(240, 20.0 + k)) for k in range(3)]
    forecaster = train(flat, seed=1)
    horizons = forecaster.forecast(flat[0], 239)
    assert [h.method for h in horizons] == [PERSISTENCE] * 24
    assert all(h.lower == h.median == h.upper == 20.0 for h in horizons)


def test_a_horizon_without_skill_serves_persistence_with_its_band() -> None:
    series = [daily_cycle(10, level) for level in (20.0, 30.0, 40.0)]
    forecaster = train(series, seed=1)
    skill = dict.fromkeys(HORIZONS, 0.5) | {2: -0.1}
    forced = replace(forecaster, skill=skill, spread=dict.fromkeys(HORIZONS, (-3.0, 4.0)))
    horizons = forced.forecast(series[0], 239)
    assert horizons[1].method == PERSISTENCE
    last = float(series[0].pm25[239])
    assert (horizons[1].lower, horizons[1].median, horizons[1].upper) == pytest.approx(
        (last - 3.0, last, last + 4.0)
    )
    assert horizons[0].method == MODEL
    assert all(h.lower <= h.median <= h.upper for h in horizons)
