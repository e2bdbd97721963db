"""A monitoring point at the edge of a sanitary landfill (Đa Phước, Nam Sơn, Phước Hiệp).

Each point has a perimeter gas probe (CH4, CO2, O2, H2S), a leachate well over the liner and a
COD probe at the treated-leachate outfall.  Gas migrates out of the waste most when the air
pressure is low: the atmospheric tide of the tropics gives two pressure lows a day (about 04:00
and 16:00), so probe methane peaks then.  Rain raises the leachate head.  An upset (a failed
gas-extraction blower, a clogged leachate pump) drives methane past its explosive limit,
pushes out oxygen, raises the leachate head and the COD of what leaves the treatment plant.
Values are a pure function of (seed, sensor, instant).
"""

from __future__ import annotations

import math
from datetime import datetime

from urbanpulse.simulators import noise
from urbanpulse.simulators.conditions import CALM, Conditions, epoch_s, local_hour
from urbanpulse.simulators.fleet import SimulatedSensor


def pressure_low_factor(local_hour: float) -> float:
    """0 at the pressure highs (about 10:00 and 22:00) .. 1 at the lows (04:00 and 16:00)."""
    return 0.5 - 0.5 * math.cos(4.0 * math.pi * (local_hour - 4.0) / 24.0 + math.pi)


class LandfillModel:
    kind = "landfill"

    def __init__(self, sensor: SimulatedSensor, seed: int) -> None:
        self.sensor = sensor
        self._key = (seed, "landfill", sensor.index)
        self._leak = noise.between(0.5, 1.5, *self._key, "leak")  # how gas-tight the cell is

    def values_at(self, ts: datetime, conditions: Conditions = CALM) -> dict[str, float]:
        hour = local_hour(ts)
        second = epoch_s(ts)

        def n(i: int, spread: float = 0.05) -> float:
            return min(1.5, max(0.5, 1.0 + spread * noise.normal(*self._key, second, i)))

        upset, rain = conditions.upset, conditions.rain
        migration = self._leak * (0.6 + 0.8 * pressure_low_factor(hour))
        ch4 = (0.25 * migration + 8.0 * upset) * n(0, 0.08)  # % vol; 8 % at a full upset
        co2 = (1.5 * migration + 6.0 * upset) * n(1)
        return {
            "ch4": round(ch4, 3),
            "co2": round(co2, 2),
            "o2": round(max(0.0, 20.9 - 0.6 * co2 - 0.8 * ch4) * n(2, 0.01), 2),
            "h2s": round((1.0 * migration + 40.0 * upset) * n(3, 0.1), 1),
            "leachate_level": round((0.15 + 0.05 * rain + 0.4 * upset) * n(4, 0.03), 3),
            "leachate_ph": round(7.8 - 0.3 * upset + 0.05 * noise.normal(*self._key, second, 5), 2),
            "leachate_cod": round((280.0 + 400.0 * upset) * n(6), 0),
            "temperature": round(
                31.0 + 3.0 * math.sin(2.0 * math.pi * (hour - 9.0) / 24.0) + 5.0 * upset, 1
            ),
        }
