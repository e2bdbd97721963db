"""Air and water quality indices: VN_AQI (Decision 1459/QĐ-TCMT), the US EPA AQI for
comparison, and VN_WQI (Decision 1460/QĐ-TCMT).  Pure functions; the ``urbanpulse index``
command in :mod:`urbanpulse.indices.command` is the only part that reads or writes."""

from urbanpulse.indices.bands import AqiResult, Band, rgb_hex
from urbanpulse.indices.us_aqi import us_aqi, us_sub_index
from urbanpulse.indices.vn_aqi import band_for, daily_aqi, hourly_aqi, nowcast, sub_index
from urbanpulse.indices.vn_wqi import Combination, WqiResult, water_quality_index, why_no_wqi

__all__ = [
    "AqiResult",
    "Band",
    "Combination",
    "WqiResult",
    "band_for",
    "daily_aqi",
    "hourly_aqi",
    "nowcast",
    "rgb_hex",
    "sub_index",
    "us_aqi",
    "us_sub_index",
    "water_quality_index",
    "why_no_wqi",
]
