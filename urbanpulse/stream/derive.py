"""Derived indices per reading, as pure functions of the readings and the hourly window.

- Air: the hourly VN_AQI (Decision 1459/QĐ-TCMT) as it stands when the reading arrives: gases
  from the current hour's mean, PM2.5 and PM10 from the NowCast of the last 12 hourly means.
- Water: the VN_WQI (Decision 1460/QĐ-TCMT) of the sample itself.
- Incinerator: each stack pollutant at the reference O2 (QCVN 61-MT:2016/BTNMT), from the same
  reading's O2.
- Traffic cameras: the congestion index of the interval itself (``indices/congestion.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from urbanpulse.core.catalogue import STACK_POLLUTANTS
from urbanpulse.core.envelope import Reading
from urbanpulse.indices.congestion import congestion_index
from urbanpulse.indices.stack_oxygen import at_reference_oxygen
from urbanpulse.indices.vn_wqi import Combination, water_quality_index
from urbanpulse.storage.writer import ReadingKey
from urbanpulse.stream.windows import HourlyMeans


def derive_indices(
    readings: Iterable[Reading], air_hours: HourlyMeans, combination: Combination
) -> dict[ReadingKey, dict[str, Any]]:
    """Index values by reading; feeds each new air reading into ``air_hours`` (in time order)."""
    derived: dict[ReadingKey, dict[str, Any]] = {}
    for reading in sorted(readings, key=lambda r: r.ts):
        key = (reading.sensor_id, reading.ts)
        if reading.kind == "air":
            air_hours.add(reading.sensor_id, reading.ts, reading.values)
            aqi = air_hours.hourly_aqi(reading.sensor_id, reading.ts)
            if aqi is not None:
                derived[key] = {"vn_aqi": aqi.value, "vn_aqi_pollutant": aqi.dominant}
        elif reading.kind == "water":
            wqi = water_quality_index(reading.values, combination)
            if wqi is not None:
                derived[key] = {"wqi": wqi.value}
        elif reading.kind == "incinerator" and "o2" in reading.values:
            measured = {
                n: v for n, *_ in STACK_POLLUTANTS if (v := reading.values.get(n)) is not None
            }
            if corrected := at_reference_oxygen(measured, reading.values["o2"]):
                derived[key] = corrected
        elif reading.kind == "traffic_camera":
            level = congestion_index(reading.values)
            if level is not None:
                derived[key] = {"congestion": level}
    return derived
