"""VN_WQI (Decision 1460/QĐ-TCMT).  Cases are hand-computed; arithmetic in the comments."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from urbanpulse.indices import Combination, water_quality_index, why_no_wqi
from urbanpulse.indices.vn_wqi import (
    GROUP_IV,
    GROUP_V,
    band_for,
    do_percent,
    do_saturation,
    do_sub_index,
    ph_sub_index,
)


@pytest.mark.parametrize(
    ("temperature", "expected"),
    [
        (0, 14.652),
        (20, 9.021808),  # 14.652 - 0.41022*20 + 0.007991*400 - 0.000077774*8000
        (25, 8.17565625),  # 14.652 - 10.2555 + 4.994375 - 1.21521875
        (30, 7.437402),  # 14.652 - 12.3066 + 7.1919 - 2.099898
    ],
)
def test_do_saturation_polynomial(temperature: float, expected: float) -> None:
    assert do_saturation(temperature) == pytest.approx(expected, rel=1e-12)


def test_do_saturation_at_25_degrees_is_close_to_the_tabulated_8_26() -> None:
    # Solubility tables give 8.26 mg/L at 25 °C; the decision's polynomial is within 1.1 %.
    assert do_saturation(25) == pytest.approx(8.26, rel=0.011)
    assert do_percent(8.17565625, 25) == pytest.approx(100.0)


@pytest.mark.parametrize(
    ("ph", "expected"),
    [(5.4, 10), (5.5, 50), (5.75, 75), (6, 100), (7, 100), (8.5, 100), (8.75, 75), (9, 50),
     (9.01, 10)],
)  # fmt: skip
def test_ph_sub_index(ph: float, expected: float) -> None:
    assert ph_sub_index(ph) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("percent", "expected"),
    [(19.9, 10), (20, 25), (35, 37.5), (88, 100), (100, 100), (112, 100), (137.5, 62.5),
     (200, 25), (200.1, 10)],
)  # fmt: skip
def test_do_percent_sub_index(percent: float, expected: float) -> None:
    assert do_sub_index(percent) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("bod5", 4, 100),
        ("bod5", 5, 87.5),
        ("bod5", 50, 10),
        ("bod5", 80, 10),
        ("cod", 40, 37.5),
        ("toc", 20, 37.5),
        ("nh4_n", 0.3, 100),
        ("nh4_n", 0.45, 62.5),  # the table steps from 100 to 75 just above 0.3
        ("nh4_n", 5, 10),
        ("no3_n", 7.5, 62.5),
        ("no3_n", 15, 25),
        ("no3_n", 15.1, 10),
        ("no2_n", 0.05, 100),
        ("no2_n", 0.051, 10),
        ("po4_p", 0.4, 37.5),
        ("po4_p", 2.25, 17.5),
        ("coliform", 2500, 100),
        ("coliform", 6250, 62.5),
        ("coliform", 10000, 25),
        ("coliform", 10001, 10),
        ("e_coli", 35, 87.5),
        ("e_coli", 201, 10),
    ],
)
def test_group_iv_and_v_scales(name: str, value: float, expected: float) -> None:
    scale = (GROUP_IV | GROUP_V)[name]
    assert scale.score(value) == pytest.approx(expected)


# Decision 1460/QĐ-TCMT sub-index tables, written out here, not read from the module: pH and DO %
# from DESIGN.md section 5; groups IV and V as public implementations reproduce the decision
# (the official text was not reachable): (BP, q) pairs; at or below the first BP q = 100 (pH and
# DO: below the first BP q = 10), above the last BP q = 10.
PUBLISHED = {
    "ph": ((5.5, 50), (6, 100), (8.5, 100), (9, 50)),
    "do_percent": ((20, 25), (50, 50), (75, 75), (88, 100), (112, 100), (125, 75), (150, 50),
                   (200, 25)),
    "bod5": ((4, 100), (6, 75), (15, 50), (25, 25), (50, 10)),
    "cod": ((10, 100), (15, 75), (30, 50), (50, 25), (150, 10)),
    "toc": ((4, 100), (6, 75), (15, 50), (25, 25), (50, 10)),
    "nh4_n": ((0.3, 100), (0.6, 50), (0.9, 25), (5, 10)),  # just above 0.3: 75 (see below)
    "no3_n": ((2, 100), (5, 75), (10, 50), (15, 25)),
    "no2_n": ((0.05, 100),),
    "po4_p": ((0.1, 100), (0.2, 75), (0.3, 50), (0.5, 25), (4, 10)),
    "coliform": ((2500, 100), (5000, 75), (7500, 50), (10000, 25)),
    "e_coli": ((20, 100), (50, 75), (100, 50), (200, 25)),
}  # fmt: skip


def score(name: str, value: float) -> float:
    if name == "ph":
        return ph_sub_index(value)
    if name == "do_percent":
        return do_sub_index(value)
    return (GROUP_IV | GROUP_V)[name].score(value)


BREAKPOINT_CASES = [(name, bp, q) for name, table in PUBLISHED.items() for bp, q in table]


@pytest.mark.parametrize(("name", "value", "expected"), BREAKPOINT_CASES)
def test_each_published_breakpoint_gives_its_sub_index(
    name: str, value: float, expected: float
) -> None:
    assert score(name, value) == pytest.approx(expected)


# A fifth of the way into every segment: q = q_lo + (q_hi - q_lo) / 5 (arithmetic in comments).
SEGMENT_CASES = [
    ("bod5", 4.4, 95),  # 4 + 2/5 -> 100 + (-25)/5
    ("bod5", 7.8, 70),  # 6 + 9/5 -> 75 + (-25)/5
    ("bod5", 17, 45),  # 15 + 10/5 -> 50 + (-25)/5
    ("bod5", 30, 22),  # 25 + 25/5 -> 25 + (-15)/5
    ("cod", 11, 95),  # 10 + 5/5 -> 100 + (-25)/5
    ("cod", 18, 70),  # 15 + 15/5 -> 75 + (-25)/5
    ("cod", 34, 45),  # 30 + 20/5 -> 50 + (-25)/5
    ("cod", 70, 22),  # 50 + 100/5 -> 25 + (-15)/5
    ("toc", 4.4, 95),  # 4 + 2/5 -> 100 + (-25)/5
    ("toc", 7.8, 70),  # 6 + 9/5 -> 75 + (-25)/5
    ("toc", 17, 45),  # 15 + 10/5 -> 50 + (-25)/5
    ("toc", 30, 22),  # 25 + 25/5 -> 25 + (-15)/5
    # N-NH4: just above 0.3 the public tables restart at 75 (100 only up to 0.3 inclusive).
    ("nh4_n", 0.36, 70),  # 0.3 + 0.3/5 -> 75 + (-25)/5
    ("nh4_n", 0.66, 45),  # 0.6 + 0.3/5 -> 50 + (-25)/5
    ("nh4_n", 1.72, 22),  # 0.9 + 4.1/5 -> 25 + (-15)/5
    ("no3_n", 2.6, 95),  # 2 + 3/5 -> 100 + (-25)/5
    ("no3_n", 6, 70),  # 5 + 5/5 -> 75 + (-25)/5
    ("no3_n", 11, 45),  # 10 + 5/5 -> 50 + (-25)/5
    ("no3_n", 12, 40),  # 10 + 10/5 * 2 -> 50 - 5 * 2 (a second point, off the fifth grid)
    ("po4_p", 0.12, 95),  # 0.1 + 0.1/5 -> 100 + (-25)/5
    ("po4_p", 0.22, 70),  # 0.2 + 0.1/5 -> 75 + (-25)/5
    ("po4_p", 0.34, 45),  # 0.3 + 0.2/5 -> 50 + (-25)/5
    ("po4_p", 1.2, 22),  # 0.5 + 3.5/5 -> 25 + (-15)/5
    ("coliform", 3000, 95),  # 2500 + 2500/5 -> 100 + (-25)/5
    ("coliform", 5500, 70),  # 5000 + 2500/5 -> 75 + (-25)/5
    ("coliform", 8000, 45),  # 7500 + 2500/5 -> 50 + (-25)/5
    ("e_coli", 26, 95),  # 20 + 30/5 -> 100 + (-25)/5
    ("e_coli", 60, 70),  # 50 + 50/5 -> 75 + (-25)/5
    ("e_coli", 120, 45),  # 100 + 100/5 -> 50 + (-25)/5
    ("ph", 5.6, 60),  # 5.5 + 0.5/5 -> 50 + 50/5
    ("ph", 6.5, 100),  # 6 + 2.5/5 -> 100 + 0/5
    ("ph", 8.6, 90),  # 8.5 + 0.5/5 -> 100 + (-50)/5
    ("do_percent", 26, 30),  # 20 + 30/5 -> 25 + 25/5
    ("do_percent", 55, 55),  # 50 + 25/5 -> 50 + 25/5
    ("do_percent", 77.6, 80),  # 75 + 13/5 -> 75 + 25/5
    ("do_percent", 92.8, 100),  # 88 + 24/5 -> 100 + 0/5
    ("do_percent", 114.6, 95),  # 112 + 13/5 -> 100 + (-25)/5
    ("do_percent", 130, 70),  # 125 + 25/5 -> 75 + (-25)/5
    ("do_percent", 160, 45),  # 150 + 50/5 -> 50 + (-25)/5
    ("do_percent", 180, 35),  # 150 + 30 -> 50 - 25 * 30/50 (the last segment, 150..200)
]


@pytest.mark.parametrize(("name", "value", "expected"), SEGMENT_CASES)
def test_a_fifth_into_each_segment(name: str, value: float, expected: float) -> None:
    assert score(name, value) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("name", "value"),
    [("bod5", 50.01), ("cod", 150.1), ("toc", 50.01), ("nh4_n", 5.01), ("no3_n", 15.01),
     ("no2_n", 0.0501), ("po4_p", 4.01), ("coliform", 10001), ("e_coli", 200.1),
     ("ph", 5.49), ("ph", 9.01), ("do_percent", 19.99), ("do_percent", 200.01)],
)  # fmt: skip
def test_beyond_the_published_table_the_floor_is_10(name: str, value: float) -> None:
    assert score(name, value) == 10


# pH 7 -> 100; BOD5 5 -> 87.5; COD 12 -> 90; N-NH4 0.2 -> 100; P-PO4 0.15 -> 87.5;
# mean IV = 365 / 4 = 91.25; coliform 3000 -> 95.
SAMPLE = {"ph": 7.0, "bod5": 5.0, "cod": 12.0, "nh4_n": 0.2, "po4_p": 0.15, "coliform": 3000.0}


def test_weighted_cube_root_is_the_default() -> None:
    # (91.25^2 * 95)^(1/3) = 791023.4^(1/3) = 92.48 -> 92
    result = water_quality_index(SAMPLE)
    assert result is not None
    assert result.combination is Combination.WEIGHTED_CUBE_ROOT
    assert result.value == 92
    assert result.band.key == "very_good" and result.band.hex == "#3333ff"
    assert result.parameters == ("ph", "bod5", "cod", "nh4_n", "po4_p", "coliform")
    assert result.sub_indices["bod5"] == pytest.approx(87.5)


def test_geometric_square_root_combination() -> None:
    # sqrt(91.25 * 95) = 93.11 -> 93
    result = water_quality_index(SAMPLE, Combination.GEOMETRIC_SQRT)
    assert result is not None and result.value == 93


def test_ph_factor_scales_the_index() -> None:
    # pH 8.75 -> 75: 0.75 * 92.48 = 69.36 -> 69, "Trung bình"
    result = water_quality_index({**SAMPLE, "ph": 8.75})
    assert result is not None
    assert (result.value, result.band.name_vi) == (69, "Trung bình")


def test_without_group_v_the_index_is_mean_iv() -> None:
    no_coliform = {k: v for k, v in SAMPLE.items() if k != "coliform"}
    result = water_quality_index(no_coliform)  # 91.25 -> 91
    assert result is not None and result.value == 91
    same = water_quality_index(no_coliform, Combination.GEOMETRIC_SQRT)  # no V: no difference
    assert same is not None and same.value == 91


def test_do_is_scored_as_percent_saturation() -> None:
    # 7.0 mg/L at 25 °C = 85.62 % -> 75 + 25 * 10.62 / 13 = 95.42
    result = water_quality_index({"do": 7.0, "temperature": 25.0, "bod5": 4.0, "cod": 10.0})
    assert result is not None
    assert result.do_saturation_percent == pytest.approx(85.62, abs=0.01)
    assert result.sub_indices["do"] == pytest.approx(95.42, abs=0.01)
    assert result.value == 98  # (95.42 + 100 + 100) / 3 = 98.47


def test_fewer_than_three_group_iv_parameters_gives_a_reason() -> None:
    values = {"ph": 7.0, "do": 7.0, "bod5": 4.0, "cod": 10.0, "coliform": 100.0}
    assert water_quality_index(values) is None
    reason = why_no_wqi(values)
    assert reason is not None
    assert "at least 3 group IV" in reason and "do needs temperature" in reason


def test_strict_group_count_is_available() -> None:
    no_coliform = {k: v for k, v in SAMPLE.items() if k != "coliform"}
    assert water_quality_index(no_coliform, min_groups=3) is None
    assert why_no_wqi(no_coliform, min_groups=3) == "needs at least 3 parameter groups, has 2"
    assert water_quality_index(SAMPLE, min_groups=3) is not None


def test_bad_values_are_errors_not_missing_data() -> None:
    with pytest.raises(ValueError, match="unknown water parameter"):
        water_quality_index({**SAMPLE, "lead": 0.1})
    with pytest.raises(ValueError, match=">= 0"):
        water_quality_index({**SAMPLE, "cod": -1.0})
    assert water_quality_index({**SAMPLE, "temperature": -2.0, "turbidity": 40.0}) is not None


@pytest.mark.parametrize(
    ("value", "key", "name_vi"),
    [
        (1, "very_heavily_polluted", "Ô nhiễm rất nặng"),
        (9, "very_heavily_polluted", "Ô nhiễm rất nặng"),
        (10, "poor", "Kém"),
        (25, "poor", "Kém"),
        (26, "bad", "Xấu"),
        (50, "bad", "Xấu"),
        (51, "medium", "Trung bình"),
        (75, "medium", "Trung bình"),
        (76, "good", "Tốt"),
        (90, "good", "Tốt"),
        (91, "very_good", "Rất tốt"),
        (100, "very_good", "Rất tốt"),
    ],
)
def test_wqi_band_edges(value: int, key: str, name_vi: str) -> None:
    band = band_for(value)
    assert (band.key, band.name_vi) == (key, name_vi)


def test_wqi_band_colours() -> None:
    assert band_for(5).rgb == (126, 0, 35)
    assert band_for(20).rgb == (255, 0, 0)
    assert band_for(40).rgb == (255, 126, 0)


@given(
    st.fixed_dictionaries(
        {
            "bod5": st.floats(0, 1e4),
            "cod": st.floats(0, 1e4),
            "nh4_n": st.floats(0, 1e3),
        },
        optional={
            "ph": st.floats(0, 14),
            "po4_p": st.floats(0, 1e3),
            "coliform": st.floats(0, 1e9),
            "e_coli": st.floats(0, 1e9),
            "do": st.floats(0, 25),
            "temperature": st.floats(-5, 45),
        },
    ),
    st.sampled_from(list(Combination)),
)
def test_wqi_is_always_on_its_scale(values: dict[str, float], combination: Combination) -> None:
    result = water_quality_index(values, combination)
    assert result is not None
    assert 1 <= result.value <= 100
    assert result.band.low <= result.value <= result.band.high


@given(st.sampled_from(sorted(GROUP_IV | GROUP_V)), st.floats(0, 1e6), st.floats(0, 1e6))
def test_sub_indices_never_rise_with_pollution(name: str, a: float, b: float) -> None:
    scale = (GROUP_IV | GROUP_V)[name]
    low, high = sorted((a, b))
    assert 10 <= scale.score(high) <= scale.score(low) <= 100


# --- edges the mutation run found untested -------------------------------------------------


def test_group_v_enters_by_its_mean() -> None:
    # SAMPLE plus E. coli 35 -> 87.5: mean V = (95 + 87.5) / 2 = 91.25 = mean IV, so both
    # combinations give 91.25 -> 91 (a sum instead of the mean would give 145).
    both = {**SAMPLE, "e_coli": 35.0}
    for combination in Combination:
        result = water_quality_index(both, combination)
        assert result is not None and result.value == 91


def test_one_group_suffices_by_default() -> None:
    group_iv_only = {"bod5": 4.0, "cod": 10.0, "nh4_n": 0.2}
    assert why_no_wqi(group_iv_only) is None
    result = water_quality_index(group_iv_only)
    assert result is not None and result.value == 100


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({}, "needs at least 3 group IV parameters, has 0 (none)"),
        (
            {"ph": 7.0, "bod5": 4.0, "cod": 10.0},
            "needs at least 3 group IV parameters, has 2 (bod5, cod)",
        ),
        (
            {"do": 7.0, "bod5": 4.0, "cod": 10.0},
            "needs at least 3 group IV parameters, has 2 (bod5, cod); "
            "do needs temperature to become % saturation",
        ),
    ],
)  # fmt: skip
def test_the_reason_names_what_is_there(values: dict[str, float], reason: str) -> None:
    assert why_no_wqi(values) == reason
