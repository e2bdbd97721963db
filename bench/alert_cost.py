"""CPU per reading of the processor's alert path: ``observations`` then ``engine.evaluate_batch``.

    python -m bench.alert_cost [--sensors 500] [--readings 100000] [--batch 1000]

Sensors of every kind of the catalogue, round robin, each sending gateway messages of
``--per-message`` readings; the batches go through the two steps with the shipped rules (the
per-sensor ones, as the processor's batch plan uses them), the engine state carried from batch
to batch.  Values sit on the safe side of every rule's limit; now and then a sensor starts an
episode in which one watched value crosses its limit, and ends it a few messages later.  The
derived indices the rules read (VN_AQI, WQI) are drawn the same way, and the air readings feed
the hourly windows as the derive step does: both outside the measured time, which is the CPU
time (``time.process_time``) of the two steps alone.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import random
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from bench.support import say
from urbanpulse.alerts import engine
from urbanpulse.alerts.rules import Rule, RuleSet, load_rules
from urbanpulse.core.catalogue import KINDS
from urbanpulse.core.envelope import Reading
from urbanpulse.indices.vn_aqi import POLLUTANTS
from urbanpulse.storage.registry import RegisteredSensor
from urbanpulse.storage.writer import ReadingKey
from urbanpulse.stream.alerting import observations
from urbanpulse.stream.windows import HourlyMeans

RULES = Path(__file__).resolve().parent.parent / "rules" / "default.yaml"
T0 = datetime(2026, 11, 22, tzinfo=UTC)
AREAS = 20  # wards the sensors are spread over


@dataclass
class Sensor:
    sensor_id: str
    kind: str
    watched: list[Rule]  # the threshold rules of its kind
    ts: datetime
    crossing: Rule | None = None  # the rule whose limit the current episode crosses


def drawn(rule: Rule, rng: random.Random, cross: bool) -> float:
    """A value on the safe side of ``rule``'s limit, or past it."""
    op, limit = rule.comparator
    if op in ("above", "at_least"):
        return limit * (rng.uniform(1.1, 1.6) if cross else rng.uniform(0.3, 0.8))
    if op in ("below", "at_most"):
        return limit * (rng.uniform(0.3, 0.9) if cross else rng.uniform(1.5, 3.0))
    return limit + 1 if cross else limit


def sample(
    sensor: Sensor, rng: random.Random, known_metrics: set[str]
) -> tuple[dict[str, float], dict[str, Any]]:
    """One reading's values and derived indices."""
    kind = KINDS[sensor.kind]
    values = {
        m.name: m.minimum + rng.uniform(0.05, 0.3) * (m.maximum - m.minimum) for m in kind.metrics
    }
    derived: dict[str, Any] = {"vn_aqi_pollutant": "pm25"} if sensor.kind == "air" else {}
    for rule in sensor.watched:
        assert rule.metric is not None
        target = values if rule.metric in known_metrics else derived
        target[rule.metric] = drawn(rule, rng, rule is sensor.crossing)
    return values, derived


def generate(
    rules: RuleSet, sensors: int, readings: int, per_message: int, interval: timedelta, seed: int
) -> tuple[list[Reading], dict[ReadingKey, dict[str, Any]], dict[str, RegisteredSensor], int]:
    """Readings in arrival order (gateway messages of ``per_message``), their derived values,
    the registry, and how many readings carry a value past a limit."""
    rng = random.Random(seed)
    kinds = list(KINDS)
    fleet = []
    for i in range(sensors):
        kind = kinds[i % len(kinds)]
        fleet.append(Sensor(f"{kind}-{i:04d}", kind, rules.for_kind(kind), T0))
    known = {
        s.sensor_id: RegisteredSensor(s.kind, "active", f"ward-{i % AREAS:02d}")
        for i, s in enumerate(fleet)
    }
    out: list[Reading] = []
    derived: dict[ReadingKey, dict[str, Any]] = {}
    crossing = 0
    while len(out) < readings:
        for sensor in rng.sample(fleet, len(fleet)):
            if sensor.crossing is None and sensor.watched and rng.random() < 0.04:
                sensor.crossing = rng.choice(sensor.watched)
            elif sensor.crossing is not None and rng.random() < 0.5:
                sensor.crossing = None
            metrics = {m.name for m in KINDS[sensor.kind].metrics}
            for _ in range(per_message):
                sensor.ts += interval
                values, extra = sample(sensor, rng, metrics)
                received = sensor.ts + timedelta(seconds=2)
                out.append(Reading(sensor.sensor_id, sensor.kind, sensor.ts, values, received, "b"))
                if extra:
                    derived[(sensor.sensor_id, sensor.ts)] = extra
                crossing += sensor.crossing is not None
    return out[:readings], derived, known, crossing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sensors", type=int, default=500, help="sensors (500)")
    parser.add_argument("--readings", type=int, default=100_000, help="readings in all (100000)")
    parser.add_argument("--batch", type=int, default=1000, help="readings per batch (1000)")
    parser.add_argument("--per-message", type=int, default=20, help="readings per message (20)")
    parser.add_argument("--interval", type=float, default=60.0, help="s between readings (60)")
    parser.add_argument("--rules", type=Path, default=RULES, help="rule file (rules/default.yaml)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (1)")
    args = parser.parse_args(argv)

    rules = load_rules(args.rules).per_sensor()
    interval = timedelta(seconds=args.interval)
    readings, derived, known, crossing = generate(
        rules, args.sensors, args.readings, args.per_message, interval, args.seed
    )
    # The input stands for batches that come and go: the collector need not scan it (it would
    # weigh on whichever step allocates when a full collection falls due).
    gc.freeze()
    windows = HourlyMeans(POLLUTANTS, args.sensors)
    state = engine.EngineState()
    spent = {"observations": 0, "evaluate_batch": 0}
    events: Counter[str] = Counter()
    digest = hashlib.sha256()
    for start in range(0, len(readings), args.batch):
        batch = readings[start : start + args.batch]
        for r in sorted(batch, key=lambda r: r.ts):  # what the derive step does, unmeasured
            if r.kind == "air":
                windows.add(r.sensor_id, r.ts, r.values)
        keys = ((r.sensor_id, r.ts) for r in batch)
        indices = {key: derived[key] for key in keys if key in derived}  # the batch's, as derived
        now = max(r.received_at for r in batch)
        t0 = time.process_time_ns()
        observed = observations(batch, indices, known, windows, rules)
        t1 = time.process_time_ns()
        state, raised = engine.evaluate_batch(state, observed, rules, now)
        t2 = time.process_time_ns()
        spent["observations"] += t1 - t0
        spent["evaluate_batch"] += t2 - t1
        events.update(e.type.value for e in raised)
        for e in raised:  # what the events say, to compare two versions of the code
            digest.update(orjson.dumps([e.type, e.alert.to_dict()], option=orjson.OPT_UTC_Z))

    n = len(readings)
    say(
        f"alert path: {n} readings of {args.sensors} sensors ({len(KINDS)} kinds), batches of "
        f"{args.batch}, {args.per_message} per message; {100 * crossing / n:.1f} % past a limit"
    )
    for step, ns in spent.items():
        say(f"  {step:<16} {ns / n / 1000:7.2f} µs CPU per reading")
    say(f"  {'total':<16} {sum(spent.values()) / n / 1000:7.2f} µs CPU per reading")
    say(f"  events: {dict(sorted(events.items()))}; tracks kept: {len(state.tracks)}")
    say(f"  events digest: {digest.hexdigest()[:16]} (equal digests: the same events)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
