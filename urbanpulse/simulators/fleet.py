"""Where simulated sensors stand.  Deterministic for a given seed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BoundingBox:
    south: float
    west: float
    north: float
    east: float


# Central Ho Chi Minh City (the former districts 1, 3, 4, 5, 10, Binh Thanh, Phu Nhuan).
CENTRAL_HCMC = BoundingBox(south=10.745, west=106.650, north=10.815, east=106.725)


@dataclass(frozen=True)
class SimulatedSensor:
    sensor_id: str
    kind: str
    lat: float
    lon: float
    index: int


def place_sensors(
    kind: str, count: int, seed: int, box: BoundingBox = CENTRAL_HCMC, prefix: str = "hcm"
) -> list[SimulatedSensor]:
    rng = np.random.default_rng([seed, count])
    lats = rng.uniform(box.south, box.north, count)
    lons = rng.uniform(box.west, box.east, count)
    return [
        SimulatedSensor(
            f"{prefix}-{kind}-{i:04d}", kind, round(float(lat), 6), round(float(lon), 6), i
        )
        for i, (lat, lon) in enumerate(zip(lats, lons, strict=True))
    ]
