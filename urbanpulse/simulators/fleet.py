"""Where simulated sensors stand.  Deterministic for a given seed.

``place_sensors`` scatters sensors over a bounding box (the original, simple placement);
``place_in_area`` puts them inside a shipped ward or province polygon, and ``place_on_road``
along a named road, so that the platform's point-in-polygon enrichment finds them in the area
a scenario names.  ``fleet_of_kind`` takes an operator's own sensors instead (from a registry
file or the database).
"""

from __future__ import annotations

import functools
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import orjson
import shapely

from urbanpulse.core.areas import AreaIndex, AreaRecord, areas_from_geojson
from urbanpulse.core.catalogue import get_kind
from urbanpulse.data.areas import shipped_area_paths
from urbanpulse.storage.registry import SensorRecord


@dataclass(frozen=True)
class BoundingBox:
    south: float
    west: float
    north: float
    east: float


# Central Ho Chi Minh City (the former districts 1, 3, 4, 5, 10, Binh Thanh, Phu Nhuan).
CENTRAL_HCMC = BoundingBox(south=10.745, west=106.650, north=10.815, east=106.725)

# The shipped cities and the province area that holds each one's wards.
CITY_PROVINCES: Mapping[str, str] = {"hcmc": "vn-hcm", "hanoi": "vn-hn"}


@dataclass(frozen=True)
class SimulatedSensor:
    sensor_id: str
    kind: str
    lat: float
    lon: float
    index: int
    area_id: str | None = None  # the most specific shipped area holding the sensor
    road: str | None = None  # traffic cameras: the road they watch

    @property
    def display_name(self) -> str:
        """Its name in the registry, from the kind's label in the catalogue."""
        return f"Simulated {get_kind(self.kind).label.en} sensor {self.index}"


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


@functools.cache
def shipped_areas() -> tuple[AreaRecord, ...]:
    """Every area of the shipped GeoJSON files (central HCMC and Hanoi)."""
    areas: list[AreaRecord] = []
    for path in shipped_area_paths():
        areas += areas_from_geojson(orjson.loads(path.read_bytes()))
    return tuple(areas)


@functools.cache
def shipped_area_index() -> AreaIndex:
    return AreaIndex(shipped_areas())


def areas_of_city(city: str) -> dict[str, AreaRecord]:
    """The shipped areas of ``city`` (``hcmc`` or ``hanoi``), by id, province first."""
    province = CITY_PROVINCES[city]
    return {
        a.area_id: a for a in shipped_areas() if a.area_id == province or a.parent_id == province
    }


def stable_hash(*parts: object) -> int:
    return zlib.crc32(repr(parts).encode())


def sample_points(
    area: AreaRecord, count: int, seed: int, salt: str = ""
) -> list[tuple[float, float]]:
    """``count`` (lat, lon) points inside the area's polygon, the same for the same seed."""
    rng = np.random.default_rng([seed, stable_hash(area.area_id, salt)])
    west, south, east, north = area.geometry.bounds
    points: list[tuple[float, float]] = []
    while len(points) < count:
        lons = rng.uniform(west, east, 4 * (count - len(points)) + 8)
        lats = rng.uniform(south, north, len(lons))
        inside = shapely.contains_xy(area.geometry, lons, lats)
        points += [
            (round(float(lat), 6), round(float(lon), 6))
            for lat, lon in zip(lats[inside], lons[inside], strict=True)
        ]
    return points[:count]


def points_on_road(
    vertices: Sequence[tuple[float, float]], count: int, seed: int, salt: str = ""
) -> list[tuple[float, float]]:
    """``count`` (lat, lon) points spread along a polyline, slightly jittered, deterministic."""
    rng = np.random.default_rng([seed, stable_hash("road", salt)])
    line = shapely.LineString([(lon, lat) for lat, lon in vertices])
    points = []
    for i in range(count):
        share = (i + 0.5 + 0.3 * float(rng.uniform(-1, 1))) / count
        point = line.interpolate(min(1.0, max(0.0, share)), normalized=True)
        points.append((round(point.y, 6), round(point.x, 6)))
    return points


def locate(points: Sequence[tuple[float, float]]) -> list[str | None]:
    """The most specific shipped area of each (lat, lon) point."""
    return shipped_area_index().locate([p[1] for p in points], [p[0] for p in points])


class FleetError(ValueError):
    """A fleet from a file or the registry that cannot be simulated; the message says why."""


def fleet_of_kind(kind: str, sensors: Sequence[SensorRecord], source: str) -> list[SimulatedSensor]:
    """The ``kind`` sensors among ``sensors`` (from ``source``, for messages), to simulate."""
    chosen = [s for s in sensors if s.kind == kind]
    if not chosen:
        found = Counter(s.kind for s in sensors)
        has = ", ".join(f"{n} {k}" for k, n in sorted(found.items())) or "no sensors"
        raise FleetError(f"no {kind} sensors in {source} (it has {has})")
    fleet = [
        SimulatedSensor(s.sensor_id, kind, s.lat, s.lon, index)
        for index, s in enumerate(chosen)
        if s.lat is not None and s.lon is not None
    ]
    if len(fleet) < len(chosen):
        missing = [s.sensor_id for s in chosen if s.lat is None or s.lon is None]
        raise FleetError(
            f"{len(missing)} {kind} sensors in {source} have no location, which the simulator "
            f"needs: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
        )
    return fleet
