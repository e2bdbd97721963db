"""Waste bins and the trucks that empty them.

A bin fills at a rate set by its neighbourhood (a market ward fills three times faster than a
quiet residential one) and by the hour (busy by day, slow at night), is emptied when its truck
reaches it, overflows (stays at 100 %) when no truck comes in time, and reports a temperature
spike when something burns inside.  A truck leaves its depot at the start of each shift, drives
from bin to bin at city speed, stops a few minutes at each, takes the bin's contents on board
(its load rises at every pickup), returns to the depot and unloads.

Trucks and bins agree: the engine plans each truck's round first, then tells every bin on that
round when it is emptied, and the truck's pickup at a bin is what that bin held on arrival.
Everything is a pure function of (seed, sensor, instant).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from urbanpulse.simulators import noise
from urbanpulse.simulators.conditions import (
    CALM,
    VIETNAM_UTC_OFFSET,
    Conditions,
    epoch_s,
    local_hour,
)
from urbanpulse.simulators.fleet import SimulatedSensor

EARTH_RADIUS_M = 6_371_000.0
BIN_CAPACITY_KG = 90.0  # a 660 L street container, full, mostly organic waste
TRUCK_SPEED_KMH = 18.0  # average between stops in central-city traffic
STOP_DWELL_S = 180.0
DEFAULT_SHIFTS = (5.0, 17.0)  # local hours at which rounds start
_STEP = timedelta(minutes=15)


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance between two (lat, lon) points, metres."""
    lat1, lon1, lat2, lon2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(h))


def activity(local_hour: float) -> float:
    """How busy the street is, as a multiplier on the fill rate: 0.3 at night, 1.5 midday."""
    return 0.3 + 1.2 * max(0.0, math.sin(math.pi * (local_hour - 5.0) / 17.0))


def local_midnight(ts: datetime) -> datetime:
    """The UTC instant of the Vietnamese midnight that starts ``ts``'s local day."""
    local = ts.astimezone(UTC) + VIETNAM_UTC_OFFSET
    return local.replace(hour=0, minute=0, second=0, microsecond=0) - VIETNAM_UTC_OFFSET


class BinModel:
    kind = "waste_bin"

    def __init__(
        self,
        sensor: SimulatedSensor,
        seed: int,
        fill_rate_per_h: float,
        collections: Sequence[float] = (20.0,),
    ) -> None:
        """``collections``: local hours (may exceed 24 for after midnight) of daily emptying."""
        self.sensor = sensor
        self._key = (seed, "waste_bin", sensor.index)
        self.fill_rate_per_h = fill_rate_per_h
        self.collections = tuple(sorted(collections)) or (20.0,)

    def last_collection(self, ts: datetime) -> datetime:
        midnight = local_midnight(ts)
        best: datetime | None = None
        for day in (-2, -1, 0):
            for hour in self.collections:
                when = midnight + timedelta(days=day, hours=hour)
                if when <= ts and (best is None or when > best):
                    best = when
        assert best is not None
        return best

    def fill_at(self, ts: datetime, conditions: Conditions = CALM) -> float:
        """Fill level in %, uncapped (above 100 means overflowing)."""
        since = self.last_collection(ts)
        residual = 3.0 * noise.uniform(*self._key, epoch_s(since), "residual")
        fill = residual
        t = since
        while t < ts:
            step_end = min(ts, t + _STEP)
            hours = (step_end - t).total_seconds() / 3600.0
            fill += self.fill_rate_per_h * activity(local_hour(t)) * hours
            t = step_end
        for start, end, rate in conditions.fill_surges:
            overlap = (min(end, ts) - max(start, since)).total_seconds()
            if overlap > 0:
                fill += rate * overlap / 3600.0
        return fill

    def values_at(self, ts: datetime, conditions: Conditions = CALM) -> dict[str, float]:
        second = epoch_s(ts)
        fill = self.fill_at(ts, conditions) + 0.8 * noise.normal(*self._key, second, 0)
        ambient = 28.0 + 5.0 * max(0.0, math.sin(math.pi * (local_hour(ts) - 6.0) / 12.0))
        temperature = ambient + 260.0 * conditions.fire + 0.4 * noise.normal(*self._key, second, 1)
        day = second / 86400.0
        battery = 96.0 - (day + 60.0 * noise.uniform(*self._key, "battery")) % 60.0
        return {
            "fill": round(min(100.0, max(0.0, fill)), 1),
            "temperature": round(temperature, 1),
            "tilt": round(abs(1.5 * noise.normal(*self._key, second, 2)), 1),
            "battery": round(battery, 1),
        }


@dataclass(frozen=True)
class Stop:
    lat: float
    lon: float
    bin_model: BinModel | None = None  # the bin emptied here, if it is a simulated one


@dataclass(frozen=True)
class Leg:
    start_s: float  # seconds after the shift start
    end_s: float
    origin: tuple[float, float]
    destination: tuple[float, float]
    speed_kmh: float  # 0 for a stop
    stop_index: int | None = None  # the stop being served (dwell legs only)


def plan_round(
    depot: tuple[float, float], stops: Sequence[Stop], speed_kmh: float = TRUCK_SPEED_KMH
) -> list[Leg]:
    """Depot -> stops (nearest first) -> depot, as drive and dwell legs with their times."""
    remaining = list(range(len(stops)))
    order: list[int] = []
    here = depot
    while remaining:
        nearest = min(remaining, key=lambda i: distance_m(here, (stops[i].lat, stops[i].lon)))
        remaining.remove(nearest)
        order.append(nearest)
        here = (stops[nearest].lat, stops[nearest].lon)
    legs: list[Leg] = []
    clock = 0.0
    here = depot
    for index in [*order, None]:
        there = depot if index is None else (stops[index].lat, stops[index].lon)
        drive_s = max(30.0, distance_m(here, there) / (speed_kmh / 3.6))
        legs.append(Leg(clock, clock + drive_s, here, there, speed_kmh))
        clock += drive_s
        if index is not None:
            legs.append(Leg(clock, clock + STOP_DWELL_S, there, there, 0.0, index))
            clock += STOP_DWELL_S
        here = there
    return legs


class TruckModel:
    kind = "waste_truck"

    def __init__(
        self,
        sensor: SimulatedSensor,
        seed: int,
        stops: Sequence[Stop],
        shifts: Sequence[float] = DEFAULT_SHIFTS,
        depot: tuple[float, float] | None = None,
    ) -> None:
        self.sensor = sensor
        self._key = (seed, "waste_truck", sensor.index)
        self.depot = depot or (sensor.lat, sensor.lon)
        self.stops = tuple(stops)
        self.shifts = tuple(sorted(shifts))
        self.legs = plan_round(self.depot, self.stops)
        self.round_s = self.legs[-1].end_s if self.legs else 0.0

    def arrival_hours(self) -> dict[int, list[float]]:
        """For each stop, the local hours at which this truck empties it."""
        result: dict[int, list[float]] = {}
        for leg in self.legs:
            if leg.stop_index is not None:
                for shift in self.shifts:
                    result.setdefault(leg.stop_index, []).append(shift + leg.start_s / 3600.0)
        return result

    def _shift_start(self, ts: datetime) -> datetime | None:
        midnight = local_midnight(ts)
        for day in (0, -1):
            for hour in reversed(self.shifts):
                start = midnight + timedelta(days=day, hours=hour)
                if start <= ts < start + timedelta(seconds=self.round_s):
                    return start
        return None

    def _pickup_kg(self, stop_index: int, at: datetime, shift: datetime) -> float:
        stop = self.stops[stop_index]
        if stop.bin_model is None:
            return noise.between(30.0, 90.0, *self._key, epoch_s(shift), stop_index)
        fill = min(100.0, stop.bin_model.fill_at(at - timedelta(seconds=1)))
        return BIN_CAPACITY_KG * max(0.0, fill) / 100.0

    def values_at(self, ts: datetime, conditions: Conditions = CALM) -> dict[str, float]:
        del conditions
        shift = self._shift_start(ts)
        if shift is None:
            return {"lat": self.depot[0], "lon": self.depot[1], "speed": 0.0, "load": 0.0}
        elapsed = (ts - shift).total_seconds()
        load = 0.0
        position, speed = self.depot, 0.0
        for leg in self.legs:
            if leg.stop_index is not None and leg.start_s <= elapsed:
                arrival = shift + timedelta(seconds=leg.start_s)
                load += self._pickup_kg(leg.stop_index, arrival, shift)
            if leg.start_s <= elapsed < leg.end_s:
                share = (elapsed - leg.start_s) / (leg.end_s - leg.start_s)
                position = (
                    leg.origin[0] + share * (leg.destination[0] - leg.origin[0]),
                    leg.origin[1] + share * (leg.destination[1] - leg.origin[1]),
                )
                jitter = 1.0 + 0.15 * noise.normal(*self._key, epoch_s(ts))
                speed = leg.speed_kmh * min(1.6, max(0.4, jitter))
        return {
            "lat": round(position[0], 6),
            "lon": round(position[1], 6),
            "speed": round(speed, 1),
            "load": round(load, 1),
        }
