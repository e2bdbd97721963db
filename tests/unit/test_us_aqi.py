"""US EPA AQI (2024 PM2.5 revision; other pollutants as in the 2018 table)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from urbanpulse.indices import us_aqi, us_sub_index
from urbanpulse.indices.us_aqi import (
    INPUTS,
    MOLAR_MASS_G,
    epa_concentration,
    inputs_for_day,
    inputs_for_hour,
    ugm3_to_ppb,
)


def from_ppb(gas: str, ppb: float) -> float:
    """ppb -> µg/m³ at 25 °C, the inverse of the module's conversion (for writing cases)."""
    return ppb * MOLAR_MASS_G[gas] / 24.45


@pytest.mark.parametrize(
    ("ugm3", "expected"),
    [
        (0.0, 0),
        (9.0, 50),
        (9.1, 51),
        (9.09, 50),  # truncated to 9.0, not rounded to 9.1
        (12.0, 56),  # 51 + 49/26.3 * 2.9 = 56.4
        (35.4, 100),
        (35.49, 100),
        (35.5, 101),
        (55.5, 151),
        (125.5, 201),
        (225.4, 300),
        (225.5, 301),
        (325.4, 500),
        (600.0, 500),  # beyond the AQI: clamped
    ],
)
def test_pm25_2024_breakpoints(ugm3: float, expected: int) -> None:
    assert us_sub_index("pm25", ugm3) == expected


@pytest.mark.parametrize(
    ("ugm3", "expected"),
    [(54, 50), (54.9, 50), (55, 51), (154, 100), (155, 101), (354, 200), (425, 301), (604, 500)],
)
def test_pm10_breakpoints_truncate_to_integers(ugm3: float, expected: int) -> None:
    assert us_sub_index("pm10", ugm3) == expected


def test_gases_are_converted_at_25_degrees() -> None:
    # 100 µg/m³ NO2 = 100 * 24.45 / 46.01 = 53.14 ppb -> 53 ppb
    assert ugm3_to_ppb("no2", 100) == pytest.approx(53.14, abs=0.01)
    assert epa_concentration("no2_1h", 100) == 53
    # 10 mg/m³ CO = 8.729 ppm -> 8.7 ppm; O3 137.4 µg/m³ = 0.06999 ppm -> 0.069
    assert epa_concentration("co_8h", 10000) == pytest.approx(8.7)
    assert epa_concentration("o3_8h", 137.4) == pytest.approx(0.069)


@pytest.mark.parametrize(
    ("key", "gas", "ppb", "expected"),
    [
        ("o3_8h", "o3", 54, 50),
        ("o3_8h", "o3", 55, 51),
        ("o3_8h", "o3", 70, 100),
        ("o3_8h", "o3", 71, 101),
        ("o3_8h", "o3", 200, 300),
        ("o3_8h", "o3", 250, 223),  # beyond 8h table: 1h rows, 201 + 99/0.199*0.045 = 223.4
        ("o3_1h", "o3", 125, 101),
        ("o3_1h", "o3", 604, 500),
        ("co_8h", "co", 4400, 50),
        ("co_8h", "co", 4500, 51),
        ("co_8h", "co", 50400, 500),
        ("so2_1h", "so2", 35, 50),
        ("so2_1h", "so2", 36, 51),
        ("so2_1h", "so2", 304, 200),
        ("so2_1h", "so2", 1004, 500),
        ("no2_1h", "no2", 53, 50),
        ("no2_1h", "no2", 54, 51),
        ("no2_1h", "no2", 360, 150),
        ("no2_1h", "no2", 2049, 500),
    ],
)
def test_gas_breakpoints_in_epa_units(key: str, gas: str, ppb: float, expected: int) -> None:
    assert us_sub_index(key, from_ppb(gas, ppb)) == expected


def test_o3_1h_below_its_table_defines_no_index() -> None:
    assert us_sub_index("o3_1h", from_ppb("o3", 100)) is None


def test_us_aqi_takes_the_highest_and_names_it_in_english() -> None:
    result = us_aqi({"pm25": 35.45, "no2_1h": 100, "o3_1h": from_ppb("o3", 100)})
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
