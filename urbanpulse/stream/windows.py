"""Per-sensor hourly means on event time: the window behind the hourly VN_AQI.

The NowCast needs each pollutant's last 12 hourly means.  The processor keeps, per sensor, the
running sum and count of every recent event-time hour.  It is a cache of what the database
holds: it is seeded from the stored readings when a sensor is first seen (so a restart loses
nothing) and fed only readings that were not stored before (so a replay counts nothing twice).

Only readings of registered (active or pending), non-retired sensors reach it, and it holds at
most ``max_sensors`` sensors: beyond, the least recently used one is evicted (counted in
``evicted``) and seeded again from the database when it reports next.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

HOUR = timedelta(hours=1)
# NowCast looks back 12 hours; a day is kept so that late readings still find their context.
HOURS_KEPT = 24


def hour_of(ts: datetime) -> datetime:
    return ts.replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class HourlySeed:
    """One stored hour of one metric, as the database aggregates it."""

    sensor_id: str
    hour: datetime
    metric: str
    total: float
    count: int


# sensor's hours -> [total of each metric..., count of each metric...]: one flat array of
# doubles per hour keeps a sensor's day in about 7 KB (an object per metric took 25 KB).
Hours = dict[datetime, "array[float]"]  # array is not subscriptable at run time


class HourlyMeans:
    def __init__(self, metrics: Sequence[str], max_sensors: int = 50_000) -> None:
        self._metrics = tuple(metrics)
        self._index = {metric: i for i, metric in enumerate(self._metrics)}
        self._max_sensors = max_sensors
        # sensor -> its hours, least recently used sensor first
        self._hours: OrderedDict[str, Hours] = OrderedDict()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._hours)

    def knows(self, sensor_id: str) -> bool:
        return sensor_id in self._hours

    def seed(self, sensor_ids: Iterable[str], rows: Iterable[HourlySeed]) -> None:
        """Start tracking ``sensor_ids`` from what the database already holds."""
        seeded: dict[str, Hours] = {sensor_id: {} for sensor_id in sensor_ids}
        for row in rows:
            i = self._index.get(row.metric)
            if i is not None:
                bucket = self._bucket(seeded[row.sensor_id], row.hour)
                bucket[i] += row.total
                bucket[len(self._metrics) + i] += row.count
        for sensor_id, hours in seeded.items():
            self._keep(sensor_id, hours)

    def add(self, sensor_id: str, ts: datetime, values: dict[str, float]) -> None:
        hours = self._hours.get(sensor_id)
        if hours is None:
            hours = self._keep(sensor_id, {})
        else:
            self._hours.move_to_end(sensor_id)
        bucket = self._bucket(hours, hour_of(ts))
        for i, metric in enumerate(self._metrics):
            if metric in values:
                bucket[i] += values[metric]
                bucket[len(self._metrics) + i] += 1
        self._prune(hours)

    def series(
        self, sensor_id: str, ts: datetime, length: int = 12
    ) -> dict[str, list[float | None]]:
        """Each metric's hourly means, newest first, for the hour of ``ts`` and the ones before."""
        hours = self._hours.get(sensor_id, {})
        start = hour_of(ts)
        buckets = [hours.get(start - i * HOUR) for i in range(length)]
        n = len(self._metrics)
        return {
            metric: [b[i] / b[n + i] if b is not None and b[n + i] else None for b in buckets]
            for i, metric in enumerate(self._metrics)
        }

    def mean_over(
        self, sensor_id: str, ts: datetime, hours: int, metric: str
    ) -> tuple[float, int] | None:
        """Mean of ``metric``'s hourly means over ``hours`` hours ending with the hour of ``ts``,
        and how many of those hours have data (QCVN 05:2023 limits are on such means)."""
        means = [m for m in self.series(sensor_id, ts, hours).get(metric, []) if m is not None]
        return (sum(means) / len(means), len(means)) if means else None

    def forget_all(self) -> None:
        """Drop the cache; it is rebuilt from the database as sensors come back."""
        self._hours.clear()

    def _bucket(self, hours: Hours, hour: datetime) -> array[float]:
        bucket = hours.get(hour)
        if bucket is None:
            bucket = hours[hour] = array("d", bytes(16 * len(self._metrics)))
        return bucket

    def _keep(self, sensor_id: str, hours: Hours) -> Hours:
        self._hours[sensor_id] = hours
        self._hours.move_to_end(sensor_id)
        while len(self._hours) > self._max_sensors:
            self._hours.popitem(last=False)
            self.evicted += 1
        return hours

    @staticmethod
    def _prune(hours: Hours) -> None:
        if len(hours) > HOURS_KEPT:
            newest = max(hours)
            for hour in [h for h in hours if h <= newest - HOURS_KEPT * HOUR]:
                del hours[hour]
