"""A surface-water probe in a city canal or river (Nhiêu Lộc - Thị Nghè, Tô Lịch, Saigon River).

Dissolved oxygen follows photosynthesis: it climbs through the day to a peak in the afternoon
and falls all night, lowest just before dawn.  A pollution plume (sewage overflow after rain,
an illegal discharge) raises BOD5, COD, ammonium and coliform and pulls DO down; rain muddies
the water (turbidity up) and dilutes it (conductivity down).  Each probe has its own baseline
(a clean river reach or a black canal).  Values are a pure function of (seed, sensor, instant).
"""

from __future__ import annotations

import math
from datetime import datetime

from urbanpulse.simulators import noise
from urbanpulse.simulators.conditions import CALM, Conditions, epoch_s, local_hour
from urbanpulse.simulators.fleet import SimulatedSensor


def do_saturation(temperature_c: float) -> float:
    """DO at saturation, mg/L (the polynomial of DESIGN.md §5)."""
    t = temperature_c
    return 14.652 - 0.41022 * t + 0.0079910 * t**2 - 0.000077774 * t**3


def photosynthesis_factor(local_hour: float) -> float:
    """-1 before dawn (about 05:00) .. +1 in mid afternoon (about 15:00)."""
    return math.cos(2.0 * math.pi * (local_hour - 15.0) / 24.0)


class WaterSensorModel:
    kind = "water"

    def __init__(self, sensor: SimulatedSensor, seed: int) -> None:
        self.sensor = sensor
        self._key = (seed, "water", sensor.index)
        self._dirt = noise.between(0.3, 1.0, *self._key, "dirt")  # 0 clean .. 1 black canal

    def values_at(self, ts: datetime, conditions: Conditions = CALM) -> dict[str, float]:
        hour = local_hour(ts)
        second = epoch_s(ts)

        def n(i: int, spread: float = 0.05) -> float:
            return min(1.5, max(0.5, 1.0 + spread * noise.normal(*self._key, second, i)))

        dirt, plume, rain = self._dirt, conditions.plume, conditions.rain
        temperature = 29.0 + 1.5 * math.sin(2.0 * math.pi * (hour - 9.0) / 24.0) - rain
        saturation = do_saturation(temperature)
        # Fraction of saturation: high in a clean reach, low in a black canal, +-25 % by day.
        fraction = (0.85 - 0.55 * dirt) * (1.0 + 0.25 * photosynthesis_factor(hour))
        dissolved = saturation * fraction * (1.0 - 0.6 * plume) * n(0, 0.03)
        organic = 1.0 + 3.0 * plume
        return {
            "ph": round(
                7.2 - 0.4 * dirt - 0.3 * plume + 0.05 * noise.normal(*self._key, second, 1), 2
            ),
            "do": round(max(0.05, dissolved), 2),
            "temperature": round(temperature + 0.1 * noise.normal(*self._key, second, 2), 2),
            "turbidity": round((15.0 + 40.0 * dirt) * (1.0 + 4.0 * rain + plume) * n(3), 1),
            "conductivity": round((300.0 + 500.0 * dirt) * (1.0 - 0.4 * rain) * n(4), 0),
            "bod5": round((4.0 + 30.0 * dirt) * organic * n(5), 1),
            "cod": round((10.0 + 60.0 * dirt) * organic * n(6), 1),
            "nh4_n": round((0.3 + 6.0 * dirt) * (1.0 + 4.0 * plume) * n(7), 2),
            "no3_n": round((0.5 + 2.0 * dirt) * n(8), 2),
            "no2_n": round((0.02 + 0.3 * dirt) * n(9), 3),
            "po4_p": round((0.1 + 1.5 * dirt) * (1.0 + plume) * n(10), 2),
            "coliform": round((2000.0 + 40000.0 * dirt) * 10.0 ** (2.0 * plume) * n(11, 0.2), 0),
        }
