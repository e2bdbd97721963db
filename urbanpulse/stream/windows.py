"""Per-sensor hourly means on event time: the window behind the hourly VN_AQI.

The NowCast needs each pollutant's last 12 hourly means.  The processor keeps, per sensor, the
running sum and count of every recent event-time hour.  It is a cache of what the database
holds: it is seeded from the stored readings when a sensor is first seen (so a restart loses
nothing) and fed only readings that were not stored before (so a replay counts nothing twice).

As readings arrive only the current hour's means change: each air reading's hourly VN_AQI
comes from them and the NowCasts' earlier hours, prepared once per sensor and hour
(:meth:`HourlyMeans.hourly_aqi`) and dropped when another hour changes.

Only readings of registered (active or pending), non-retired sensors reach it, and it holds at
most ``max_sensors`` sensors: beyond, the least recently used one is evicted (counted in
``evicted``) and seeded again from the database when it reports next.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from urbanpulse.indices.bands import AqiResult
from urbanpulse.indices.vn_aqi import NOWCAST_HOURS, PM, NowCastPast, hourly_aqi, hourly_aqi_of

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
# doubles per hour keeps a sensor's day in about 7 KB (an object per metric took 25 KB); with
# its NowCasts' earlier hours prepared, about 8 KB (``python -m bench.derive_cost``).
Hours = dict[datetime, "array[float]"]  # array is not subscriptable at run time

# Hour datetimes shared by every sensor's buckets (each would otherwise hold its own 48-byte
# copy per hour); beyond this many the table starts over, which only loses some sharing.
_SHARED_HOURS = 1024
# Sequences of hours back from one (by hour and length), shared likewise.
_HOURS_BACK_KEPT = 64


class _Sensor:
    """One sensor's hours, and what the readings of the hour last added to reuse: that hour's
    bucket and the NowCasts' earlier hours (prepared at the first index asked in the hour).
    Any change to another hour, or a pruned one, leaves the hour: all is looked up afresh."""

    __slots__ = ("bucket", "end", "hour", "hours", "past")
    hours: Hours
    hour: datetime | None  # UTC, the bucket's hour; [hour, end) is where the reuse holds
    end: datetime | None
    bucket: array[float] | None
    past: dict[str, NowCastPast] | None

    def __init__(self, hours: Hours) -> None:
        self.hours = hours
        self.leave_hour()

    def hour_holding(self, ts: datetime) -> datetime | None:
        """The hour last added to if ``ts`` lies in it (readings are in UTC: another zone's
        hour may start elsewhere, and is looked up the long way)."""
        hour, end = self.hour, self.end
        if hour is not None and end is not None and ts.tzinfo is UTC and hour <= ts < end:
            return hour
        return None

    def enter_hour(self, hour: datetime, end: datetime, bucket: array[float]) -> None:
        self.hour, self.end, self.bucket, self.past = hour, end, bucket, None

    def leave_hour(self) -> None:
        self.hour = self.end = self.bucket = self.past = None


class HourlyMeans:
    def __init__(self, metrics: Sequence[str], max_sensors: int = 50_000) -> None:
        self._metrics = tuple(metrics)
        self._index = {metric: i for i, metric in enumerate(self._metrics)}
        self._max_sensors = max_sensors
        # sensor -> its hours, least recently used sensor first
        self._sensors: OrderedDict[str, _Sensor] = OrderedDict()
        self._shared: dict[datetime, datetime] = {}  # see _SHARED_HOURS
        self._hours_back: dict[tuple[datetime, int], tuple[datetime, ...]] = {}
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._sensors)

    def knows(self, sensor_id: str) -> bool:
        return sensor_id in self._sensors

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
            self._keep(sensor_id, _Sensor(hours))

    def add(self, sensor_id: str, ts: datetime, values: dict[str, float]) -> None:
        sensor = self._sensors.get(sensor_id)
        if sensor is None:
            sensor = self._keep(sensor_id, _Sensor({}))
        else:
            self._sensors.move_to_end(sensor_id)
        bucket = sensor.bucket
        if bucket is None or sensor.hour_holding(ts) is None:
            hour = self._share(hour_of(ts))
            bucket = self._bucket(sensor.hours, hour)
            if ts.tzinfo is UTC:
                sensor.enter_hour(hour, self._share(hour + HOUR), bucket)
            else:
                sensor.leave_hour()
        for i, metric in enumerate(self._metrics):
            if metric in values:
                bucket[i] += values[metric]
                bucket[len(self._metrics) + i] += 1
        if self._prune(sensor.hours):
            sensor.leave_hour()

    def series(
        self, sensor_id: str, ts: datetime, length: int = 12
    ) -> dict[str, list[float | None]]:
        """Each metric's hourly means, newest first, for the hour of ``ts`` and the ones before."""
        sensor = self._sensors.get(sensor_id)
        hours = sensor.hours if sensor is not None else {}
        buckets = [hours.get(h) for h in self._hours_before(sensor, ts, length)]
        n = len(self._metrics)
        return {
            metric: [b[i] / b[n + i] if b is not None and b[n + i] else None for b in buckets]
            for i, metric in enumerate(self._metrics)
        }

    def hourly_aqi(self, sensor_id: str, ts: datetime) -> AqiResult | None:
        """The hourly VN_AQI of the metrics' :meth:`series` at ``ts``.  In the hour last added
        to, from that hour's means alone and the NowCasts' earlier hours, prepared once."""
        sensor = self._sensors.get(sensor_id)
        if sensor is None or sensor.bucket is None or sensor.hour_holding(ts) is None:
            return hourly_aqi(self.series(sensor_id, ts, NOWCAST_HOURS))
        if sensor.past is None:
            series = self.series(sensor_id, ts, NOWCAST_HOURS)
            sensor.past = {m: NowCastPast(s[1:]) for m, s in series.items() if m in PM}
        b, n = sensor.bucket, len(self._metrics)
        newest = {m: b[i] / b[n + i] if b[n + i] else None for i, m in enumerate(self._metrics)}
        return hourly_aqi_of(newest, sensor.past)

    def mean_over(
        self, sensor_id: str, ts: datetime, hours: int, metric: str
    ) -> tuple[float, int] | None:
        """Mean of ``metric``'s hourly means over ``hours`` hours ending with the hour of ``ts``,
        and how many of those hours have data (QCVN 05:2023 limits are on such means)."""
        sensor = self._sensors.get(sensor_id)
        i = self._index.get(metric)
        if sensor is None or i is None:
            return None
        n = len(self._metrics)
        buckets = map(sensor.hours.get, self._hours_before(sensor, ts, hours))
        means = [b[i] / b[n + i] for b in buckets if b is not None and b[n + i]]
        return (sum(means) / len(means), len(means)) if means else None

    def forget_all(self) -> None:
        """Drop the cache; it is rebuilt from the database as sensors come back."""
        self._sensors.clear()

    def _hours_before(
        self, sensor: _Sensor | None, ts: datetime, length: int
    ) -> tuple[datetime, ...]:
        """The hour of ``ts`` and the ``length - 1`` before it, newest first: the same for
        every sensor reporting in that hour, so kept."""
        start = sensor.hour_holding(ts) if sensor is not None else None
        if start is None:
            start = hour_of(ts)
        hours = self._hours_back.get((start, length))
        if hours is None:
            if len(self._hours_back) >= _HOURS_BACK_KEPT:
                self._hours_back.clear()
            hours = self._hours_back[start, length] = tuple(
                self._share(start - i * HOUR) for i in range(length)
            )
        return hours

    def _share(self, hour: datetime) -> datetime:
        shared = self._shared.get(hour)
        if shared is None:
            if len(self._shared) >= _SHARED_HOURS:
                self._shared.clear()
            shared = self._shared[hour] = hour
        return shared

    def _bucket(self, hours: Hours, hour: datetime) -> array[float]:
        bucket = hours.get(hour)
        if bucket is None:
            bucket = hours[self._share(hour)] = array("d", bytes(16 * len(self._metrics)))
        return bucket

    def _keep(self, sensor_id: str, sensor: _Sensor) -> _Sensor:
        self._sensors[sensor_id] = sensor
        self._sensors.move_to_end(sensor_id)
        while len(self._sensors) > self._max_sensors:
            self._sensors.popitem(last=False)
            self.evicted += 1
        return sensor

    @staticmethod
    def _prune(hours: Hours) -> bool:
        """Keep a day of hours before the newest; whether any went."""
        if len(hours) <= HOURS_KEPT:
            return False
        newest = max(hours)
        for hour in [h for h in hours if h <= newest - HOURS_KEPT * HOUR]:
            del hours[hour]
        return True
