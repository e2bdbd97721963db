"""An air-quality sensor in a Vietnamese city: traffic-driven pollution with rush-hour peaks.

Shapes follow what HCMC stations show: PM2.5 and NO2 peak in the morning (about 07:30) and
evening (about 17:30) rush hours, O3 peaks in the early afternoon sun, temperature follows the
day and humidity moves against it.  Each sensor has its own level (a busy junction or a park)
and its own noise stream, so runs with the same seed give the same values.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np

from urbanpulse.simulators.fleet import SimulatedSensor

VIETNAM_UTC_OFFSET = timedelta(hours=7)


def rush_hour_factor(local_hour: float) -> float:
    """1 at night, up to about 1.9 at the rush-hour peaks."""
    morning = 0.8 * math.exp(-(((local_hour - 7.5) / 1.0) ** 2))
    evening = 0.9 * math.exp(-(((local_hour - 17.5) / 1.2) ** 2))
    return 1.0 + morning + evening


def sunlight_factor(local_hour: float) -> float:
    """0 at night, 1 at solar noon (the tropics: roughly 06:00 to 18:00)."""
    return max(0.0, math.sin(math.pi * (local_hour - 6.0) / 12.0))


class AirSensorModel:
    def __init__(self, sensor: SimulatedSensor, seed: int) -> None:
        self.sensor = sensor
        self._rng = np.random.default_rng([seed, sensor.index, 1])
        self._level = float(self._rng.uniform(0.6, 1.6))  # busy road vs. quiet street

    def values_at(self, ts: datetime) -> dict[str, float]:
        hour = _local_hour(ts)
        traffic = rush_hour_factor(hour) * self._level
        sun = sunlight_factor(hour)
        noise = [float(x) for x in self._rng.normal(1.0, 0.08, size=6).clip(0.5, 1.5)]
        pm25 = 22.0 * traffic * noise[0]
        temperature = 27.0 + 6.0 * sun + float(self._rng.normal(0, 0.3))
        return {
            "pm25": round(pm25, 1),
            "pm10": round(pm25 * 1.6 * noise[1], 1),
            "no2": round(38.0 * traffic * noise[2], 1),
            "o3": round((25.0 + 90.0 * sun) * noise[3], 1),
            "so2": round(12.0 * self._level * noise[4], 1),
            "co": round(900.0 * traffic * noise[5], 0),
            "temperature": round(temperature, 1),
            "humidity": round(min(100.0, max(30.0, 88.0 - 3.5 * (temperature - 27.0))), 1),
        }


def _local_hour(ts: datetime) -> float:
    local = ts + VIETNAM_UTC_OFFSET
    return local.hour + local.minute / 60.0 + local.second / 3600.0
