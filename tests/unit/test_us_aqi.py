"""US EPA AQI (2024 PM2.5 revision; other pollutants as in the 2018 table)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from urbanpulse.indices import us_aqi, us_sub_index
from urbanpulse.indices.us_aqi import (
    INPUTS,
    epa_concentration,
    inputs_for_day,
    inputs_for_hour,
    ugm3_to_ppb,
)

# Molar masses (g/mol) and the molar volume at 25 °C and 1 atm (24.45 L), written out here.
MOLAR_MASS = {"o3": 48.00, "co": 28.01, "so2": 64.07, "no2": 46.01}
GAS_OF = {"o3_8h": "o3", "o3_1h": "o3", "co_8h": "co", "so2_1h": "so2", "no2_1h": "no2"}
PER_PPB = {"o3_8h": 1000, "o3_1h": 1000, "co_8h": 1000, "so2_1h": 1, "no2_1h": 1}  # ppm: 1000

# EPA-454/B-24-002 (May 2024), "Breakpoints for the AQI", written out from the document: rows
# (C_lo, C_hi, I_lo, I_hi) in the EPA unit (µg/m³ for PM, ppm for O3 and CO, ppb for SO2 and
# NO2).  PM2.5 is the 2024 revision; SO2 above index 200 is the 24-hour rows (module docstring).
EPA_2024 = {
    "pm25": [(0.0, 9.0, 0, 50), (9.1, 35.4, 51, 100), (35.5, 55.4, 101, 150),
             (55.5, 125.4, 151, 200), (125.5, 225.4, 201, 300), (225.5, 325.4, 301, 500)],
    "pm10": [(0, 54, 0, 50), (55, 154, 51, 100), (155, 254, 101, 150), (255, 354, 151, 200),
             (355, 424, 201, 300), (425, 604, 301, 500)],
    "o3_8h": [(0.000, 0.054, 0, 50), (0.055, 0.070, 51, 100), (0.071, 0.085, 101, 150),
              (0.086, 0.105, 151, 200), (0.106, 0.200, 201, 300)],
    "o3_1h": [(0.125, 0.164, 101, 150), (0.165, 0.204, 151, 200), (0.205, 0.404, 201, 300),
              (0.405, 0.604, 301, 500)],
    "co_8h": [(0.0, 4.4, 0, 50), (4.5, 9.4, 51, 100), (9.5, 12.4, 101, 150),
              (12.5, 15.4, 151, 200), (15.5, 30.4, 201, 300), (30.5, 50.4, 301, 500)],
    "so2_1h": [(0, 35, 0, 50), (36, 75, 51, 100), (76, 185, 101, 150), (186, 304, 151, 200),
               (305, 604, 201, 300), (605, 1004, 301, 500)],
    "no2_1h": [(0, 53, 0, 50), (54, 100, 51, 100), (101, 360, 101, 150), (361, 649, 151, 200),
               (650, 1249, 201, 300), (1250, 2049, 301, 500)],
}  # fmt: skip


def ugm3(key: str, epa_value: float) -> float:
    """A concentration in the EPA unit of ``key`` -> µg/m³ at 25 °C, by the hand-written masses."""
    if key not in GAS_OF:
        return epa_value
    return epa_value * PER_PPB[key] * MOLAR_MASS[GAS_OF[key]] / 24.45


BOUNDARY_CASES = [
    (key, c, i)
    for key, rows in EPA_2024.items()
    for c_lo, c_hi, i_lo, i_hi in rows
    for c, i in ((c_lo, i_lo), (c_hi, i_hi))
]

# One value inside every row (about a fifth in, on the EPA's truncation grid), hand-computed:
# I = I_lo + (I_hi - I_lo) / (C_hi - C_lo) * (C - C_lo), rounded half up.
INSIDE_CASES = [
    ("pm25", 1.8, 10),  # 0 + 50/9 * 1.8 = 10.00
    ("pm25", 14.3, 61),  # 51 + 49/26.3 * 5.2 = 60.69
    ("pm25", 39.4, 111),  # 101 + 49/19.9 * 3.9 = 110.60
    ("pm25", 69.4, 161),  # 151 + 49/69.9 * 13.9 = 160.74
    ("pm25", 145.4, 221),  # 201 + 99/99.9 * 19.9 = 220.72
    ("pm25", 245.4, 341),  # 301 + 199/99.9 * 19.9 = 340.64
    ("pm10", 10, 9),  # 0 + 50/54 * 10 = 9.26
    ("pm10", 74, 60),  # 51 + 49/99 * 19 = 60.40
    ("pm10", 174, 110),  # 101 + 49/99 * 19 = 110.40
    ("pm10", 274, 160),  # 151 + 49/99 * 19 = 160.40
    ("pm10", 368, 220),  # 201 + 99/69 * 13 = 219.65
    ("pm10", 460, 340),  # 301 + 199/179 * 35 = 339.91
    ("o3_8h", 0.010, 9),  # 0 + 50/0.054 * 0.01 = 9.26
    ("o3_8h", 0.058, 61),  # 51 + 49/0.015 * 0.003 = 60.80
    ("o3_8h", 0.073, 108),  # 101 + 49/0.014 * 0.002 = 108.00
    ("o3_8h", 0.089, 159),  # 151 + 49/0.019 * 0.003 = 158.74
    ("o3_8h", 0.124, 220),  # 201 + 99/0.094 * 0.018 = 219.96
    ("o3_1h", 0.132, 110),  # 101 + 49/0.039 * 0.007 = 109.79
    ("o3_1h", 0.172, 160),  # 151 + 49/0.039 * 0.007 = 159.79
    ("o3_1h", 0.244, 220),  # 201 + 99/0.199 * 0.039 = 220.40
    ("o3_1h", 0.444, 340),  # 301 + 199/0.199 * 0.039 = 340.00
    ("co_8h", 0.8, 9),  # 0 + 50/4.4 * 0.8 = 9.09
    ("co_8h", 5.4, 60),  # 51 + 49/4.9 * 0.9 = 60.00
    ("co_8h", 10.0, 109),  # 101 + 49/2.9 * 0.5 = 109.45
    ("co_8h", 13.0, 159),  # 151 + 49/2.9 * 0.5 = 159.45
    ("co_8h", 18.4, 220),  # 201 + 99/14.9 * 2.9 = 220.27
    ("co_8h", 34.4, 340),  # 301 + 199/19.9 * 3.9 = 340.00
    ("so2_1h", 7, 10),  # 0 + 50/35 * 7 = 10.00
    ("so2_1h", 43, 60),  # 51 + 49/39 * 7 = 59.79
    ("so2_1h", 97, 110),  # 101 + 49/109 * 21 = 110.44
    ("so2_1h", 209, 161),  # 151 + 49/118 * 23 = 160.55
    ("so2_1h", 364, 221),  # 201 + 99/299 * 59 = 220.54
    ("so2_1h", 684, 340),  # 301 + 199/399 * 79 = 340.40
    ("no2_1h", 10, 9),  # 0 + 50/53 * 10 = 9.43
    ("no2_1h", 63, 61),  # 51 + 49/46 * 9 = 60.59
    ("no2_1h", 152, 111),  # 101 + 49/259 * 51 = 110.65
    ("no2_1h", 418, 161),  # 151 + 49/288 * 57 = 160.70
    ("no2_1h", 769, 221),  # 201 + 99/599 * 119 = 220.67
    ("no2_1h", 1409, 341),  # 301 + 199/799 * 159 = 340.60
]


@pytest.mark.parametrize(("key", "epa_value", "expected"), BOUNDARY_CASES + INSIDE_CASES)
def test_every_row_of_the_epa_table(key: str, epa_value: float, expected: int) -> None:
    assert us_sub_index(key, ugm3(key, epa_value)) == expected


@pytest.mark.parametrize(
    ("key", "epa_value", "expected"),
    [
        ("pm25", 9.09, 50),  # truncated to 9.0, not rounded to 9.1
        ("pm25", 35.49, 100),  # 35.4
        ("pm10", 54.9, 50),  # 54
        ("pm10", 154.99, 100),  # 154
        ("co_8h", 4.49, 50),  # 4.4 ppm
        ("o3_8h", 0.0549, 50),  # 0.054 ppm
        ("so2_1h", 35.9, 50),  # 35 ppb
        ("no2_1h", 53.9, 50),  # 53 ppb
    ],
)
def test_concentrations_are_truncated_not_rounded(
    key: str, epa_value: float, expected: int
) -> None:
    assert us_sub_index(key, ugm3(key, epa_value)) == expected


@pytest.mark.parametrize(
    ("key", "epa_value"),
    [("pm25", 600.0), ("pm10", 605), ("o3_1h", 0.605), ("co_8h", 50.5), ("so2_1h", 1005),
     ("no2_1h", 2050), ("o3_8h", 0.605)],
)  # fmt: skip
def test_beyond_the_top_row_is_clamped_to_500(key: str, epa_value: float) -> None:
    assert us_sub_index(key, ugm3(key, epa_value)) == 500


def test_gases_are_converted_at_25_degrees() -> None:
    # 100 µg/m³ NO2 = 100 * 24.45 / 46.01 = 53.14 ppb -> 53 ppb
    assert ugm3_to_ppb("no2", 100) == pytest.approx(53.14, abs=0.01)
    assert epa_concentration("no2_1h", 100) == 53
    # 10 mg/m³ CO = 8.729 ppm -> 8.7 ppm; O3 137.4 µg/m³ = 0.06999 ppm -> 0.069
    assert epa_concentration("co_8h", 10000) == pytest.approx(8.7)
    assert epa_concentration("o3_8h", 137.4) == pytest.approx(0.069)


def test_o3_8h_beyond_its_table_is_scored_on_the_1h_rows() -> None:
    # 0.250 ppm 8-hour: above 0.200, so the 1-hour row 0.205-0.404 -> 201-300 applies:
    # 201 + 99/0.199 * 0.045 = 223.4 -> 223
    assert us_sub_index("o3_8h", ugm3("o3_8h", 0.250)) == 223


def test_o3_1h_below_its_table_defines_no_index() -> None:
    assert us_sub_index("o3_1h", ugm3("o3_1h", 0.124)) is None
    assert us_sub_index("o3_1h", ugm3("o3_1h", 0.100)) is None


def test_us_aqi_takes_the_highest_and_names_it_in_english() -> None:
    result = us_aqi({"pm25": 35.45, "no2_1h": 100, "o3_1h": ugm3("o3_1h", 0.100)})
    assert result is not None
    assert result.sub_indices == {"pm25": 100, "no2_1h": 50}  # o3_1h below its table
    assert (result.value, result.dominant) == (100, "pm25")
    assert (result.band.name_en, result.band.hex) == ("Moderate", "#ffff00")


@pytest.mark.parametrize(
    ("pm25", "category", "colour"),
    [
        (9.0, "Good", "#00e400"),
        (35.5, "Unhealthy for Sensitive Groups", "#ff7e00"),
        (55.5, "Unhealthy", "#ff0000"),
        (125.5, "Very Unhealthy", "#8f3f97"),
        (225.5, "Hazardous", "#7e0023"),
    ],
)
def test_us_categories_and_colours(pm25: float, category: str, colour: str) -> None:
    result = us_aqi({"pm25": pm25})
    assert result is not None
    assert (result.band.name_en, result.band.hex) == (category, colour)


def test_us_aqi_of_nothing_is_none_and_unknown_inputs_are_refused() -> None:
    assert us_aqi({}) is None
    with pytest.raises(ValueError, match="unknown US AQI input"):
        us_aqi({"o3": 10})
    with pytest.raises(ValueError, match=">= 0"):
        us_aqi({"pm25": -1})


@given(
    st.sampled_from(INPUTS),
    st.floats(min_value=0, max_value=1e7, allow_nan=False),
    st.floats(min_value=0, max_value=1e7, allow_nan=False),
)
def test_us_sub_index_is_monotonic_and_on_the_scale(key: str, a: float, b: float) -> None:
    low, high = (us_sub_index(key, c) for c in sorted((a, b)))
    if low is not None and high is not None:
        assert 0 <= low <= high <= 500
    if low is not None:
        assert high is not None


def test_inputs_for_an_hour_follow_the_epa_averaging_periods() -> None:
    window: dict[str, Sequence[float | None]] = {
        "pm25": [30.0, 20.0],  # NowCast, unrounded w = 2/3: (30 + 13.33) / 1.667 = 26.0
        "o3": [100.0] * 5 + [None] * 3,  # only 5 of 8 hours: no 8-hour mean
        "co": [1000.0] * 6 + [None, 4000.0],  # 7 of 8: mean 1428.6
        "no2": [None, 80.0],  # no current hour
    }
    inputs = inputs_for_hour(window)
    assert inputs == pytest.approx({"pm25": 26.0, "o3_1h": 100.0, "co_8h": 10000.0 / 7})


def test_inputs_for_a_day_need_18_hours() -> None:
    day: dict[str, Sequence[float | None]] = {
        "pm10": [40.0] * 18 + [None] * 6,
        "o3": [50.0] * 16 + [150.0] * 8,
        "so2": [10.0] * 17 + [None] * 7,
    }
    assert inputs_for_day(day) == pytest.approx({"pm10": 40.0, "o3_1h": 150.0, "o3_8h": 150.0})


# --- edges the mutation run found untested -------------------------------------------------


def test_an_aqi_of_zero_is_set_by_the_input_given() -> None:
    result = us_aqi({"pm10": 0.0})
    assert result is not None and (result.value, result.dominant) == (0, "pm10")


def test_inputs_for_an_hour_cover_pm10_and_8_hour_o3_from_the_last_8_hours_only() -> None:
    window: dict[str, Sequence[float | None]] = {
        "pm10": [30.0, 20.0],  # NowCast, unrounded w = 2/3: (30 + 13.33) / 1.667 = 26.0
        "o3": [100.0] * 6 + [None] * 2,  # 6 of 8: the 8-hour mean 100
        "co": [1000.0] * 8 + [9000.0] * 4,  # hours 9..12 are not in the last 8: mean 1000
    }
    assert inputs_for_hour(window) == pytest.approx(
        {"pm10": 26.0, "o3_1h": 100.0, "o3_8h": 100.0, "co_8h": 1000.0}
    )


def test_inputs_for_a_day_go_on_after_a_thin_pollutant_and_cover_each_averaging() -> None:
    day: dict[str, Sequence[float | None]] = {
        "so2": [10.0] * 17 + [None] * 7,  # thin: left out, the others still read
        "pm25": [10.0] * 12 + [20.0] * 12,  # 24-hour mean 15
        "co": [1000.0] * 16 + [5000.0] * 8,  # best 8-hour mean 5000; no 1-hour CO input
        "no2": [40.0] * 23 + [90.0],  # the day's highest hour 90
    }
    assert inputs_for_day(day) == pytest.approx({"pm25": 15.0, "co_8h": 5000.0, "no2_1h": 90.0})
