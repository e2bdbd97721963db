"""A continuous emission monitor on the stack of a municipal waste incinerator (Sóc Sơn, Cần Thơ).

The furnace follows the waste delivered: trucks tip by day, so the load (and the flue-gas flow)
runs higher from mid-morning to evening and the excess air (O2) lower.  Behind the flue-gas
cleaning, concentrations stay well under the limits.  An upset (wet waste smothering the grate,
a torn bag filter) means incomplete combustion and a dirty stack: CO, dust and acid gases jump
several-fold while O2 rises.  Concentrations are as measured (dry, normal cubic metres); the
processor corrects them to the reference O2.  Values are a pure function of (seed, sensor,
instant).
"""

from __future__ import annotations

import math
from datetime import datetime

from urbanpulse.simulators import noise
from urbanpulse.simulators.conditions import CALM, Conditions, epoch_s, local_hour
from urbanpulse.simulators.fleet import SimulatedSensor

# Typical stack concentration behind the cleaning, mg/Nm³, and how many times it grows in a
# full upset.
BASELINE: dict[str, tuple[float, float]] = {
    "dust": (8.0, 18.0),
    "so2": (60.0, 5.0),
    "nox": (220.0, 1.5),
    "co": (30.0, 14.0),
    "hcl": (10.0, 8.0),
    "hf": (0.4, 4.0),
    "toc": (3.0, 10.0),
}


def load_factor(local_hour: float) -> float:
    """Furnace load: about 0.8 before dawn up to about 1.0 in the late afternoon."""
    return 0.9 + 0.1 * math.sin(2.0 * math.pi * (local_hour - 11.0) / 24.0)


class IncineratorModel:
    kind = "incinerator"

    def __init__(self, sensor: SimulatedSensor, seed: int) -> None:
        self.sensor = sensor
        self._key = (seed, "incinerator", sensor.index)
        self._size = noise.between(0.5, 1.5, *self._key, "size")  # line capacity

    def values_at(self, ts: datetime, conditions: Conditions = CALM) -> dict[str, float]:
        second = epoch_s(ts)
        load = load_factor(local_hour(ts))
        upset = conditions.upset

        def n(i: int, spread: float = 0.08) -> float:
            return min(1.5, max(0.5, 1.0 + spread * noise.normal(*self._key, second, i)))

        values = {
            name: round(level * load * (1.0 + (growth - 1.0) * upset) * n(i), 2)
            for i, (name, (level, growth)) in enumerate(BASELINE.items())
        }
        o2 = (9.5 - 2.0 * (load - 0.9) * 10.0 + 3.0 * upset) * n(10, 0.02)
        return {
            **values,
            "o2": round(min(20.5, max(3.0, o2)), 2),
            "temperature": round(
                (165.0 + 20.0 * (load - 0.9) * 10.0 + 15.0 * upset) * n(11, 0.01), 1
            ),
            "flow": round(60000.0 * self._size * load * n(12, 0.02), 0),
        }
