"""Hourly series of one station or ward, the two baselines and the model's features.

A series is a regular grid of hourly means (NaN where the hour has no reading), the hour of
index ``i`` starting at ``start + i hours``.  A forecast is issued at an *origin*: the last
complete hour ``t``; horizon ``h`` forecasts the mean of hour ``t + h``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from urbanpulse.simulators.conditions import VIETNAM_UTC_OFFSET

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

HORIZONS = tuple(range(1, 25))
DAY = 24
LAGS = (0, 1, 2, 3)


@dataclass(frozen=True)
class HourlySeries:
    subject: str  # a sensor id or an area id
    start: datetime  # aware UTC, a whole hour: the hour of index 0
    pm25: FloatArray
    humidity: FloatArray
    temperature: FloatArray

    def __len__(self) -> int:
        return len(self.pm25)

    def hour(self, index: int) -> datetime:
        return self.start + timedelta(hours=index)


def lagged(values: FloatArray, at: IntArray) -> FloatArray:
    """``values[at]`` with NaN where ``at`` falls outside the series."""
    inside = (at >= 0) & (at < len(values))
    out = np.full(len(at), np.nan)
    out[inside] = values[at[inside]]
    return out


def persistence(series: HourlySeries, origins: IntArray, horizon: int) -> FloatArray:
    """The last complete hour, whatever the horizon."""
    return lagged(series.pm25, origins)


def same_hour_yesterday(series: HourlySeries, origins: IntArray, horizon: int) -> FloatArray:
    """The hour 24 hours before the target (known at the origin for horizons up to 24)."""
    return lagged(series.pm25, origins + horizon - DAY)


def actual(series: HourlySeries, origins: IntArray, horizon: int) -> FloatArray:
    return lagged(series.pm25, origins + horizon)


def _trailing_mean(values: FloatArray, width: int) -> FloatArray:
    """Mean of ``values[i - width + 1 .. i]`` over the hours present (NaN if none)."""
    present = np.isfinite(values)
    sums = np.concatenate([[0.0], np.cumsum(np.where(present, values, 0.0))])
    counts = np.concatenate([[0], np.cumsum(present)])
    index = np.arange(len(values))
    low = np.maximum(index - width + 1, 0)
    n = counts[index + 1] - counts[low]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (sums[index + 1] - sums[low]) / np.maximum(n, 1), np.nan)


def local_hours(series: HourlySeries, at: IntArray) -> FloatArray:
    """Hour of the day in Vietnam of the hours ``at``."""
    first = (series.start + VIETNAM_UTC_OFFSET).hour
    return ((first + at) % DAY).astype(np.float64)


def features(series: HourlySeries, origins: IntArray, horizon: int) -> FloatArray:
    """One row per origin: PM2.5 at the origin and 1-3 h before, its 24 h mean, the same hour
    yesterday, humidity, humidity's 3 h change, temperature, the horizon and the target's local
    hour.  NaN marks a missing input (the learner handles it)."""
    y = series.pm25
    columns = [lagged(y, origins - k) for k in LAGS]
    columns.append(lagged(_trailing_mean(y, DAY), origins))
    columns.append(same_hour_yesterday(series, origins, horizon))
    humidity = lagged(series.humidity, origins)
    columns += [
        humidity,
        humidity - lagged(series.humidity, origins - 3),
        lagged(series.temperature, origins),
        np.full(len(origins), float(horizon)),
        local_hours(series, origins + horizon),
    ]
    return np.column_stack(columns)


def usable_origins(series: HourlySeries, first: int = 0, end: int | None = None) -> IntArray:
    """Origins in [first, end) whose own hour has a value (a forecast needs a latest value)."""
    stop = len(series) if end is None else min(end, len(series))
    index = np.arange(max(first, 0), stop, dtype=np.int64)
    return index[np.isfinite(series.pm25[index])]
