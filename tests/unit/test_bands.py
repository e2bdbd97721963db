"""The scale primitives shared by the indices: interpolation, bands, rounding, truncation."""

from __future__ import annotations

import pytest

from urbanpulse.indices import vn_aqi, vn_wqi
from urbanpulse.indices.bands import interpolate, rgb_hex, round_half_up, truncate

TABLE = ((10, 0), (20, 100), (40, 300))


@pytest.mark.parametrize(
    ("concentration", "expected"),
    [(0, 0), (10, 0), (12, 20), (20, 100), (25, 150), (40, 300), (41, 300)],
)
def test_interpolate_clamps_at_both_ends(concentration: float, expected: float) -> None:
    # Below the first breakpoint its score, above the last the last: 12 -> 0 + 100/10 * 2 = 20;
    # 25 -> 100 + 200/20 * 5 = 150.
    assert interpolate(TABLE, concentration) == pytest.approx(expected)


def test_interpolate_refuses_nan() -> None:
    with pytest.raises(ValueError, match=r"^concentration is not a number$"):
        interpolate(TABLE, float("nan"))


def test_values_above_a_scale_fall_in_its_top_band() -> None:
    assert vn_aqi.band_for(501).key == "hazardous"
    assert vn_aqi.band_for(10_000).key == "hazardous"
    assert vn_wqi.band_for(101).key == "very_good"


def test_a_value_below_a_scale_is_refused_with_its_start() -> None:
    with pytest.raises(ValueError, match=r"index value -1 is below the scale \(starts at 0\)"):
        vn_aqi.band_for(-1)


@pytest.mark.parametrize(
    ("value", "expected"), [(40.5, 41), (40.49, 40), (0.5, 1), (0.0, 0), (99.5, 100)]
)
def test_round_half_up(value: float, expected: int) -> None:
    assert round_half_up(value) == expected


@pytest.mark.parametrize(
    ("value", "decimals", "expected"),
    [(9.09, 1, 9.0), (0.07, 3, 0.07), (54.999, 0, 54.0), (35.45, 1, 35.4), (0.0549, 3, 0.054)],
)
def test_truncate_cuts_and_absorbs_binary_noise(
    value: float, decimals: int, expected: float
) -> None:
    assert truncate(value, decimals) == expected


def test_rgb_hex() -> None:
    assert rgb_hex((255, 126, 0)) == "#ff7e00"
    assert vn_aqi.band_for(250).to_json() == {
        "key": "very_bad",
        "name_vi": "Rất xấu",
        "name_en": "Very bad",
        "color": "#8f3f97",
    }
