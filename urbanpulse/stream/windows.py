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

from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

HOUR = timedelta(hours=1)
# NowCast looks back 12 hours; a day is kept so that late readings still find their context.
HOURS_KEPT = 24


def hour_of(ts: datetime) -> datetime:
    return ts.replace(minute=0, second=0, microsecond=0)


@dataclass
class RunningMean:
    total: float = 0.0
    count: int = 0

    def add(self, value: float, count: int = 1) -> None:
        self.total += value
        self.count += count

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None


@dataclass(frozen=True)
class HourlySeed:
    """One stored hour of one metric, as the database aggregates it."""

    sensor_id: str
    hour: datetime
    metric: str
    total: float
    count: int


Hours = dict[datetime, dict[str, RunningMean]]


def _new_hours() -> Hours:
    return defaultdict(lambda: defaultdict(RunningMean))


class HourlyMeans:
    def __init__(self, metrics: Sequence[str], max_sensors: int = 50_000) -> None:
        self._metrics = tuple(metrics)
        self._max_sensors = max_sensors
        # sensor -> hour -> metric -> running mean, least recently used sensor first
        self._hours: OrderedDict[str, Hours] = OrderedDict()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._hours)

    def knows(self, sensor_id: str) -> bool:
        return sensor_id in self._hours

    def seed(self, sensor_ids: Iterable[str], rows: Iterable[HourlySeed]) -> None:
        """Start tracking ``sensor_ids`` from what the database already holds."""
        seeded = {sensor_id: _new_hours() for sensor_id in sensor_ids}
        for row in rows:
            seeded[row.sensor_id][row.hour][row.metric].add(row.total, row.count)
        for sensor_id, hours in seeded.items():
            self._keep(sensor_id, hours)

    def add(self, sensor_id: str, ts: datetime, values: dict[str, float]) -> None:
        hours = self._hours.get(sensor_id)
        if hours is None:
            hours = self._keep(sensor_id, _new_hours())
        else:
            self._hours.move_to_end(sensor_id)
        bucket = hours[hour_of(ts)]
        for metric in self._metrics:
            if metric in values:
                bucket[metric].add(values[metric])
        self._prune(hours)

    def series(
        self, sensor_id: str, ts: datetime, length: int = 12
    ) -> dict[str, list[float | None]]:
        """Each metric's hourly means, newest first, for the hour of ``ts`` and the ones before."""
        hours = self._hours.get(sensor_id, {})
        start = hour_of(ts)
        buckets = [hours.get(start - i * HOUR, {}) for i in range(length)]
        return {
            metric: [b[metric].mean if metric in b else None for b in buckets]
            for metric in self._metrics
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
