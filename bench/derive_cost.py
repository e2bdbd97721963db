"""CPU per air reading of the processor's per-reading derivation, in-process, no servers.

Feeds a simulated day of air readings (every sensor once a minute, all six pollutants, a share
of them arriving late within the hour before) through the real ``HourlyMeans`` and
``derive_indices``, in batches as the processor derives them, and prints the µs of CPU per
reading of:

- the hourly VN_AQI derivation (``derive_indices``, which feeds the hourly window);
- the alert rules' window means (``HourlyMeans.mean_over``: PM2.5 and PM10 over 24 hours,
  what the shipped rules read for every air reading);
- the home partition of each reading (``partition_for``, called by ``batch.decode``).

Then the memory of the hourly windows per sensor after a day (tracemalloc).

    python -m bench.derive_cost [--sensors 500] [--minutes 1440]
"""

from __future__ import annotations

import argparse
import math
import random
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from bench.support import say
from urbanpulse.core.envelope import Reading
from urbanpulse.indices.vn_aqi import POLLUTANTS
from urbanpulse.indices.vn_wqi import Combination
from urbanpulse.stream.derive import derive_indices
from urbanpulse.stream.partition_state import partition_for
from urbanpulse.stream.windows import HourlyMeans

T0 = datetime(2026, 11, 22, tzinfo=UTC)
LEVELS = {"pm25": 35.0, "pm10": 60.0, "o3": 50.0, "co": 900.0, "so2": 10.0, "no2": 40.0}
PARTITIONS = 12
MEANS_READ = (("pm25", 24), ("pm10", 24))  # the shipped rules' windows on air readings


def readings(
    sensors: int, minutes: int, late_share: float, step: int = 1
) -> Iterator[list[Reading]]:
    """Each simulated minute's readings (one per sensor every ``step`` minutes), a diurnal
    level with noise; ``late_share`` of them are held back and arrive up to an hour late."""
    rng = random.Random(10)
    held: list[tuple[int, Reading]] = []
    for minute in range(0, minutes, step):
        ts = T0 + timedelta(minutes=minute)
        day = 1.0 + 0.5 * math.sin(2 * math.pi * minute / 1440)
        batch = [r for due, r in held if due <= minute]
        held = [(due, r) for due, r in held if due > minute]
        for i in range(sensors):
            values = {p: level * day * rng.uniform(0.7, 1.3) for p, level in LEVELS.items()}
            reading = Reading(f"air-{i:05d}", "air", ts, values, ts, "bench")
            if rng.random() < late_share:
                held.append((minute + rng.randint(1, 60), reading))
            else:
                batch.append(reading)
        yield batch


def run(sensors: int, minutes: int, late_share: float, batch_size: int) -> None:
    windows = HourlyMeans(POLLUTANTS, max_sensors=sensors)
    derive_s = means_s = partition_s = 0.0
    count = 0
    for minute in readings(sensors, minutes, late_share):
        for start in range(0, len(minute), batch_size):
            batch = minute[start : start + batch_size]
            began = time.process_time()
            for r in batch:
                partition_for(r.sensor_id, PARTITIONS)
            derived_at = time.process_time()
            derive_indices(batch, windows, Combination.WEIGHTED_CUBE_ROOT)
            means_at = time.process_time()
            for r in batch:
                for metric, hours in MEANS_READ:
                    windows.mean_over(r.sensor_id, r.ts, hours, metric)
            ended = time.process_time()
            partition_s += derived_at - began
            derive_s += means_at - derived_at
            means_s += ended - means_at
            count += len(batch)
    say(f"{count} air readings, {sensors} sensors, {minutes} minutes, {late_share:.0%} late")
    for label, seconds in [
        ("derive_indices (window + VN_AQI)", derive_s),
        ("mean_over PM2.5, PM10 24 h", means_s),
        ("partition_for (batch.decode)", partition_s),
        ("total", derive_s + means_s + partition_s),
    ]:
        say(f"{label:<34} {seconds * 1e6 / count:8.2f} µs CPU per reading")


def memory(sensors: int, late_share: float) -> None:
    """The windows' memory per sensor after a day of readings every 5 minutes."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    windows = HourlyMeans(POLLUTANTS, max_sensors=sensors)
    for minute in readings(sensors, 1440, late_share, step=5):
        derive_indices(minute, windows, Combination.WEIGHTED_CUBE_ROOT)
        del minute
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    say(f"{'hourly windows after a day':<34} {used / sensors:8.0f} B per sensor ({len(windows)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=500, help="air sensors (default 500)")
    parser.add_argument(
        "--minutes", type=int, default=1440, help="simulated minutes, one reading each (1440)"
    )
    parser.add_argument(
        "--late", type=float, default=0.01, help="share of readings up to an hour late (0.01)"
    )
    parser.add_argument(
        "--batch", type=int, default=500, help="readings per derive_indices call (500)"
    )
    parser.add_argument(
        "--memory-sensors", type=int, default=200, help="sensors in the memory pass (200)"
    )
    args = parser.parse_args()
    run(args.sensors, args.minutes, args.late, args.batch)
    memory(args.memory_sensors, args.late)


if __name__ == "__main__":
    main()
