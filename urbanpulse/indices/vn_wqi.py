"""Vietnam's water quality index, VN_WQI (Decision 1460/QĐ-TCMT, 12 November 2019).

Each parameter gets a sub-index (10..100) from the decision's breakpoint tables; the groups
are then combined:

* group I (pH) enters as the factor WQI_I / 100;
* group IV (organics and nutrients: DO as % saturation, BOD5, COD, TOC, N-NH4, N-NO3, N-NO2,
  P-PO4) by its arithmetic mean, and at least three of its parameters are required;
* group V (micro-organisms: coliform, E. coli) by its arithmetic mean.

Default combination, ``Combination.WEIGHTED_CUBE_ROOT``:
WQI = (WQI_I/100) * [(mean IV)^2 * mean V]^(1/3).  It is the form in which Decision 1460 is
read by most public implementations (and the team's default in DESIGN.md): the organic and
nutrient load, usually five to eight measured parameters, counts twice as much as the
microbiology, one or two, so a single coliform count cannot swing the index on its own.
``Combination.GEOMETRIC_SQRT``, sqrt(mean IV * mean V), weighs them equally and is offered
because some published WQI figures were computed that way; compare before trusting either.
Without group V the WQI is mean IV (times the pH factor).  The official text was not
reachable while this was written (see DESIGN.md section 5): the tables below are as public
implementations reproduce them.

Groups II (pesticides) and III (heavy metals) are not measured by our probes and are not
implemented: their factor is 1.  The decision (as public implementations read it) asks for at
least 3 of its 5 groups; ``min_groups=3`` enforces that, the default 1 lets continuous probes
without pH or coliform still publish an indicative figure.

The result is rounded half up to an integer, as the decision's scale is integral.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass

from urbanpulse.indices.bands import Band, Table, band_for_value, interpolate, round_half_up

FLOOR = 10.0  # the decision's lowest sub-index (replacing the 1 of the 2011 handbook)


class Combination(enum.Enum):
    WEIGHTED_CUBE_ROOT = "weighted_cube_root"
    GEOMETRIC_SQRT = "geometric_sqrt"


@dataclass(frozen=True)
class Scale:
    """A falling sub-index: 100 up to ``full_until``, then ``table``, above its end 10."""

    full_until: float
    table: Table

    def score(self, concentration: float) -> float:
        if concentration <= self.full_until:
            return 100.0
        if concentration > self.table[-1][0]:
            return FLOOR
        return interpolate(self.table, concentration)


# Decision 1460/QĐ-TCMT, groups IV and V: breakpoints BP_i (mg/L; coliform and E. coli in
# MPN/100 mL) with sub-indices q_i.  N-NH4 drops from 100 to 75 just above 0.3 mg/L, and N-NO3,
# N-NO2, coliform and E. coli fall straight to 10 past their last breakpoint: those steps are
# the table as public implementations reproduce it, kept as found rather than smoothed.
GROUP_IV: dict[str, Scale] = {
    "bod5": Scale(4, ((4, 100), (6, 75), (15, 50), (25, 25), (50, 10))),
    "cod": Scale(10, ((10, 100), (15, 75), (30, 50), (50, 25), (150, 10))),
    "toc": Scale(4, ((4, 100), (6, 75), (15, 50), (25, 25), (50, 10))),
    "nh4_n": Scale(0.3, ((0.3, 75), (0.6, 50), (0.9, 25), (5, 10))),
    "no3_n": Scale(2, ((2, 100), (5, 75), (10, 50), (15, 25))),
    "no2_n": Scale(0.05, ((0.05, 100),)),
    "po4_p": Scale(0.1, ((0.1, 100), (0.2, 75), (0.3, 50), (0.5, 25), (4, 10))),
}
GROUP_V: dict[str, Scale] = {
    "coliform": Scale(2500, ((2500, 100), (5000, 75), (7500, 50), (10000, 25))),
    "e_coli": Scale(20, ((20, 100), (50, 75), (100, 50), (200, 25))),
}

# Decision 1460/QĐ-TCMT: DO as % saturation (group IV) and pH (group I).
DO_PERCENT: Table = (
    (20, 25), (50, 50), (75, 75), (88, 100), (112, 100), (125, 75), (150, 50), (200, 25),
)  # fmt: skip
PH: Table = ((5.5, 50), (6, 100), (8.5, 100), (9, 50))

# Decision 1460/QĐ-TCMT, WQI ranges, quality and RGB colours.
BANDS: tuple[Band, ...] = (
    Band("very_heavily_polluted", "Ô nhiễm rất nặng", "Very heavily polluted", (126, 0, 35), 0, 9),
    Band("poor", "Kém", "Poor", (255, 0, 0), 10, 25),
    Band("bad", "Xấu", "Bad", (255, 126, 0), 26, 50),
    Band("medium", "Trung bình", "Medium", (255, 255, 0), 51, 75),
    Band("good", "Tốt", "Good", (0, 228, 0), 76, 90),
    Band("very_good", "Rất tốt", "Very good", (51, 51, 255), 91, 100),
)

INPUTS = ("ph", "do", *GROUP_IV, *GROUP_V)
# Catalogue water metrics that the decision does not score; accepted and left aside.
NOT_SCORED = ("temperature", "turbidity", "conductivity")
MIN_GROUP_IV = 3


@dataclass(frozen=True)
class WqiResult:
    value: int
    band: Band
    sub_indices: dict[str, float]
    parameters: tuple[str, ...]
    combination: Combination
    do_saturation_percent: float | None


def do_saturation(temperature_c: float) -> float:
    """Oxygen solubility in fresh water (mg/L) at ``temperature_c``, the decision's polynomial."""
    t = temperature_c
    return 14.652 - 0.41022 * t + 0.0079910 * t**2 - 0.000077774 * t**3


def do_percent(do_mg_l: float, temperature_c: float) -> float:
    return do_mg_l / do_saturation(temperature_c) * 100


def ph_sub_index(ph: float) -> float:
    return FLOOR if ph < 5.5 or ph > 9 else interpolate(PH, ph)


def do_sub_index(percent: float) -> float:
    return FLOOR if percent < 20 or percent > 200 else interpolate(DO_PERCENT, percent)


def band_for(value: int) -> Band:
    return band_for_value(BANDS, value)


def water_quality_index(
    values: Mapping[str, float],
    combination: Combination = Combination.WEIGHTED_CUBE_ROOT,
    *,
    min_groups: int = 1,
) -> WqiResult | None:
    """VN_WQI of one sample, or None when it cannot be computed (see :func:`why_no_wqi`)."""
    if why_no_wqi(values, min_groups=min_groups) is not None:
        return None
    subs, saturation = _sub_indices(values)
    group_iv = [subs[k] for k in ("do", *GROUP_IV) if k in subs]
    group_v = [subs[k] for k in GROUP_V if k in subs]
    mean_iv = sum(group_iv) / len(group_iv)
    ph_factor = subs["ph"] / 100 if "ph" in subs else 1.0
    if not group_v:
        core = mean_iv
    elif combination is Combination.WEIGHTED_CUBE_ROOT:
        core = (mean_iv**2 * (sum(group_v) / len(group_v))) ** (1 / 3)
    else:
        core = math.sqrt(mean_iv * sum(group_v) / len(group_v))
    value = round_half_up(ph_factor * core)
    return WqiResult(value, band_for(value), subs, tuple(subs), combination, saturation)


def why_no_wqi(values: Mapping[str, float], *, min_groups: int = 1) -> str | None:
    """Why the VN_WQI of ``values`` cannot be computed, or None when it can.

    Raises ValueError for unknown parameters and negative or non-numeric values: those are
    input errors, not missing data.
    """
    for key, value in values.items():
        if key not in INPUTS and key not in NOT_SCORED:
            raise ValueError(f"unknown water parameter {key!r}")
        if not value >= 0 and key != "temperature":
            raise ValueError(f"{key} must be >= 0, got {value!r}")
    group_iv = [k for k in ("do", *GROUP_IV) if k in values]
    if "do" in values and "temperature" not in values:
        group_iv.remove("do")
    if len(group_iv) < MIN_GROUP_IV:
        hint = "; do needs temperature to become % saturation" if "do" in values else ""
        return (
            f"needs at least {MIN_GROUP_IV} group IV parameters, has {len(group_iv)}"
            f" ({', '.join(group_iv) or 'none'}){hint}"
        )
    groups = 1 + ("ph" in values) + any(k in values for k in GROUP_V)
    if groups < min_groups:
        return f"needs at least {min_groups} parameter groups, has {groups}"
    return None


def _sub_indices(values: Mapping[str, float]) -> tuple[dict[str, float], float | None]:
    subs: dict[str, float] = {}
    saturation: float | None = None
    if "ph" in values:
        subs["ph"] = ph_sub_index(values["ph"])
    if "do" in values and "temperature" in values:
        saturation = do_percent(values["do"], values["temperature"])
        subs["do"] = do_sub_index(saturation)
    for name, scale in (GROUP_IV | GROUP_V).items():
        if name in values:
            subs[name] = scale.score(values[name])
    return subs, saturation
