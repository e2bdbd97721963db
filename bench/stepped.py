"""Stepped load through the platform run as processes, against a naive sink: ``make bench``.

    python -m bench.stepped [--rates 1000,2500,5000,10000] [--shapes 1,20] [--step 20]
                            [--sensors 500] [--publishers 2] [--no-naive] [--no-scaling]
                            [--profile DIR] [--hold 600 --hold-rate 4000]

On a private local stack (free ports, a temporary directory, removed at the end) the bridge and
the processor run as ``urbanpulse bridge`` / ``urbanpulse process`` processes.  Publisher
processes (``bench/load.py``, paho, QoS 1) offer each rate for ``--step`` seconds, one reading
per message and as gateways batching 20 readings per message (``--shapes``).  Per step:

- offered and stored readings/s (stored: every reading sent, counted in the database by its
  (sensor, ts), divided by the time from the first publish to the last row stored), the drain
  (last publish to last row stored) and the readings lost (sent and still not stored after a
  step that fell behind was given 5 more minutes to catch up: must be 0);
- p50/p99 publish -> stored and publish -> alert on Kafka, from probe readings sent by this
  process every 100 ms on a sensor of their own, alternately above and below a PM2.5 rule;
- CPU per process over the step (/proc/<pid>/stat, 100 % = one core; PostgreSQL and
  Kafka with all their processes) and RSS at its end; the machine's own busy share (it may be
  shared: the figures are indicative).

Then the same steps through the naive sink (``bench/naive_sink.py``: paho callback -> INSERT per
message, one process) until it falls behind, and the ratio of the best rates each sustained;
then scaling lines: 2 bridges (MQTT shared subscription) and 2 processors (one consumer group)
at the batched rate one of each did not keep up with (or the top rate).  Above a rate a set-up
did not keep up with, its higher rates are skipped.

``--profile DIR`` samples the bridge and the processor with py-spy during each 1 + 1 step
(collapsed stacks, summarised by ``python -m bench.collapsed``).  ``--hold S`` runs one long
step at ``--hold-rate`` instead, printing every process's RSS along the way (memory flat?).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer

from bench.load import LoadPlan, LoadResult, run_load
from bench.naive_sink import run_sink
from bench.publisher import AckedPublisher
from bench.support import PROBE_RULES, percentile, say
from tests.conftest import settings_for_stack, stack_data_dir
from tests.e2e.conftest import ServiceProcess, isolated
from urbanpulse.core.mqtt_login import Identity, password_of, username_of
from urbanpulse.core.settings import DbRole, KafkaPrincipal, Settings
from urbanpulse.kafka_access import provision
from urbanpulse.simulators.gateway import data_topic, reading_payload
from urbanpulse.stack import LocalStack
from urbanpulse.stack import _process as proc
from urbanpulse.stack._layout import Layout
from urbanpulse.storage import registry
from urbanpulse.storage.db import connect
from urbanpulse.storage.schema import migrate

PROBE_EVERY_S = 0.1
PROBE_HIGH, PROBE_LOW = 150.0, 20.0  # the fleet stays below 50: only probes raise alerts
POLL_S = 0.02
READY_TIMEOUT_S = 120.0
SETTLE_S = 300.0  # after a step that fell behind: time to catch up before "lost"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CORES = 2  # the machine the targets are set for
SKIPPED = "  (higher rates of this shape skipped: this one was not kept up)"
PARTS = ("bridge", "processor", "naive", "kafka", "postgres", "mosquitto", "load")


@dataclass
class Options:
    rates: list[int] = field(default_factory=lambda: [1000, 2500, 5000, 10000])
    shapes: list[int] = field(default_factory=lambda: [1, 20])
    step_s: float = 20.0
    sensors: int = 500
    publishers: int = 2
    naive: bool = True
    scaling: tuple[tuple[int, int], ...] = ((2, 1), (1, 2), (2, 2))  # (bridges, processors)
    profile_dir: Path | None = None
    hold_s: float = 0.0
    hold_rate: int = 4000


@dataclass
class Step:
    setup: str  # e.g. "1 bridge + 1 processor"
    per_message: int
    offered: float  # readings/s
    sent: int = 0
    stored: int = 0
    seconds: float = 0.0  # first publish to last row stored (or the drain's deadline)
    drain_s: float = 0.0
    unacked: int = 0
    behind: int = 0  # sent and not stored when the drain's time ran out
    lost: int = 0  # sent and still not stored after the settling wait
    stored_ms: list[float] = field(default_factory=list)
    alert_ms: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # % of one core
    rss_mb: list[dict[str, float]] = field(default_factory=list)  # samples, the last at the end
    machine_busy: float = 0.0  # % of all cores, whoever used them

    @property
    def rate(self) -> float:
        return self.stored / self.seconds if self.seconds else 0.0

    def kept_up(self, step_s: float) -> bool:
        return self.behind == 0 and self.lost == 0 and self.drain_s <= max(2.0, 0.1 * step_s)

    def cost(self) -> str:
        """CPU seconds per 10,000 readings stored, per part: what a reading costs whatever else
        ran on the machine, and the rate that cost allows on ``CORES`` free cores."""
        if not self.rate:
            return f"{self.setup:<24} {self.per_message:>3} {self.offered:>8,.0f}  nothing stored"
        per_10k = {p: self.cpu.get(p, 0.0) / 100 / self.rate * 10_000 for p in PARTS}
        servers = sum(per_10k[p] for p in PARTS if p != "load")
        allows = CORES * 10_000 / servers if servers else 0.0
        return (
            f"{self.setup:<24} {self.per_message:>3} {self.offered:>8,.0f} "
            + " ".join(f"{per_10k[p]:5.2f}" for p in PARTS)
            + f" {servers:6.2f} {allows:>8,.0f}"
        )

    def line(self) -> str:
        def ms(values: list[float]) -> str:
            if not values:
                return "     -/-    "
            return f"{percentile(values, 0.5):5.0f}/{percentile(values, 0.99):<6.0f}"

        cpu = " ".join(f"{self.cpu.get(p, 0):4.0f}" for p in PARTS)
        rss = self.rss_mb[-1] if self.rss_mb else {}
        memory = " ".join(f"{rss.get(p, 0):5.0f}" for p in ("bridge", "processor", "naive"))
        return (
            f"{self.setup:<22} {self.per_message:>3} {self.offered:>8,.0f} {self.rate:>8,.0f} "
            f"{self.lost:>5} {self.drain_s:>6.1f} {ms(self.stored_ms)} {ms(self.alert_ms)} "
            f"{cpu} {self.machine_busy:4.0f} {memory}"
        )


HEADER = (
    f"{'set-up':<22} {'r/m':>3} {'offered':>8} {'stored':>8} {'lost':>5} {'drain':>6} "
    f"{'stored ms':<12} {'alert ms':<12} "
    + " ".join(f"{p[:4]:>4}" for p in PARTS)
    + f" {'host':>4} {'RSS MB: bridge proc naive':>17}"
)
LEGEND = (
    "r/m readings per message; offered/stored readings/s; drain s after the last publish; "
    "lost: never stored; ms p50/p99 publish -> stored, -> alert on Kafka; CPU % of one core per "
    "part (postgres, kafka: all processes; load: the publishers), host: % of all cores busy "
    "(anyone's)"
)


# ------------------------------------------------------------------------------ measuring


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


def rss_mb(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
    return total


def machine_ticks() -> tuple[int, int]:
    """(busy, all) CPU ticks of the machine so far."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return sum(values) - idle, sum(values)


class Processes:
    """The pids of each part, re-read on every sample (servers' backends come and go)."""

    def __init__(self, data_dir: Path) -> None:
        self._layout = Layout(data_dir)
        self.services: dict[str, list[ServiceProcess]] = {}
        self.naive: multiprocessing.process.BaseProcess | None = None

    def pids(self) -> dict[str, list[int]]:
        out = {
            name: [s.process.pid for s in services if s.process is not None]
            for name, services in self.services.items()
        }
        if self.naive is not None and self.naive.pid is not None:
            out["naive"] = [self.naive.pid]
        children = child_pids()
        for name in ("mosquitto", "kafka", "postgres"):
            leader = proc.read_pid(self._layout.pid_file(name))
            out[name] = family(leader, children) if leader is not None else []
        return out


def child_pids() -> dict[int, list[int]]:
    """Parent pid -> its children's pids, for every process now running."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children[ppid].append(int(entry.name))
    return children


def family(pid: int, children: dict[int, list[int]]) -> list[int]:
    """A server and all its descendants (PostgreSQL's backends, say)."""
    out, waiting = [], [pid]
    while waiting:
        out.append(current := waiting.pop())
        waiting += children.get(current, [])
    return out


class CpuMeter:
    def __init__(self, processes: Processes) -> None:
        self._processes = processes
        self._began = time.monotonic()
        self._ticks = {n: cpu_ticks(p) for n, p in processes.pids().items()}
        self._machine = machine_ticks()

    def percent(self) -> tuple[dict[str, float], float]:
        seconds = time.monotonic() - self._began
        now = {n: cpu_ticks(p) for n, p in self._processes.pids().items()}
        cpu = {
            name: 100 * (ticks - self._ticks.get(name, 0)) / CLOCK_TICKS / seconds
            for name, ticks in now.items()
        }
        busy, total = machine_ticks()
        share = 100 * (busy - self._machine[0]) / max(1, total - self._machine[1])
        return cpu, share


class Probes:
    """Probe readings every 100 ms on a sensor of their own, and when each was stored and
    (for those above the rule) when its alert event reached Kafka."""

    def __init__(self, settings: Settings, sensor_id: str, alerts: bool) -> None:
        self._settings = settings
        self.sensor_id = sensor_id
        self._alerts = alerts
        self._publisher = AckedPublisher(settings.mqtt, f"{sensor_id}-{uuid.uuid4().hex[:6]}")
        self.sent: dict[datetime, float] = {}
        self.high: set[datetime] = set()
        self.stored: dict[datetime, float] = {}
        self.alerted: dict[datetime, float] = {}

    async def __aenter__(self) -> Probes:
        await asyncio.to_thread(self._publisher.connect)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await asyncio.to_thread(self._publisher.close, 30.0)

    def send(self) -> datetime:
        ts = datetime.now(UTC)
        value = PROBE_HIGH if len(self.sent) % 2 == 0 and self._alerts else PROBE_LOW
        topic = data_topic(self._settings.mqtt, "air", self.sensor_id)
        self.sent[ts] = time.time()
        if value == PROBE_HIGH:
            self.high.add(ts)
        self._publisher.publish(topic, reading_payload(ts, {"pm25": value}))
        return ts

    async def run(self, stop: asyncio.Event) -> None:
        """Probe and poll until ``stop``; then until every probe is stored (or 60 s)."""
        since = datetime.now(UTC)
        conn = await connect(self._settings, DbRole.READER)
        next_probe = 0.0
        try:
            deadline = float("inf")
            while time.monotonic() < deadline:
                if not stop.is_set() and time.monotonic() >= next_probe:
                    self.send()
                    next_probe = time.monotonic() + PROBE_EVERY_S
                elif stop.is_set() and deadline == float("inf"):
                    deadline = time.monotonic() + 60
                rows = await conn.fetch(
                    "SELECT ts FROM readings_air WHERE sensor_id = $1 AND ts >= $2",
                    self.sensor_id,
                    since,
                )
                now = time.time()
                for row in rows:
                    self.stored.setdefault(row["ts"], now)
                if stop.is_set() and len(self.stored) >= len(self.sent):
                    break
                await asyncio.sleep(POLL_S)
        finally:
            await conn.close()

    async def follow_alerts(self, ready: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            self._settings.kafka.topic("alerts"),
            **self._settings.kafka_as(KafkaPrincipal.ADMIN).client_kwargs(),
            auto_offset_reset="latest",
        )
        await consumer.start()
        try:
            await consumer.getmany(timeout_ms=500)  # positions at the end
            ready.set()
            while True:
                batches = await consumer.getmany(timeout_ms=50)
                now = time.time()
                for records in batches.values():
                    for record in records:
                        event = orjson.loads(record.value or b"{}")
                        alert = event.get("alert") or {}
                        if event.get("event") in ("opened", "reopened") and (
                            alert.get("sensor_id") == self.sensor_id
                        ):
                            ts = datetime.fromisoformat(alert["last_triggered_at"])
                            self.alerted.setdefault(ts, now)
        finally:
            await consumer.stop()

    def latencies(self) -> tuple[list[float], list[float]]:
        stored = [
            (self.stored[ts] - at) * 1000 for ts, at in self.sent.items() if ts in self.stored
        ]
        alerted = [
            (self.alerted[ts] - self.sent[ts]) * 1000 for ts in self.high if ts in self.alerted
        ]
        return stored, alerted


# ------------------------------------------------------------------------------ the parts


@dataclass
class Run:
    """What every step of a run shares."""

    stack: LocalStack
    base: Settings
    options: Options
    log_dir: Path
    processes: Processes
    fleet: list[str]
    probe_id: str
    next_ts: datetime  # event time of the next step's first readings

    def take_span(self, readings: int) -> datetime:
        """Event time for a step's readings, after all earlier steps' (distinct keys)."""
        first = self.next_ts
        per_sensor = readings // len(self.fleet) + 40
        self.next_ts = first + timedelta(seconds=per_sensor + 60)
        return first


def log_has(service: ServiceProcess, marker: str, accept: Callable[[str], bool]) -> bool:
    lines = [line for line in service.log_text().splitlines() if marker in line]
    return bool(lines) and accept(lines[-1].split(marker, 1)[1])


async def wait_for(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not ready within {READY_TIMEOUT_S:.0f}s: {what}")
        await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def platform(run: Run, bridges: int, processors: int) -> AsyncIterator[Settings]:
    """``bridges`` bridge and ``processors`` processor processes on topics of their own."""
    name = f"b{uuid.uuid4().hex[:8]}"
    settings = isolated(run.base, name)
    if bridges > 1:
        settings = settings.model_copy(
            update={"mqtt": settings.mqtt.model_copy(update={"share_group": f"{name}-bridge"})}
        )
    await provision(settings)
    services = [
        ServiceProcess(
            "bridge",
            settings.model_copy(
                update={"mqtt": settings.mqtt.model_copy(update={"bridge_instance": str(i + 1)})}
            ),
            run.log_dir / f"{name}-bridge-{i + 1}.log",
        )
        for i in range(bridges)
    ] + [
        ServiceProcess("process", settings, run.log_dir / f"{name}-processor-{i + 1}.log")
        for i in range(processors)
    ]
    run.processes.services = {
        "bridge": services[:bridges],
        "processor": services[bridges:],
    }
    try:
        for service in services:
            service.start()
        for service in services[:bridges]:
            await wait_for("bridge", partial(log_has, service, "bridge subscribed", bool))
        for service in services[bridges:]:
            has_partitions = partial(log_has, service, "processor assigned", _not_empty)
            await wait_for("processor", has_partitions)
        await flowing(settings, run.probe_id)
        yield settings
    finally:
        for service in services:
            if service.process is not None and service.process.poll() is None:
                _stop(service)
        run.processes.services = {}


def _not_empty(assignment: str) -> bool:
    return "[]" not in assignment


def _stop(service: ServiceProcess) -> None:
    try:
        service.stop()
    except subprocess.TimeoutExpired:
        service.kill()


@contextlib.asynccontextmanager
async def naive_sink(run: Run) -> AsyncIterator[Settings]:
    settings = isolated(run.base, f"n{uuid.uuid4().hex[:8]}")
    context = multiprocessing.get_context("spawn")
    subscribed = context.Event()
    sink = context.Process(target=run_sink, args=(settings, subscribed))
    sink.start()
    run.processes.naive = sink
    try:
        await wait_for("naive sink", subscribed.is_set)
        await flowing(settings, run.probe_id)
        yield settings
    finally:
        sink.terminate()
        sink.join(30)
        run.processes.naive = None


async def flowing(settings: Settings, probe_id: str) -> None:
    """Probe readings until one is stored: the path works end to end."""
    probes = Probes(settings, probe_id, alerts=False)
    async with probes:
        conn = await connect(settings, DbRole.READER)
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while time.monotonic() < deadline:
                ts = probes.send()
                for _ in range(25):
                    await asyncio.sleep(POLL_S * 2)
                    if await conn.fetchval(
                        "SELECT count(*) FROM readings_air WHERE sensor_id = $1 AND ts = $2",
                        probe_id,
                        ts,
                    ):
                        return
            raise RuntimeError("nothing reached the database")
        finally:
            await conn.close()


# ------------------------------------------------------------------------------ a step


def plans(
    run: Run, settings: Settings, rate: float, per_message: int, seconds: float, first: datetime
) -> list[LoadPlan]:
    count = run.options.publishers
    messages = round(rate * seconds / per_message)
    return [
        LoadPlan(
            host=settings.mqtt.host,
            port=settings.mqtt.port,
            username=username_of(settings.mqtt, Identity.PUBLISHER),
            password=password_of(settings.mqtt, Identity.PUBLISHER),
            client_id=f"{settings.kafka.topic_prefix}-load-{i}-{uuid.uuid4().hex[:6]}",
            topics=tuple(data_topic(settings.mqtt, "air", s) for s in run.fleet[i::count]),
            messages=messages // count + (1 if i < messages % count else 0),
            per_message=per_message,
            duration_s=seconds,
            first_ts=first,
        )
        for i in range(count)
    ]


async def count_stored(run: Run, first: datetime, last: datetime) -> int:
    conn = await connect(run.base, DbRole.READER)
    try:
        stored: int = await conn.fetchval(
            "SELECT count(*) FROM readings_air WHERE sensor_id = ANY($1::text[]) "
            "AND ts >= $2 AND ts <= $3",
            run.fleet,
            first,
            last,
        )
        return stored
    finally:
        await conn.close()


async def drained(
    run: Run, first: datetime, last: datetime, expected: int, seconds: float, wait_s: float
) -> tuple[int, float]:
    """(rows stored, when the last arrived): polled from the step's planned end (``seconds``
    after its start) until all ``expected`` readings are stored or ``wait_s`` more passed."""
    await asyncio.sleep(seconds * 0.95)
    deadline = time.monotonic() + wait_s
    while (stored := await count_stored(run, first, last)) < expected:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.25)
    return stored, time.time()


async def sample_rss(run: Run, step: Step, stop: asyncio.Event, every_s: float) -> None:
    while True:
        pids = run.processes.pids()
        step.rss_mb.append({name: rss_mb(p) for name, p in pids.items()})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
            return


@contextlib.asynccontextmanager
async def profiled(run: Run, label: str, wanted: bool) -> AsyncIterator[None]:
    """py-spy on the bridge and the processor while the block runs, if ``wanted``."""
    spies: list[subprocess.Popen[bytes]] = []
    if wanted and run.options.profile_dir is not None:
        run.options.profile_dir.mkdir(parents=True, exist_ok=True)
        py_spy = str(Path(sys.executable).with_name("py-spy"))
        for name, services in run.processes.services.items():
            for i, service in enumerate(services):
                assert service.process is not None
                out = run.options.profile_dir / f"{label}-{name}-{i + 1}.txt"
                spies.append(
                    subprocess.Popen(
                        [
                            *(py_spy, "record", "--pid", str(service.process.pid)),
                            *("--rate", "100", "--nonblocking", "--format", "raw"),
                            *("--output", str(out)),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
    try:
        yield
    finally:
        for spy in spies:
            spy.send_signal(2)  # SIGINT: py-spy writes its output and exits
            spy.wait(60)


async def step(
    run: Run,
    settings: Settings,
    setup: str,
    rate: float,
    per_message: int,
    seconds: float,
    alerts: bool,
    rss_every_s: float = 5.0,
    profile: bool = False,
) -> Step:
    result = Step(setup, per_message, rate)
    first = run.take_span(round(rate * seconds))
    load = plans(run, settings, rate, per_message, seconds, first)
    per_sensor = max(-(-p.messages // len(p.topics)) for p in load) * per_message
    last = first + timedelta(seconds=per_sensor)
    expected = sum(p.messages for p in load) * per_message
    probes = Probes(settings, run.probe_id, alerts)
    stop, done, going = asyncio.Event(), asyncio.Event(), asyncio.Event()
    following = asyncio.Event()
    loop = asyncio.get_running_loop()
    async with probes:
        follower = asyncio.create_task(
            probes.follow_alerts(following) if alerts else asyncio.sleep(0)
        )
        if alerts:
            await following.wait()
        rss = asyncio.create_task(sample_rss(run, result, done, rss_every_s))
        async with profiled(run, f"{setup.split()[0]}b-{per_message}rpm-{rate:.0f}", profile):
            publishing = asyncio.create_task(
                asyncio.to_thread(run_load, load, partial(loop.call_soon_threadsafe, going.set))
            )
            await going.wait()
            meter = CpuMeter(run.processes)
            probing = asyncio.create_task(probes.run(stop))
            stored, finished = await drained(
                run, first, last, expected, seconds, max(30.0, 2 * seconds)
            )
            published: list[LoadResult] = await publishing
        result.cpu, result.machine_busy = meter.percent()
        stop.set()
        began = min(r.started for r in published)
        ended = max(r.published for r in published)
        result.sent = sum(r.readings for r in published)
        result.unacked = sum(r.unacked for r in published)
        result.cpu["load"] = 100 * sum(r.cpu_s for r in published) / (finished - began)
        done.set()
        await rss
        await probing
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
    result.behind = expected - stored + len(probes.sent) - len(probes.stored)
    result.sent += len(probes.sent)
    result.stored = stored + len(probes.stored)
    if result.behind:  # let it catch up before the next step, and tell late from lost
        settled = await drained(run, first, last, expected, 0.0, SETTLE_S)
        result.lost = expected - settled[0] + len(probes.sent) - len(probes.stored)
    result.seconds = finished - began
    result.drain_s = finished - ended
    result.stored_ms, result.alert_ms = probes.latencies()
    say(result.line())
    return result


# ------------------------------------------------------------------------------ the run


async def platform_steps(run: Run) -> list[Step]:
    options = run.options
    out: list[Step] = []
    async with platform(run, 1, 1) as settings:
        for shape in options.shapes:
            for rate in options.rates:
                result = await step(
                    run,
                    settings,
                    "1 bridge + 1 processor",
                    rate,
                    shape,
                    options.step_s,
                    alerts=True,
                    profile=True,
                )
                out.append(result)
                if not result.kept_up(options.step_s):
                    say(SKIPPED)
                    break
    return out


async def naive_steps(run: Run) -> list[Step]:
    options = run.options
    out: list[Step] = []
    for shape in options.shapes:
        async with naive_sink(run) as settings:  # a fresh sink: no backlog from the last step
            for rate in options.rates:
                result = await step(
                    run, settings, "naive sink", rate, shape, options.step_s, alerts=False
                )
                out.append(result)
                if not result.kept_up(options.step_s):
                    say(SKIPPED)
                    break
    return out


async def scaling_steps(run: Run, single: list[Step]) -> list[Step]:
    """Several instances where one of each fell behind (batched readings), else at the top."""
    options = run.options
    shape = max(options.shapes)
    rate = next(
        (s.offered for s in single if s.per_message == shape and not s.kept_up(options.step_s)),
        max(options.rates),
    )
    out = []
    for bridges, processors in options.scaling:
        setup = f"{bridges} bridge{'s' * (bridges > 1)} + {processors} processor" + (
            "s" * (processors > 1)
        )
        async with platform(run, bridges, processors) as settings:
            out.append(await step(run, settings, setup, rate, shape, options.step_s, alerts=True))
    return out


def best(steps: list[Step], shape: int, step_s: float) -> tuple[float, float]:
    """(the best rate kept up with, the most stored per second in any step) of one shape."""
    rates = [s.rate for s in steps if s.per_message == shape]
    kept = [s.rate for s in steps if s.per_message == shape and s.kept_up(step_s)]
    return max(kept, default=0.0), max(rates, default=0.0)


def summary(
    platform_: list[Step], naive: list[Step], scaled: list[Step], step_s: float
) -> list[str]:
    lines = [
        f"CPU seconds per 10,000 readings stored, and the rate that allows on {CORES} free cores "
        "(all parts but the load):",
        f"{'set-up':<24} {'r/m':>3} {'offered':>8} "
        + " ".join(f"{p[:5]:>5}" for p in PARTS)
        + f" {'all':>6} {'allows':>8}",
    ]
    lines += [s.cost() for s in platform_ + scaled + naive]
    for shape in sorted({s.per_message for s in platform_}):
        (ours, ours_most), (theirs, theirs_most) = (
            best(platform_, shape, step_s),
            best(naive, shape, step_s),
        )
        ratio = f"{ours_most / theirs_most:.1f}x" if theirs_most else "n/a"
        lines.append(
            f"{shape:>2} reading(s)/message: kept up with (0 lost, drained within "
            f"{max(2.0, 0.1 * step_s):.0f}s) UrbanPulse {ours:,.0f}/s, naive sink "
            f"{theirs:,.0f}/s; stored at most {ours_most:,.0f}/s and {theirs_most:,.0f}/s, "
            f"ratio {ratio}"
        )
    return lines


async def hold(run: Run) -> list[Step]:
    options = run.options
    async with platform(run, 1, 1) as settings:
        result = await step(
            run,
            settings,
            "hold 1b+1p",
            options.hold_rate,
            max(options.shapes),
            options.hold_s,
            alerts=True,
            rss_every_s=30.0,
        )
    say("RSS MB over the hold (every 30 s):")
    for name in ("bridge", "processor", "kafka", "postgres", "mosquitto"):
        series = [sample.get(name, 0.0) for sample in result.rss_mb]
        say(f"  {name:<10} " + " ".join(f"{v:.0f}" for v in series))
    return [result]


async def bench(stack: LocalStack, options: Options, log_dir: Path) -> list[Step]:
    """Every step of the run against a running ``stack``; prints as it goes."""
    name = f"bench{uuid.uuid4().hex[:6]}"
    base = stack.settings
    rules = log_dir / "bench-rules.yaml"
    rules.write_text(PROBE_RULES)
    base = base.model_copy(update={"alerts": base.alerts.model_copy(update={"rules_path": rules})})
    fleet = [f"{name}-{i:05d}" for i in range(options.sensors)]
    probe_id = f"{name}-probe"
    conn = await connect(base, DbRole.OWNER)
    try:
        await migrate(conn)
        await registry.upsert(
            conn,
            [
                registry.SensorRecord(s, "air", 10.70 + i % 100 / 1000, 106.60 + i // 100 / 1000)
                for i, s in enumerate([*fleet, probe_id])
            ],
        )
    finally:
        await conn.close()
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    run = Run(stack, base, options, log_dir, Processes(stack.data_dir), fleet, probe_id, start)
    say(HEADER)
    if options.hold_s:
        return await hold(run)
    ours = await platform_steps(run)
    naive = await naive_steps(run) if options.naive else []
    scaled = await scaling_steps(run, ours)
    say(LEGEND)
    for line in summary(ours, naive, scaled, options.step_s):
        say(line)
    return ours + naive + scaled


async def main(options: Options) -> int:
    data_dir = stack_data_dir("urbanpulse-bench-")
    log_dir = Path(tempfile.mkdtemp(prefix="urbanpulse-bench-logs-"))
    stack = LocalStack(settings_for_stack(data_dir))
    say(f"load: {Path('/proc/loadavg').read_text().strip()} ({os.cpu_count()} cores)")
    try:
        say(f"private local stack in {data_dir}; part logs in {log_dir}")
        await asyncio.to_thread(stack.ensure_installed)
        await asyncio.to_thread(stack.up)
        steps = await bench(stack, options, log_dir)
    finally:
        await asyncio.to_thread(stack.down)
        shutil.rmtree(data_dir, ignore_errors=True)
    say(f"load: {Path('/proc/loadavg').read_text().strip()}")
    return 0 if all(s.lost == 0 for s in steps if s.setup != "naive sink") else 1


def parse_args(argv: list[str] | None = None) -> Options:
    defaults = Options()

    def numbers(text: str) -> list[int]:
        return [int(part) for part in text.split(",")]

    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog="Figures are printed as the steps run."
    )
    parser.add_argument(
        "--rates",
        type=numbers,
        default=defaults.rates,
        help="offered readings/s per step, comma-separated (1000,2500,5000,10000)",
    )
    parser.add_argument(
        "--shapes",
        type=numbers,
        default=defaults.shapes,
        help="readings per MQTT message, comma-separated (1,20)",
    )
    parser.add_argument("--step", type=float, default=defaults.step_s, help="seconds per step (20)")
    parser.add_argument("--sensors", type=int, default=defaults.sensors, help="sensors (500)")
    parser.add_argument(
        "--publishers", type=int, default=defaults.publishers, help="publisher processes (2)"
    )
    parser.add_argument("--no-naive", action="store_true", help="skip the naive sink")
    parser.add_argument("--no-scaling", action="store_true", help="skip 2 bridges/processors")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="py-spy the bridge and processor in each 1b+1p step, into this dir",
    )
    parser.add_argument(
        "--hold",
        type=float,
        default=0.0,
        help="instead: one step this long, printing RSS (memory flatness)",
    )
    parser.add_argument(
        "--hold-rate", type=int, default=defaults.hold_rate, help="readings/s for --hold (4000)"
    )
    args = parser.parse_args(argv)
    return Options(
        rates=args.rates,
        shapes=args.shapes,
        step_s=args.step,
        sensors=args.sensors,
        publishers=args.publishers,
        naive=not args.no_naive,
        scaling=() if args.no_scaling else defaults.scaling,
        profile_dir=args.profile,
        hold_s=args.hold,
        hold_rate=args.hold_rate,
    )


if __name__ == "__main__":
    # SIGTERM (a job runner's stop) ends the run like Ctrl-C: the private stack is taken down
    # (without this its servers outlived the bench).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        sys.exit(asyncio.run(main(parse_args())))
    except KeyboardInterrupt:
        say("interrupted: the private stack is down")
        sys.exit(130)
