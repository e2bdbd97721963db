"""Memory of the processor's per-sensor state: hourly windows and alert engine, 10,000 sensors.

Builds the state the way the processor does (a day of hourly readings per air sensor through
``HourlyMeans``; one batch of observations through the alert engine with the shipped rules) and
measures it with tracemalloc.  Prints the figure per sensor and at the configured caps.

    python -m bench.state_memory [--sensors 10000]
"""

from __future__ import annotations

import argparse
import tracemalloc
from datetime import UTC, datetime, timedelta

from bench.support import say
from urbanpulse.alerts import engine
from urbanpulse.alerts.model import Observation
from urbanpulse.alerts.rules import load_rules
from urbanpulse.core.settings import Settings
from urbanpulse.indices.vn_aqi import POLLUTANTS
from urbanpulse.stream.windows import HOURS_KEPT, HourlyMeans

T0 = datetime(2026, 11, 22, tzinfo=UTC)
AIR = {"pm25": 35.0, "pm10": 60.0, "no2": 40.0, "o3": 50.0, "so2": 10.0, "co": 900.0}


def build_windows(sensors: int, max_sensors: int) -> HourlyMeans:
    hours = HourlyMeans(POLLUTANTS, max_sensors)
    for h in range(HOURS_KEPT):
        ts = T0 + timedelta(hours=h)
        for i in range(sensors):
            hours.add(f"air-{i:05d}", ts, AIR)
    return hours


def build_engine(settings: Settings, sensors: int) -> engine.EngineState:
    rules = load_rules(settings.alerts.rules_path)
    now = T0 + timedelta(hours=HOURS_KEPT)
    values = {**AIR, "temperature": 30.0, "humidity": 70.0, "vn_aqi": 95.0}
    batch = [
        Observation(f"air-{i:05d}", "air", now, now, values, f"ward-{i % 168}")
        for i in range(sensors)
    ]
    state, _ = engine.evaluate_batch(engine.EngineState(), batch, rules, now)
    return state


def measure(label: str, sensors: int, build: object) -> float:
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = build() if callable(build) else None
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del kept
    say(f"{label:<34} {used / 2**20:8.1f} MiB  {used / sensors:8.0f} B/sensor")
    return used / sensors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=10_000)
    args = parser.parse_args()
    settings = Settings()
    n = args.sensors
    say(f"per-sensor state of the stream processor, {n} air sensors (tracemalloc)")
    window = measure(
        f"hourly windows ({HOURS_KEPT} h x {len(POLLUTANTS)})",
        n,
        lambda: build_windows(n, max(n, settings.stream.max_window_sensors)),
    )
    alerts = measure("alert engine (shipped rules)", n, lambda: build_engine(settings, n))
    say(f"{'total':<34} {(window + alerts) * n / 2**20:8.1f} MiB")
    cap_w, cap_a = settings.stream.max_window_sensors, settings.alerts.max_tracked_sensors
    say(
        f"at the caps ({cap_w} windows, {cap_a} tracked sensors): "
        f"about {(window * cap_w + alerts * cap_a) / 2**20:.0f} MiB"
    )


if __name__ == "__main__":
    main()
