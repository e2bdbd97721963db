"""Traffic cameras: per-interval counts by vehicle class, speed, occupancy, queue, incidents.

Motorbikes are most of the traffic in Vietnamese cities (about four in five vehicles counted on
central HCMC and Hanoi roads), then cars; buses, trucks and bicycles are few.  Demand follows
the day with morning and evening rush-hour peaks; as demand approaches the road's capacity the
detection zone is occupied more of the time, speed falls and a queue forms.  An incident
(a crash, a broken-down bus, flooding) cuts flow and speed and builds a long queue.

Roads are named polylines of the shipped cities (approximate, for scenarios to refer to).
Values are a pure function of (seed, sensor, instant).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime

from urbanpulse.simulators import noise
from urbanpulse.simulators.conditions import CALM, Conditions, epoch_s, local_hour
from urbanpulse.simulators.fleet import SimulatedSensor

# (lat, lon) vertices; approximate centre lines, enough to place cameras along a road.
ROADS: Mapping[str, Mapping[str, tuple[tuple[float, float], ...]]] = {
    "hcmc": {
        "dien-bien-phu": ((10.7815, 106.6835), (10.7900, 106.6960), (10.8010, 106.7150)),
        "nguyen-thi-minh-khai": ((10.7620, 106.6850), (10.7790, 106.6960), (10.7890, 106.7020)),
        "cach-mang-thang-tam": ((10.7720, 106.6930), (10.7860, 106.6760), (10.7960, 106.6640)),
        "vo-van-kiet": ((10.7500, 106.6500), (10.7560, 106.6850), (10.7660, 106.7000)),
        "nguyen-hue": ((10.7765, 106.7030), (10.7735, 106.7055)),
        "xo-viet-nghe-tinh": ((10.7990, 106.7100), (10.8100, 106.7120)),
    },
    "hanoi": {
        "nguyen-trai": ((21.0060, 105.8260), (20.9960, 105.8080)),
        "giai-phong": ((21.0080, 105.8410), (20.9850, 105.8410)),
        "kim-ma": ((21.0320, 105.8350), (21.0310, 105.8120)),
        "tran-hung-dao": ((21.0230, 105.8420), (21.0200, 105.8560)),
        "lang": ((21.0240, 105.8110), (21.0040, 105.8160)),
    },
}

# Shares of the vehicles counted, by class.
CLASS_SHARES: Mapping[str, float] = {
    "motorbike": 0.80,
    "car": 0.12,
    "bus": 0.02,
    "truck": 0.03,
    "bicycle": 0.03,
}


def demand_factor(local_hour: float) -> float:
    """Share of the road's capacity wanted: about 0.12 at 03:00, about 0.95 at the peaks."""
    base = 0.12 + 0.43 * max(0.0, math.sin(math.pi * (local_hour - 5.0) / 18.0))
    morning = 0.42 * math.exp(-(((local_hour - 7.5) / 1.0) ** 2))
    evening = 0.45 * math.exp(-(((local_hour - 17.5) / 1.2) ** 2))
    return base + morning + evening


class TrafficCameraModel:
    kind = "traffic_camera"

    def __init__(self, sensor: SimulatedSensor, seed: int, interval_s: float = 60.0) -> None:
        self.sensor = sensor
        self.interval_s = interval_s
        self._key = (seed, "traffic_camera", sensor.index)
        # Vehicles per minute the camera's road section carries at capacity (2-6 lanes).
        self._capacity_per_min = noise.between(60.0, 180.0, *self._key, "capacity")
        self._free_speed = noise.between(35.0, 50.0, *self._key, "free-speed")

    def values_at(self, ts: datetime, conditions: Conditions = CALM) -> dict[str, float]:
        second = epoch_s(ts)
        ratio = demand_factor(local_hour(ts)) * (1.0 + 0.05 * noise.normal(*self._key, second, 0))
        incident = conditions.incident
        if incident:
            ratio = max(ratio, 0.9)  # the road section is jammed
        occupancy = min(98.0, 100.0 * ratio**1.8 * 0.85)
        speed = self._free_speed * max(0.08, 1.0 - 0.85 * ratio**2)
        flow = ratio * (1.0 - 0.45 * ratio**3)  # past the peak, a jam carries fewer vehicles
        if incident:
            speed *= 0.3
            flow *= 0.5
            occupancy = min(99.0, occupancy + 10.0)
        mean_vehicles = self._capacity_per_min * self.interval_s / 60.0 * flow
        counts = {
            name: noise.poisson(mean_vehicles * share, *self._key, second, name)
            for name, share in CLASS_SHARES.items()
        }
        queue = 0.0 if occupancy < 45.0 else (occupancy - 45.0) * 6.0
        if incident:
            queue += 400.0 + 300.0 * noise.uniform(*self._key, second, "queue")
        return {
            "vehicles": float(sum(counts.values())),
            **{name: float(count) for name, count in counts.items()},
            "avg_speed": round(
                max(1.0, speed * (1.0 + 0.05 * noise.normal(*self._key, second, 1))), 1
            ),
            "occupancy": round(max(0.0, occupancy), 1),
            "queue_length": round(queue, 0),
            "incident": float(incident),
        }
