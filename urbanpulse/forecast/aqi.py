"""The hourly VN_AQI a PM2.5 forecast implies: the NowCast of observed and forecast hours."""

from __future__ import annotations

from collections.abc import Sequence

from urbanpulse.indices.vn_aqi import NOWCAST_HOURS, nowcast, sub_index


def implied_aqi(observed: Sequence[float | None], forecast: Sequence[float]) -> list[int | None]:
    """VN_AQI for each forecast hour.

    ``observed``: the hourly PM2.5 means up to the origin, newest first (None for a gap);
    ``forecast``: the values for horizons 1, 2, ...  Horizon h's NowCast weighs the forecast
    hours h..1, then the observed hours, 12 in all.
    """
    result: list[int | None] = []
    for horizon in range(1, len(forecast) + 1):
        hours = [*reversed(forecast[:horizon]), *observed][:NOWCAST_HOURS]
        value = nowcast(hours)
        result.append(None if value is None else sub_index("pm25", value, "1h"))
    return result
