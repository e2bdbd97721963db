"""One refresh of every forecast: read the hourly means, train, forecast, store."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np

from urbanpulse.core.settings import ForecastSettings
from urbanpulse.forecast.aqi import implied_aqi
from urbanpulse.forecast.bins import fill_trend
from urbanpulse.forecast.forecaster import (
    Forecaster,
    NotEnoughHistoryError,
    train,
)
from urbanpulse.forecast.series import HourlySeries
from urbanpulse.forecast.store import (
    AREA,
    SENSOR,
    AirForecast,
    BinForecast,
    bin_fill,
    hourly_air,
    store_air,
    store_bins,
)

log = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
SEED = 0  # the learner's randomness: a refresh of the same data gives the same forecast


@dataclass(frozen=True)
class RefreshResult:
    air: int  # stations and areas forecast
    bins: int
    trained: bool


def floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def air_forecast(
    forecaster: Forecaster, series: HourlySeries, subject_kind: str
) -> AirForecast | None:
    """The forecast from the series' last hour, or None if that hour has no value."""
    origin = len(series) - 1
    horizons = forecaster.forecast(series, origin)
    if not horizons:
        return None
    observed = [None if np.isnan(v) else float(v) for v in series.pm25[::-1][:12]]
    aqi = [
        implied_aqi(observed, [getattr(h, part) for h in horizons])
        for part in ("lower", "median", "upper")
    ]
    return AirForecast(
        subject_kind, series.subject, series.hour(origin), horizons, list(zip(*aqi, strict=True))
    )


def _bin_forecast(sensor_id: str, readings: list[tuple[datetime, float]]) -> BinForecast:
    first = readings[0][0]
    hours = np.array([(ts - first) / HOUR for ts, _ in readings])
    trend = fill_trend(hours, np.array([fill for _, fill in readings]))
    return BinForecast(
        sensor_id, readings[-1][0], trend.fill, trend.slope_per_h, trend.hours_to_full
    )


async def refresh(
    conn: asyncpg.Connection, settings: ForecastSettings, now: datetime
) -> RefreshResult:
    end = floor_hour(now)
    stations, areas = await hourly_air(conn, end - timedelta(days=settings.history_days), end)
    forecasts: list[AirForecast] = []
    trained = False
    try:
        forecaster = await asyncio.to_thread(train, stations, SEED)
        trained = True
        for subject_kind, group in ((SENSOR, stations), (AREA, areas)):
            found = (air_forecast(forecaster, s, subject_kind) for s in group)
            forecasts += [f for f in found if f is not None]
    except NotEnoughHistoryError as exc:
        log.warning("no air forecasts this time: %s", exc)
    for forecast in forecasts:
        await store_air(conn, now, forecast)
    readings = await bin_fill(conn, now - timedelta(hours=settings.bin_window_h))
    bins = [_bin_forecast(sid, r) for sid, r in readings.items()]
    await store_bins(conn, now, bins)
    return RefreshResult(len(forecasts), len(bins), trained)
