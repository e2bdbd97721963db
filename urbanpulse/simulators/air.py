"""An air-quality sensor in a Vietnamese city: traffic-driven pollution with rush-hour peaks.

Shapes follow what HCMC stations show: PM2.5 and NO2 peak in the morning (about 07:30) and
evening (about 17:30) rush hours, O3 peaks in the early afternoon sun, temperature follows the
day and humidity moves against it.  Rain washes particles out (PM falls by up to about 60 %
while it rains) and raises humidity.  Each sensor has its own level (a busy junction or a
park), its own noise and a slow drift of its PM reading (low-cost optical sensors drift until
recalibrated; here every 90 days).  Values are a pure function of (seed, sensor, instant).
"""

from __future__ import annotations

import math
from datetime import datetime

from urbanpulse.simulators import noise
from urbanpulse.simulators.conditions import (
    CALM,
    VIETNAM_UTC_OFFSET,
    Conditions,
    epoch_s,
    local_hour,
)
from urbanpulse.simulators.fleet import SimulatedSensor

__all__ = ["VIETNAM_UTC_OFFSET", "AirSensorModel", "rush_hour_factor", "sunlight_factor"]

RECALIBRATION_DAYS = 90


def rush_hour_factor(local_hour: float) -> float:
    """1 at night, up to about 1.9 at the rush-hour peaks."""
    morning = 0.8 * math.exp(-(((local_hour - 7.5) / 1.0) ** 2))
    evening = 0.9 * math.exp(-(((local_hour - 17.5) / 1.2) ** 2))
    return 1.0 + morning + evening


def sunlight_factor(local_hour: float) -> float:
    """0 at night, 1 at solar noon (the tropics: roughly 06:00 to 18:00)."""
    return max(0.0, math.sin(math.pi * (local_hour - 6.0) / 12.0))


class AirSensorModel:
    kind = "air"

    def __init__(self, sensor: SimulatedSensor, seed: int) -> None:
        self.sensor = sensor
        self._key = (seed, "air", sensor.index)
        self._level = noise.between(0.6, 1.6, *self._key, "level")  # busy road vs quiet street
        # PM drift, µg/m³ per day since the last calibration (positive or negative).
        self._drift = 0.05 * noise.normal(*self._key, "drift")

    def values_at(self, ts: datetime, conditions: Conditions = CALM) -> dict[str, float]:
        hour = local_hour(ts)
        second = epoch_s(ts)
        traffic = rush_hour_factor(hour) * self._level
        sun = sunlight_factor(hour) * (1.0 - 0.7 * conditions.rain)
        n = [min(1.5, max(0.5, 1.0 + 0.08 * noise.normal(*self._key, second, i))) for i in range(7)]
        wash = 1.0 - 0.6 * conditions.rain
        days_since_calibration = (second / 86400.0) % RECALIBRATION_DAYS
        drift = self._drift * days_since_calibration
        pm25 = max(0.0, 22.0 * traffic * conditions.pollution * wash * n[0] + drift)
        temperature = 27.0 + 6.0 * sun - 2.5 * conditions.rain + 0.3 * (n[6] - 1.0) * 12.5
        humidity = 88.0 - 3.5 * (temperature - 27.0) + 10.0 * conditions.rain
        return {
            "pm25": round(pm25, 1),
            "pm10": round(pm25 * 1.6 * n[1], 1),
            "no2": round(38.0 * traffic * (1.0 + 0.5 * (conditions.pollution - 1.0)) * n[2], 1),
            "o3": round((25.0 + 90.0 * sun) * n[3], 1),
            "so2": round(12.0 * self._level * n[4], 1),
            "co": round(900.0 * traffic * conditions.pollution * n[5], 0),
            "temperature": round(temperature, 1),
            "humidity": round(min(100.0, max(30.0, humidity)), 1),
        }
