"""When a bin will reach 90 %: a robust straight line through its fill since the last emptying.

The Theil-Sen slope (the median of pairwise slopes) ignores a stray reading, such as a lid
left open or a bag dropped on the sensor, that would tilt a least-squares line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import theilslopes

from urbanpulse.forecast.series import FloatArray

FULL = 90.0  # % at which a bin is due for collection
EMPTIED_DROP = 20.0  # a fall of this many points between readings is an emptying


@dataclass(frozen=True)
class FillTrend:
    fill: float  # % now, on the fitted line
    slope_per_h: float  # % per hour; nan with fewer than two readings
    hours_to_full: float | None  # 0 when already full; None when not filling


def since_emptied(hours: FloatArray, fill: FloatArray) -> tuple[FloatArray, FloatArray]:
    """The readings after the last emptying (readings in time order)."""
    drops = np.flatnonzero(np.diff(fill) <= -EMPTIED_DROP)
    first = int(drops[-1]) + 1 if len(drops) else 0
    return hours[first:], fill[first:]


def fill_trend(hours: FloatArray, fill: FloatArray, threshold: float = FULL) -> FillTrend:
    """Trend of readings at ``hours`` (any origin, increasing) seen at the last of them."""
    if len(fill) == 0:
        raise ValueError("no fill readings")
    hours, fill = since_emptied(hours, fill)
    if len(fill) < 2 or hours[-1] == hours[0]:
        level = float(fill[-1])
        return FillTrend(level, math.nan, 0.0 if level >= threshold else None)
    # "joint": the intercept is the median residual, so a stray reading cannot shift it.
    slope, intercept, _, _ = theilslopes(fill, hours, method="joint")
    level = float(intercept + slope * hours[-1])
    if level >= threshold or fill[-1] >= threshold:
        return FillTrend(level, float(slope), 0.0)
    if slope <= 0:
        return FillTrend(level, float(slope), None)
    return FillTrend(level, float(slope), (threshold - level) / float(slope))
