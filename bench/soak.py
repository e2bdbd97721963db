"""Soak: simulated load for minutes while every part of the platform is killed and restarted.

    python -m bench.soak [--duration 600] [--rate 200] [--sensors 40] [--pause 20] [--seed 1]

On a private local stack (free ports, a temporary directory, removed at the end), the bridge and
the processor run as real ``urbanpulse`` processes; a simulated air fleet publishes readings at
``--rate`` over MQTT QoS 1, with pollution episodes that open and resolve alerts.  Every
``--pause`` seconds (on average) one component is killed with SIGKILL, kept down a few seconds
and restarted: bridge, processor, Kafka, PostgreSQL and Mosquitto, in a shuffled round so that
each is hit in turn (and each at least once, however short the run).  Mosquitto is stopped
cleanly every other time.

At the end:
- stored set == accepted set (accepted: PUBACK'd by the broker, from the gateway's own
  on_publish callbacks), except readings a SIGKILLed Mosquitto had acked after its last save
  (README, Delivery contract): those are counted, checked against the documented bound, and
  nothing outside those windows may be missing;
- every alert event on Kafka exactly once (by event id if the record has one, else by alert id,
  event type and time) and matching the alerts stored;
- recovery time per component (kill until a reading published after the restart is stored),
  peak RSS per process, maximum processor lag.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import orjson
from aiokafka.errors import KafkaError

from bench.publisher import AckedPublisher, Key
from bench.support import say
from tests.conftest import settings_for_stack, stack_data_dir
from tests.e2e.conftest import ServiceProcess, isolated, read_topic
from urbanpulse.bus import TopicCounter, group_lag
from urbanpulse.core.envelope import decode_readings
from urbanpulse.core.settings import DbRole, KafkaPrincipal, Settings
from urbanpulse.kafka_access import provision
from urbanpulse.simulators.air import AirSensorModel
from urbanpulse.simulators.fleet import place_sensors
from urbanpulse.simulators.gateway import data_topic, reading_payload
from urbanpulse.stack import LocalStack, StackError
from urbanpulse.stack import _process as proc
from urbanpulse.stack._layout import Layout
from urbanpulse.stack.services.mosquitto import AUTOSAVE_CHANGES, persistence_path
from urbanpulse.storage import registry
from urbanpulse.storage.db import connect
from urbanpulse.storage.schema import migrate

COMPONENTS = ("bridge", "processor", "kafka", "postgres", "mosquitto")
EPISODE_RULES = """
version: 1
rules:
  - id: soak-pm25
    kind: air
    metric: pm25
    above: 120
    clear_below: 80
    cooldown: 5m
    severity: warning
    citation: "soak test episode limit"
"""
EPISODE_PM25 = 180.0
EPISODE_READINGS = 20  # per sensor in an episode
RECOVERY_TIMEOUT_S = 180.0


@dataclass
class SoakOptions:
    duration_s: float = 600.0
    rate: float = 200.0  # readings per second across the fleet
    sensors: int = 40
    pause_s: float = 20.0  # mean time between kills
    seed: int = 1


@dataclass
class SoakReport:
    accepted: int = 0
    stored: int = 0
    missing_outside_windows: int = 0
    lost_in_broker_windows: int = 0
    broker_crashes: int = 0
    extras: int = 0
    kills: Counter[str] = field(default_factory=Counter)
    recovery_s: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    max_lag: int = 0
    alert_events: int = 0
    alert_duplicates: int = 0
    alert_events_missing: int = 0
    alert_events_unexpected: int = 0
    alerts_stored: int = 0
    missing_examples: list[str] = field(default_factory=list)
    timeline: list[str] = field(default_factory=list)

    @property
    def loss_bound(self) -> int:
        return self.broker_crashes * AUTOSAVE_CHANGES

    @property
    def ok(self) -> bool:
        return (
            self.missing_outside_windows == 0
            and self.extras == 0
            and self.lost_in_broker_windows <= self.loss_bound
            and self.alert_duplicates == 0
            and self.alert_events_missing == 0
            and self.alert_events_unexpected == 0
        )

    def lines(self) -> list[str]:
        out = [
            f"readings accepted by the broker  {self.accepted:,}",
            f"readings stored                  {self.stored:,}",
            f"stored == accepted               {self.stored == self.accepted and not self.extras}",
            f"missing outside broker windows   {self.missing_outside_windows:,}",
            f"lost to broker crashes           {self.lost_in_broker_windows:,} "
            f"({self.broker_crashes} SIGKILLs, bound {self.loss_bound:,})",
            f"stored but never accepted        {self.extras:,}",
            f"alerts stored                    {self.alerts_stored}",
            f"alert events on Kafka            {self.alert_events} (duplicates "
            f"{self.alert_duplicates}, missing {self.alert_events_missing}, unexpected "
            f"{self.alert_events_unexpected})",
            f"max processor lag                {self.max_lag:,}",
            "recovery (kill to a new reading stored), seconds:",
        ]
        for name in COMPONENTS:
            times = self.recovery_s.get(name, [])
            if times:
                out.append(
                    f"  {name:<10} kills {self.kills[name]:>2}  min {min(times):6.1f}  "
                    f"median {statistics.median(times):6.1f}  max {max(times):6.1f}"
                )
        out.append("peak RSS, MB:")
        out += [f"  {name:<10} {mb:8.1f}" for name, mb in sorted(self.peak_rss_mb.items())]
        if self.missing_examples:
            out.append("missing readings (outside broker windows):")
            out += [f"  {example}" for example in self.missing_examples]
            out.append("what happened:")
            out += [f"  {event}" for event in self.timeline]
        out.append("PASS" if self.ok else "FAIL")
        return out


# ------------------------------------------------------------------------------ load


class Load:
    """The simulated fleet: paced readings with pollution episodes, in a thread of its own."""

    def __init__(self, settings: Settings, options: SoakOptions, publisher: AckedPublisher) -> None:
        self._settings = settings
        self._rate = options.rate
        self._rng = random.Random(options.seed)
        fleet = place_sensors("air", options.sensors, seed=options.seed, prefix=self.prefix)
        self.fleet = fleet
        self._models = [AirSensorModel(s, seed=options.seed) for s in fleet]
        # Event time runs ahead of the clock (several readings per sensor per second), from a
        # start far enough back that it never reaches the future.
        self._start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=24)
        self._publisher = publisher
        self._episodes: dict[int, int] = {}  # sensor index -> episode readings left
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-load", daemon=True)

    @property
    def prefix(self) -> str:
        return self._settings.kafka.topic_prefix

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _values(self, index: int, ts: datetime) -> dict[str, float]:
        values = self._models[index].values_at(ts)
        left = self._episodes.get(index, 0)
        if left:
            self._episodes[index] = left - 1
            values["pm25"] = EPISODE_PM25
        elif self._rng.random() < 0.0005:
            self._episodes[index] = EPISODE_READINGS
        return values

    def _run(self) -> None:
        started, sent = time.monotonic(), 0
        while not self._stop.is_set():
            index = sent % len(self._models)
            ts = self._start + timedelta(seconds=sent // len(self._models))
            sensor_id = self.fleet[index].sensor_id
            payload = reading_payload(ts, self._values(index, ts))
            topic = data_topic(self._settings.mqtt, "air", sensor_id)
            self._publisher.publish(topic, payload, (sensor_id, ts))
            sent += 1
            ahead = started + sent / self._rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)


# ------------------------------------------------------------------------------ observation


async def stored_keys(settings: Settings, sensor_ids: list[str]) -> set[Key] | None:
    """The stored (sensor_id, ts), or None while the database is away (it is killed too)."""
    try:
        conn = await connect(settings, DbRole.READER)
    except (OSError, asyncpg.PostgresError):
        return None
    try:
        rows = await conn.fetch(
            "SELECT sensor_id, ts FROM readings_air WHERE sensor_id = ANY($1::text[])", sensor_ids
        )
    except (OSError, asyncpg.PostgresError):
        return None
    finally:
        await conn.close()
    return {(r["sensor_id"], r["ts"]) for r in rows}


def rss_mb(pid: int, field_name: str = "VmHWM") -> float:
    """A process's peak resident set (VmHWM), in MB; 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Sampler:
    """Peak RSS of every process and the processor group's lag, sampled every second."""

    def __init__(
        self, settings: Settings, parts: dict[str, ServiceProcess], data_dir: Path
    ) -> None:
        self._settings = settings
        self._parts = parts
        self._layout = Layout(data_dir)
        self.peak: dict[str, float] = defaultdict(float)
        self.max_lag = 0
        # Set to end the sampling between two samples: cancelling a Kafka client mid-call
        # would leave its connections open.
        self.stop = asyncio.Event()

    def _pids(self) -> dict[str, list[int]]:
        pids: dict[str, list[int]] = {}
        for name, part in self._parts.items():
            if part.process is not None and part.process.poll() is None:
                pids[name] = [part.process.pid]
        for name in ("mosquitto", "kafka", "postgres"):
            leader = proc.read_pid(self._layout.pid_file(name))
            if leader is not None:
                pids[name] = proc.group_members(leader)  # postgres: postmaster and backends
        return pids

    async def run(self) -> None:
        kafka = self._settings.kafka_as(KafkaPrincipal.ADMIN)
        while not self.stop.is_set():
            for name, pids in self._pids().items():
                self.peak[name] = max([self.peak[name], *(rss_mb(pid) for pid in pids)])
            try:
                # No timeout of ours: cancelling the clients mid-call leaves connections open.
                lag = await group_lag(
                    kafka, kafka.consumer_group, kafka.topic("readings"), time.time()
                )
                self.max_lag = max(self.max_lag, lag.lag)
            except (KafkaError, OSError):
                pass  # Kafka is being restarted
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), 1.0)


# ------------------------------------------------------------------------------ chaos


def clock(at: float | None = None) -> str:
    """Wall-clock time of day with milliseconds, as the logs of every part print it."""
    moment = datetime.fromtimestamp(time.time() if at is None else at, UTC)
    return moment.strftime("%H:%M:%S.%f")[:-3]


class Chaos:
    """Kills one component at a time and measures how long until readings are stored again."""

    def __init__(
        self,
        settings: Settings,
        stack: LocalStack,
        parts: dict[str, ServiceProcess],
        publisher: AckedPublisher,
        options: SoakOptions,
    ) -> None:
        self._settings = settings
        self._stack = stack
        self._parts = parts
        self._publisher = publisher
        self._rng = random.Random(options.seed + 1)
        self._pause_s = options.pause_s
        self._saved_state = persistence_path(stack.data_dir)
        self._broker_kills = 0
        self.broker_windows: list[tuple[float, float]] = []  # (last save, kill), wall clock
        self.kills: Counter[str] = Counter()
        self.timeline: list[str] = []  # what happened when (wall clock), for a failure's story
        self.recovery_s: dict[str, list[float]] = defaultdict(list)
        self.probe_id = f"{settings.kafka.topic_prefix}-probe"
        self.untracked: set[Key] = set()  # probes sent before the bridge had a session
        self._probe_ts = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=30)

    def _kill(self, name: str) -> Callable[[], None]:
        """Kill ``name``; return what restarts it."""
        if name in self._parts:
            part = self._parts[name]
            part.kill()
            return part.start
        hard = name != "mosquitto" or self._broker_kills % 2 == 1
        if name == "mosquitto":
            self._broker_kills += 1
        self._stack.stop_service(name, hard=hard)
        if name == "mosquitto" and hard:
            saved = self._saved_state.stat().st_mtime if self._saved_state.exists() else 0.0
            self.broker_windows.append((saved, time.time()))

        def restart() -> None:
            self._stack.start_service(name)

        return restart

    async def recovered(self, tracked: bool = True) -> bool:
        """Publish probe readings until one is stored: the path works end to end again.

        More than one, because a probe can meet a broker that has no session for the bridge
        yet (at the very start), which MQTT lets it drop: those first probes are not
        ``tracked`` in the publisher's ledger of what must be stored.
        """
        topic = data_topic(self._settings.mqtt, "air", self.probe_id)
        probes: set[Key] = set()
        deadline = time.monotonic() + RECOVERY_TIMEOUT_S
        next_probe = 0.0
        while time.monotonic() < deadline:
            if time.monotonic() >= next_probe:
                self._probe_ts += timedelta(seconds=1)
                key = (self.probe_id, self._probe_ts)
                payload = reading_payload(self._probe_ts, {"pm25": 10.0})
                self._publisher.publish(topic, payload, key if tracked else None)
                probes.add(key)
                if not tracked:
                    self.untracked.add(key)
                next_probe = time.monotonic() + 2.0
            stored = await stored_keys(self._settings, [self.probe_id])
            if stored is not None and probes & stored:
                return True
            await asyncio.sleep(0.2)
        return False

    async def _restart(self, name: str, restart: Callable[[], None]) -> None:
        """Restart; a server still recovering its data when the stack's readiness timeout ends
        (Kafka after a SIGKILL, on a busy machine) is given two more timeouts."""
        for attempt in range(3):
            try:
                await asyncio.to_thread(restart)
                return
            except StackError as exc:
                if attempt == 2:
                    raise
                say(f"  {name} not ready yet ({str(exc).splitlines()[0]}); waiting again")

    def _going_on(self, until: float) -> bool:
        """Until the deadline, and at least until every component has been killed once."""
        return time.monotonic() < until or len(self.kills) < len(COMPONENTS)

    async def run(self, until: float) -> None:
        order: list[str] = []
        while self._going_on(until):
            await asyncio.sleep(self._rng.uniform(0.5, 1.5) * self._pause_s)
            if not self._going_on(until):
                break
            if not order:
                order = self._rng.sample(COMPONENTS, len(COMPONENTS))
            name = order.pop()
            killed_at = time.monotonic()
            self.timeline.append(f"{clock()} kill {name}")
            restart = await asyncio.to_thread(self._kill, name)
            self.kills[name] += 1
            await asyncio.sleep(self._rng.uniform(1.0, 5.0))  # down for a while: a backlog
            self.timeline.append(f"{clock()} restart {name}")
            await self._restart(name, restart)
            self.timeline.append(f"{clock()} {name} is back")
            if not await self.recovered():
                exits = {n: p.process.poll() if p.process else None for n, p in self._parts.items()}
                say(f"  {name}: NOT recovered within {RECOVERY_TIMEOUT_S:.0f}s; exit codes {exits}")
                self.timeline.append(f"{clock()} {name} NOT recovered; exit codes {exits}")
                continue
            took = time.monotonic() - killed_at
            self.recovery_s[name].append(took)
            say(f"  killed {name:<10} recovered in {took:5.1f}s")


# ------------------------------------------------------------------------------ the run


async def check_alerts(settings: Settings, sensor_ids: list[str], report: SoakReport) -> None:
    """Alert events on Kafka against the alerts stored: each expected event exactly once."""
    conn = await connect(settings, DbRole.READER)
    try:
        rows = await conn.fetch(
            "SELECT alert_id, state, trigger_count FROM alerts WHERE sensor_id = ANY($1::text[])",
            sensor_ids,
        )
    finally:
        await conn.close()
    expected: Counter[tuple[str, str]] = Counter()
    for row in rows:
        # Opened once, reopened (within the cool-down) trigger_count - 1 times, and resolved
        # after each trigger but a still-open last one (urbanpulse/alerts/engine.py).
        triggers, alert_id = row["trigger_count"], row["alert_id"]
        expected[(alert_id, "opened")] += 1
        expected[(alert_id, "reopened")] += triggers - 1
        expected[(alert_id, "resolved")] += triggers - (row["state"] != "resolved")
    topic = settings.kafka.topic("alerts")
    async with TopicCounter(settings.kafka_as(KafkaPrincipal.ADMIN)) as topics:
        total = await topics.total(topic)
    events = [orjson.loads(v) for v in await read_topic(settings, topic, total, 120)]
    identities = Counter(
        e.get("event_id") or (e["alert"]["alert_id"], e["event"], e["at"]) for e in events
    )
    seen = Counter(
        (e["alert"]["alert_id"], e["event"])
        for e in events
        if e["event"] in ("opened", "reopened", "resolved")
    )
    report.alerts_stored = len(rows)
    report.alert_events = len(events)
    report.alert_duplicates = sum(n - 1 for n in identities.values() if n > 1)
    report.alert_events_missing = sum((expected - seen).values())
    report.alert_events_unexpected = sum((seen - expected).values())


async def soak(
    settings: Settings, stack: LocalStack, options: SoakOptions, log_dir: Path
) -> SoakReport:
    """Run the soak against a running ``stack``; ``settings`` must be isolated for it."""
    rules = log_dir / "soak-rules.yaml"
    rules.write_text(EPISODE_RULES)
    settings = settings.model_copy(
        update={"alerts": settings.alerts.model_copy(update={"rules_path": rules})}
    )
    publisher = AckedPublisher(settings.mqtt, f"{settings.kafka.topic_prefix}-gateway")
    load = Load(settings, options, publisher)
    conn = await connect(settings, DbRole.OWNER)
    try:
        await migrate(conn)
        await registry.upsert(
            conn, [registry.SensorRecord(s.sensor_id, "air", s.lat, s.lon) for s in load.fleet]
        )
    finally:
        await conn.close()
    parts = {
        "bridge": ServiceProcess("bridge", settings, log_dir / "bridge.log"),
        "processor": ServiceProcess("process", settings, log_dir / "processor.log"),
    }
    for part in parts.values():
        part.start()
    sampler = Sampler(settings, parts, stack.data_dir)
    sampling = asyncio.create_task(sampler.run())
    chaos = Chaos(settings, stack, parts, publisher, options)
    try:
        await asyncio.to_thread(publisher.connect)
        say("waiting for the pipeline to flow")
        if not await chaos.recovered(tracked=False):
            raise RuntimeError("the pipeline never stored a first reading")
        load.start()
        started = time.monotonic()
        say(f"load on: {options.rate:.0f} readings/s; a kill every ~{options.pause_s:.0f}s")
        progress = asyncio.create_task(print_progress(publisher, started))
        await chaos.run(started + options.duration_s)
        progress.cancel()
        load.stop()
        await asyncio.to_thread(publisher.close, 120.0)
        say(f"load off after {time.monotonic() - started:.0f}s; checking")
        report = await settle(settings, load, publisher, chaos)
        await check_alerts(settings, [s.sensor_id for s in load.fleet], report)
    finally:
        sampler.stop.set()
        await sampling
        for part in parts.values():
            part.ensure_stopped()
    report.kills = chaos.kills
    report.recovery_s = chaos.recovery_s
    report.peak_rss_mb = dict(sampler.peak)
    report.max_lag = sampler.max_lag
    return report


async def print_progress(publisher: AckedPublisher, started: float) -> None:
    while True:
        await asyncio.sleep(30)
        say(
            f"{time.monotonic() - started:5.0f}s  published {publisher.sent:,}  "
            f"acked by the broker {publisher.acked:,}"
        )


async def settle(
    settings: Settings, load: Load, publisher: AckedPublisher, chaos: Chaos
) -> SoakReport:
    """Wait until every reading outside the broker's loss windows is stored; count."""
    accepted = publisher.accepted()
    windows = chaos.broker_windows

    def at_risk(acked_at: float) -> bool:
        return any(saved < acked_at <= killed for saved, killed in windows)

    must = {key for key, acked_at in accepted.items() if not at_risk(acked_at)}
    sensor_ids = [s.sensor_id for s in load.fleet] + [chaos.probe_id]
    stored: set[Key] = set()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        stored = (await stored_keys(settings, sensor_ids) or stored) - chaos.untracked
        if must <= stored:
            break
        await asyncio.sleep(1.0)
    missing = sorted(must - stored)
    in_kafka = await readings_in_kafka(settings, set(missing[:20])) if missing else set()
    return SoakReport(
        accepted=len(accepted),
        stored=len(stored),
        missing_outside_windows=len(missing),
        lost_in_broker_windows=len(set(accepted) - stored - must),
        broker_crashes=len(windows),
        extras=len(stored - set(accepted)),
        missing_examples=[
            f"{sensor} {ts.isoformat()} acked {clock(accepted[(sensor, ts)])}, "
            f"{'in' if (sensor, ts) in in_kafka else 'NOT in'} Kafka"
            for sensor, ts in missing[:20]
        ],
        timeline=chaos.timeline,
    )


async def readings_in_kafka(settings: Settings, keys: set[Key]) -> set[Key]:
    """Which of ``keys`` reached the readings topic (a loss before or after Kafka?)."""
    topic = settings.kafka.topic("readings")
    async with TopicCounter(settings.kafka_as(KafkaPrincipal.ADMIN)) as topics:
        total = await topics.total(topic)
    # Each record holds one MQTT message's readings (read by content: the values alone).
    values = await read_topic(settings, topic, total, 120)
    readings = (r for v in values for _, r in decode_readings(v).readings)
    return {(r.sensor_id, r.ts) for r in readings} & keys


async def main(options: SoakOptions) -> int:
    # The clients' own complaints while their servers are down are the point of the exercise.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    data_dir = stack_data_dir("urbanpulse-soak-")
    log_dir = Path(tempfile.mkdtemp(prefix="urbanpulse-soak-logs-"))
    stack = LocalStack(settings_for_stack(data_dir))
    try:
        say(f"starting a private local stack in {data_dir}; bridge and processor logs in {log_dir}")
        await asyncio.to_thread(stack.ensure_installed)
        await asyncio.to_thread(stack.up)
        settings = isolated(stack.settings, f"soak{uuid.uuid4().hex[:8]}")
        await provision(settings)
        report = await soak(settings, stack, options, log_dir)
    finally:
        await asyncio.to_thread(stack.down)
        shutil.rmtree(data_dir, ignore_errors=True)
    for line in report.lines():
        say(line)
    return 0 if report.ok else 1


def parse_args(argv: list[str] | None = None) -> SoakOptions:
    defaults = SoakOptions()
    parser = argparse.ArgumentParser(
        description="Kill and restart every part under simulated load; check nothing is lost."
    )
    parser.add_argument("--duration", type=float, default=defaults.duration_s, help="seconds")
    parser.add_argument("--rate", type=float, default=defaults.rate, help="readings/s")
    parser.add_argument("--sensors", type=int, default=defaults.sensors, help="air sensors")
    parser.add_argument(
        "--pause", type=float, default=defaults.pause_s, help="mean seconds between kills"
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    args = parser.parse_args(argv)
    return SoakOptions(args.duration, args.rate, args.sensors, args.pause, args.seed)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
