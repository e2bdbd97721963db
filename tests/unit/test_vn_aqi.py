"""VN_AQI (Decision 1459/QĐ-TCMT).  Hand-computed cases show their arithmetic in comments."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from urbanpulse.indices import band_for, daily_aqi, hourly_aqi, nowcast, sub_index
from urbanpulse.indices.vn_aqi import BeyondTableError, max_rolling_mean

# Decision 1459/QĐ-TCMT, Table 2, written out here from the decision (DESIGN.md section 5), not
# read from the module: concentrations (µg/m³) at index 0, 50, 100, 150, 200, 300, 400, 500.
PUBLISHED_INDEX = (0, 50, 100, 150, 200, 300, 400, 500)
PUBLISHED_TABLE_2 = {
    ("o3", "1h"): (0, 160, 200, 300, 400, 800, 1000, 1200),
    ("o3", "8h"): (0, 100, 120, 170, 210, 400),  # no 8-hour rows above index 300
    ("co", "1h"): (0, 10000, 30000, 45000, 60000, 90000, 120000, 150000),
    ("so2", "1h"): (0, 125, 350, 550, 800, 1600, 2100, 2630),
    ("no2", "1h"): (0, 100, 200, 700, 1200, 2350, 3100, 3850),
    ("pm10", "24h"): (0, 50, 150, 250, 350, 420, 500, 600),
    ("pm25", "24h"): (0, 25, 50, 80, 150, 250, 350, 500),
}
BREAKPOINT_CASES = [
    (pollutant, averaging, concentration, index)
    for (pollutant, averaging), row in PUBLISHED_TABLE_2.items()
    for concentration, index in zip(row, PUBLISHED_INDEX, strict=False)
]


def test_the_published_table_is_complete() -> None:
    # 7 columns: 8 breakpoints each except O3 8h (6): the cases cover every cell of Table 2.
    assert len(BREAKPOINT_CASES) == 6 * 8 + 6


@pytest.mark.parametrize(("pollutant", "averaging", "concentration", "index"), BREAKPOINT_CASES)
def test_each_breakpoint_gives_its_index(
    pollutant: str, averaging: str, concentration: float, index: int
) -> None:
    assert sub_index(pollutant, concentration, averaging) == index


# One value inside every segment, a fifth of the way from BP_lo to BP_hi, so that
# I = I_lo + (I_hi - I_lo) / 5 exactly (hand arithmetic in each comment).  A fifth, not the
# midpoint, so that swapping the ends of a segment in the formula cannot give the same figure.
SEGMENT_CASES = [
    ("o3", "1h", 32, 10),  # 0 + 160/5 -> 0 + 50/5
    ("o3", "1h", 168, 60),  # 160 + 40/5 -> 50 + 50/5
    ("o3", "1h", 220, 110),  # 200 + 100/5 -> 100 + 50/5
    ("o3", "1h", 320, 160),  # 300 + 100/5 -> 150 + 50/5
    ("o3", "1h", 480, 220),  # 400 + 400/5 -> 200 + 100/5
    ("o3", "1h", 840, 320),  # 800 + 200/5 -> 300 + 100/5
    ("o3", "1h", 1040, 420),  # 1000 + 200/5 -> 400 + 100/5
    ("o3", "8h", 20, 10),  # 0 + 100/5 -> 0 + 50/5
    ("o3", "8h", 104, 60),  # 100 + 20/5 -> 50 + 50/5
    ("o3", "8h", 130, 110),  # 120 + 50/5 -> 100 + 50/5
    ("o3", "8h", 178, 160),  # 170 + 40/5 -> 150 + 50/5
    ("o3", "8h", 248, 220),  # 210 + 190/5 -> 200 + 100/5
    ("co", "1h", 2000, 10),  # 0 + 10000/5 -> 0 + 50/5
    ("co", "1h", 14000, 60),  # 10000 + 20000/5 -> 50 + 50/5
    ("co", "1h", 33000, 110),  # 30000 + 15000/5 -> 100 + 50/5
    ("co", "1h", 48000, 160),  # 45000 + 15000/5 -> 150 + 50/5
    ("co", "1h", 66000, 220),  # 60000 + 30000/5 -> 200 + 100/5
    ("co", "1h", 96000, 320),  # 90000 + 30000/5 -> 300 + 100/5
    ("co", "1h", 126000, 420),  # 120000 + 30000/5 -> 400 + 100/5
    ("so2", "1h", 25, 10),  # 0 + 125/5 -> 0 + 50/5
    ("so2", "1h", 170, 60),  # 125 + 225/5 -> 50 + 50/5
    ("so2", "1h", 390, 110),  # 350 + 200/5 -> 100 + 50/5
    ("so2", "1h", 600, 160),  # 550 + 250/5 -> 150 + 50/5
    ("so2", "1h", 960, 220),  # 800 + 800/5 -> 200 + 100/5
    ("so2", "1h", 1700, 320),  # 1600 + 500/5 -> 300 + 100/5
    ("so2", "1h", 2206, 420),  # 2100 + 530/5 -> 400 + 100/5
    ("no2", "1h", 20, 10),  # 0 + 100/5 -> 0 + 50/5
    ("no2", "1h", 120, 60),  # 100 + 100/5 -> 50 + 50/5
    ("no2", "1h", 300, 110),  # 200 + 500/5 -> 100 + 50/5
    ("no2", "1h", 800, 160),  # 700 + 500/5 -> 150 + 50/5
    ("no2", "1h", 1430, 220),  # 1200 + 1150/5 -> 200 + 100/5
    ("no2", "1h", 2500, 320),  # 2350 + 750/5 -> 300 + 100/5
    ("no2", "1h", 3250, 420),  # 3100 + 750/5 -> 400 + 100/5
    ("pm10", "24h", 10, 10),  # 0 + 50/5 -> 0 + 50/5
    ("pm10", "24h", 70, 60),  # 50 + 100/5 -> 50 + 50/5
    ("pm10", "24h", 170, 110),  # 150 + 100/5 -> 100 + 50/5
    ("pm10", "24h", 270, 160),  # 250 + 100/5 -> 150 + 50/5
    ("pm10", "24h", 364, 220),  # 350 + 70/5 -> 200 + 100/5
    ("pm10", "24h", 436, 320),  # 420 + 80/5 -> 300 + 100/5
    ("pm10", "24h", 520, 420),  # 500 + 100/5 -> 400 + 100/5
    ("pm25", "24h", 5, 10),  # 0 + 25/5 -> 0 + 50/5
    ("pm25", "24h", 30, 60),  # 25 + 25/5 -> 50 + 50/5
    ("pm25", "24h", 56, 110),  # 50 + 30/5 -> 100 + 50/5
    ("pm25", "24h", 94, 160),  # 80 + 70/5 -> 150 + 50/5
    ("pm25", "24h", 170, 220),  # 150 + 100/5 -> 200 + 100/5
    ("pm25", "24h", 270, 320),  # 250 + 100/5 -> 300 + 100/5
    ("pm25", "24h", 380, 420),  # 350 + 150/5 -> 400 + 100/5
]


@pytest.mark.parametrize(("pollutant", "averaging", "concentration", "expected"), SEGMENT_CASES)
def test_a_fifth_into_each_segment(
    pollutant: str, averaging: str, concentration: float, expected: int
) -> None:
    assert sub_index(pollutant, concentration, averaging) == expected


@pytest.mark.parametrize(
    ("pollutant", "averaging", "concentration", "expected"),
    [
        ("pm25", "24h", 37.5, 75),  # halfway 25..50 -> 50..100
        ("pm25", "1h", 65, 125),  # NowCast values use the same table: halfway 50..80
        ("pm10", "1h", 200, 125),  # likewise for PM10: halfway 150..250
        ("pm10", "24h", 100, 75),  # halfway 50..150
        ("o3", "1h", 180, 75),  # halfway 160..200
        ("o3", "8h", 145, 125),  # halfway 120..170
        ("co", "1h", 20000, 75),  # halfway 10000..30000
        ("so2", "1h", 450, 125),  # halfway 350..550
        ("no2", "1h", 450, 125),  # halfway 200..700
        ("pm25", "24h", 20.25, 41),  # 40.5 rounds half up, not to even
        ("pm25", "24h", 20.2, 40),  # 40.4
        ("pm10", "24h", 360, 214),  # 200 + (10 / 70) * 100 = 214.3
    ],
)
def test_between_breakpoints_interpolates_linearly(
    pollutant: str, averaging: str, concentration: float, expected: int
) -> None:
    assert sub_index(pollutant, concentration, averaging) == expected


def test_above_the_top_breakpoint_is_clamped_to_500() -> None:
    assert sub_index("pm25", 900, "24h") == 500
    assert sub_index("co", 1e6, "1h") == 500


def test_o3_8h_above_its_table_is_refused() -> None:
    assert sub_index("o3", 400, "8h") == 300
    with pytest.raises(BeyondTableError, match="1-hour"):
        sub_index("o3", 400.5, "8h")


@pytest.mark.parametrize(
    ("pollutant", "averaging"), [("so2", "24h"), ("pm25", "8h"), ("co", "8h"), ("nh3", "1h")]
)
def test_unknown_pollutant_or_averaging_is_refused(pollutant: str, averaging: str) -> None:
    with pytest.raises(ValueError, match="no VN_AQI table"):
        sub_index(pollutant, 10, averaging)


@pytest.mark.parametrize("bad", [-0.1, float("nan")])
def test_negative_or_nan_concentration_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match=">= 0"):
        sub_index("pm25", bad, "24h")


@pytest.mark.parametrize(
    ("value", "key", "name_vi", "hex_colour"),
    [
        (0, "good", "Tốt", "#00e400"),
        (50, "good", "Tốt", "#00e400"),
        (51, "moderate", "Trung bình", "#ffff00"),
        (100, "moderate", "Trung bình", "#ffff00"),
        (101, "poor", "Kém", "#ff7e00"),
        (150, "poor", "Kém", "#ff7e00"),
        (151, "bad", "Xấu", "#ff0000"),
        (200, "bad", "Xấu", "#ff0000"),
        (201, "very_bad", "Rất xấu", "#8f3f97"),
        (300, "very_bad", "Rất xấu", "#8f3f97"),
        (301, "hazardous", "Nguy hại", "#7e0023"),
        (500, "hazardous", "Nguy hại", "#7e0023"),
    ],
)
def test_band_edges(value: int, key: str, name_vi: str, hex_colour: str) -> None:
    band = band_for(value)
    assert (band.key, band.name_vi, band.hex) == (key, name_vi, hex_colour)
    assert band.low <= value <= band.high


def test_band_rgb_matches_the_decision() -> None:
    assert band_for(250).rgb == (143, 63, 151)
    assert band_for(400).name_en == "Hazardous"
    with pytest.raises(ValueError):
        band_for(-1)


# --- NowCast ----------------------------------------------------------------------------------


def test_nowcast_hand_computed_case_gives_20_3_and_aqi_41() -> None:
    # The decision's worked example was not reachable; this case is hand-computed to land on
    # the same figures (NowCast 20.3 -> AQI 41).  c1..c3 = 22, 20, 18: w* = 18/22 = 0.818 ->
    # w = 0.82 (two decimals); sum w^(i-1) c_i = 22 + 0.82*20 + 0.6724*18 = 50.5032;
    # sum w^(i-1) = 1 + 0.82 + 0.6724 = 2.4924; NowCast = 20.263; AQI = 20.263 * 50/25 = 40.5.
    value = nowcast([22, 20, 18])
    assert value is not None
    assert value == pytest.approx(50.5032 / 2.4924, rel=1e-12)
    assert round(value, 1) == 20.3
    assert sub_index("pm25", value, "1h") == 41


def test_nowcast_rounds_the_weight_to_two_decimals_by_default() -> None:
    # w* = 20/30 = 0.6667: with w = 0.67, (30 + 13.4) / 1.67 = 25.988; exact w gives 26.0.
    assert nowcast([30, 20]) == pytest.approx(43.4 / 1.67, rel=1e-12)
    assert nowcast([30, 20], weight_decimals=None) == pytest.approx(26.0, rel=1e-12)


def test_nowcast_weight_has_a_floor_of_one_half() -> None:
    # w* = 10/40 = 0.25 -> w = 0.5: (40 + 0.5*10) / 1.5 = 30
    assert nowcast([40, 10]) == pytest.approx(30.0)


def test_nowcast_skips_missing_hours_but_keeps_their_place() -> None:
    # c1 = 20, c2 missing, c3 = 10: w* = 0.5, weights 1 and 0.25: (20 + 2.5) / 1.25 = 18
    assert nowcast([20, None, 10]) == pytest.approx(18.0)
    # c1 missing is fine when c2 and c3 exist: weights 0.5 and 0.25: (10 + 2.5) / 0.75
    assert nowcast([None, 20, 10]) == pytest.approx(12.5 / 0.75)


@pytest.mark.parametrize(
    "hours",
    [[], [25.0], [25.0, None, None, 30.0, 30.0], [None, None, 40.0, 40.0], [None] * 12],
)
def test_nowcast_needs_two_of_the_three_newest_hours(hours: list[float | None]) -> None:
    assert nowcast(hours) is None


def test_nowcast_uses_twelve_hours_at_most_and_handles_all_zero() -> None:
    assert nowcast([10.0] * 12 + [1000.0]) == pytest.approx(10.0)
    assert nowcast([0.0, 0.0, 0.0]) == 0.0


def test_nowcast_of_a_steady_series_is_that_level() -> None:
    assert nowcast([35.0] * 12) == pytest.approx(35.0)


# --- hourly and daily AQI --------------------------------------------------------------------


def test_hourly_aqi_takes_the_highest_sub_index() -> None:
    result = hourly_aqi(
        {
            "pm25": [22, 20, 18],  # NowCast 20.263 -> 41
            "pm10": [60, 60, 60],  # 50 + 10/100*50 = 55
            "no2": [250, 0, 0],  # c1 only: 100 + 50/500*50 = 105
            "o3": [None, 500],  # no current hour: left out
        }
    )
    assert result is not None
    assert result.sub_indices == {"pm25": 41, "pm10": 55, "no2": 105}
    assert (result.value, result.dominant, result.band.key) == (105, "no2", "poor")


def test_hourly_aqi_without_pm_follows_the_decision() -> None:
    gases = {"no2": [250.0], "so2": [100.0]}
    assert hourly_aqi(gases) is None
    relaxed = hourly_aqi(gases, require_pm=False)
    assert relaxed is not None and relaxed.value == 105
    assert hourly_aqi({}) is None
    assert hourly_aqi({"pm25": [10.0]}) is None  # NowCast needs two hours


def test_hourly_aqi_ties_go_to_pm() -> None:
    result = hourly_aqi({"no2": [100.0], "pm25": [25.0, 25.0]})
    assert result is not None and result.dominant == "pm25" and result.value == 50


def test_hourly_aqi_refuses_an_unknown_pollutant() -> None:
    with pytest.raises(ValueError, match="unknown pollutant"):
        hourly_aqi({"pm1": [1.0, 1.0]})


def test_daily_aqi_uses_24h_pm_and_the_max_1h_gas() -> None:
    o3 = [60.0] * 24
    o3[12:20] = [130.0] * 8  # best 8-hour mean 130 -> 100 + 10/50*50 = 110
    o3[15] = 190.0  # now 8-hour mean (7*130 + 190)/8 = 137.5 -> 117.5 -> 118; 1h: 88
    result = daily_aqi({"pm25": [30.0] * 12 + [40.0] * 12, "o3": o3, "co": [5000.0] * 24})
    assert result is not None
    # PM2.5 mean 35 -> 50 + 10/25*50 = 70; O3 max(1h 88, 8h 118); CO max 5000 -> 25
    assert result.sub_indices == {"pm25": 70, "o3": 118, "co": 25}
    assert (result.value, result.dominant) == (118, "o3")


def test_daily_aqi_o3_above_the_8h_table_falls_back_to_1h() -> None:
    o3 = [450.0] * 24  # 8h mean 450 > 400: 1h sub-index 200 + 50/400*100 = 212.5 -> 213
    result = daily_aqi({"pm10": [50.0] * 24, "o3": o3})
    assert result is not None and result.sub_indices["o3"] == 213


def test_daily_aqi_needs_18_hours_per_pollutant() -> None:
    sparse: list[float | None] = [40.0] * 17 + [None] * 7
    assert daily_aqi({"pm25": sparse}) is None
    enough: list[float | None] = [40.0] * 18 + [None] * 6
    result = daily_aqi({"pm25": enough, "no2": sparse})
    assert result is not None and result.sub_indices == {"pm25": 80}


# --- properties -----------------------------------------------------------------------------

PAIRS = [("pm25", "24h"), ("pm10", "1h"), ("o3", "1h"), ("co", "1h"), ("so2", "1h"), ("no2", "1h")]
CONCENTRATIONS = st.floats(min_value=0, allow_nan=False, allow_infinity=False)


@given(st.sampled_from(PAIRS), CONCENTRATIONS, CONCENTRATIONS)
def test_sub_index_is_monotonic(pair: tuple[str, str], a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert sub_index(pair[0], low, pair[1]) <= sub_index(pair[0], high, pair[1])


@given(st.sampled_from(PAIRS), CONCENTRATIONS)
def test_sub_index_stays_on_the_scale(pair: tuple[str, str], concentration: float) -> None:
    assert 0 <= sub_index(pair[0], concentration, pair[1]) <= 500


@given(st.floats(min_value=0, max_value=400, allow_nan=False))
def test_o3_8h_never_fails_within_its_table(concentration: float) -> None:
    assert 0 <= sub_index("o3", concentration, "8h") <= 300


@given(st.lists(st.none() | st.floats(min_value=0, max_value=5000), max_size=14))
def test_nowcast_lies_within_the_values_it_weighs(hours: list[float | None]) -> None:
    value = nowcast(hours)
    present = [c for c in hours[:12] if c is not None]
    if value is not None:
        assert min(present) - 1e-9 <= value <= max(present) + 1e-9


# --- edges the mutation run found untested -------------------------------------------------


def test_the_8h_refusal_names_the_table_end() -> None:
    with pytest.raises(
        BeyondTableError, match=r"O3 8-hour mean 401 µg/m³ is above the 8-hour table \(400\)"
    ):
        sub_index("o3", 401, "8h")


def test_nowcast_refuses_a_negative_hour() -> None:
    with pytest.raises(ValueError, match=r"^hourly means must be >= 0$"):
        nowcast([10.0, -1.0])


def test_daily_aqi_needs_pm_unless_told_otherwise() -> None:
    gases = {"no2": [250.0] * 24}  # max 1h 250 -> 100 + 50/500 * 50 = 105
    assert daily_aqi(gases) is None
    relaxed = daily_aqi(gases, require_pm=False)
    assert relaxed is not None and (relaxed.value, relaxed.dominant) == (105, "no2")


def test_daily_aqi_skips_a_thin_pollutant_and_goes_on_to_the_next() -> None:
    thin: list[float | None] = [90.0] * 10 + [None] * 14
    result = daily_aqi({"pm25": thin, "pm10": [100.0] * 24})  # PM10 100 -> 75
    assert result is not None and result.sub_indices == {"pm10": 75}


def test_daily_aqi_refuses_an_unknown_pollutant_by_name() -> None:
    with pytest.raises(ValueError, match="unknown pollutant 'nh3'"):
        daily_aqi({"nh3": [1.0] * 24})


def test_an_8_hour_mean_needs_6_of_its_8_hours_exactly() -> None:
    six: list[float | None] = [130.0] * 6 + [None] * 2
    five: list[float | None] = [130.0] * 5 + [None] * 3
    assert max_rolling_mean(six, 8, 6) == 130.0
    assert max_rolling_mean(five, 8, 6) is None
    assert max_rolling_mean([1.0, 2.0, 3.0], 2, 1) == 2.5  # windows 1.5 and 2.5
    assert max_rolling_mean([1.0], 2, 1) is None  # shorter than one window


def test_an_aqi_of_zero_is_still_set_by_the_pollutant_measured() -> None:
    result = hourly_aqi({"pm10": [0.0, 0.0]})
    assert result is not None
    assert (result.value, result.dominant, result.sub_indices) == (0, "pm10", {"pm10": 0})
