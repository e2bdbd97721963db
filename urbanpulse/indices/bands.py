"""Scale primitives shared by the air and water indices: breakpoint tables, bands, rounding.

Every index here is a piecewise-linear map from a concentration to a score, followed by a
lookup of the score's band (name and colour).  Keeping those two steps in one place means the
VN_AQI, the US EPA AQI and the VN_WQI cannot drift apart in how they interpolate or round.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

# A breakpoint table: (concentration, score) pairs with strictly increasing concentrations.
Table = tuple[tuple[float, float], ...]
Rgb = tuple[int, int, int]


@dataclass(frozen=True)
class Band:
    """One category of an index scale, e.g. VN_AQI 51-100 "Trung bình" (yellow)."""

    key: str
    name_vi: str
    name_en: str
    rgb: Rgb
    low: int
    high: int

    @property
    def hex(self) -> str:
        return rgb_hex(self.rgb)

    def to_json(self) -> dict[str, str]:
        """The one JSON form of a band, for the API and the CLI alike."""
        return {
            "key": self.key,
            "name_vi": self.name_vi,
            "name_en": self.name_en,
            "color": self.hex,
        }


@dataclass(frozen=True)
class AqiResult:
    """An air-quality index: the overall value, which pollutant set it, and each sub-index."""

    value: int
    dominant: str
    sub_indices: dict[str, int] = field(compare=True)
    band: Band


def rgb_hex(rgb: Rgb) -> str:
    """``(255, 126, 0)`` -> ``"#ff7e00"``."""
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def round_half_up(value: float) -> int:
    """Round .5 away from zero for the non-negative scores used here.

    Python's ``round`` rounds half to even (40.5 -> 40); the decisions and the EPA round as
    people do by hand (40.5 -> 41), which is what an officer checking a figure expects.
    """
    return math.floor(value + 0.5)


def interpolate(table: Table, concentration: float) -> float:
    """Linear interpolation on a continuous breakpoint table.

    ``I = (I_hi - I_lo) / (BP_hi - BP_lo) * (C - BP_lo) + I_lo``.  Below the first breakpoint
    the first score applies, above the last the last one (callers decide whether that clamp is
    right for their index).
    """
    if math.isnan(concentration):
        raise ValueError("concentration is not a number")
    first_c, first_i = table[0]
    if concentration <= first_c:
        return first_i
    for (c_lo, i_lo), (c_hi, i_hi) in itertools.pairwise(table):
        if concentration <= c_hi:
            return (i_hi - i_lo) / (c_hi - c_lo) * (concentration - c_lo) + i_lo
    return table[-1][1]


def band_for_value(bands: Sequence[Band], value: int) -> Band:
    """The band holding ``value``; values above the scale fall in the top band."""
    if value < bands[0].low:
        raise ValueError(f"index value {value} is below the scale (starts at {bands[0].low})")
    for band in bands:
        if value <= band.high:
            return band
    return bands[-1]


def truncate(value: float, decimals: int) -> float:
    """Cut (not round) to ``decimals`` places, as the EPA AQI rules require.

    A tiny epsilon absorbs binary noise so that 0.07 (stored as 0.0699999...) stays 0.070.
    """
    scale = 10**decimals
    return float(math.floor(value * scale + 1e-9) / scale)
