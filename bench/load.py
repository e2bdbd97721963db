"""Paced gateways in processes of their own: the outside load of ``bench.stepped``.

Each process is one paho client publishing QoS 1 (as a gateway does) at a fixed rate of
messages, one reading or a batch of ``per_message`` readings of one sensor each, and waits for
the broker's acks before it reports.  The load is split over several processes so that the
publisher is not what limits the rate.  Every (sensor, ts) is distinct, so the rows stored can
be counted against the readings sent.

Only paho and orjson are imported here: a spawned process starts in a fraction of a second.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

TICK_S = 0.005  # pacing granularity
ACK_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class LoadPlan:
    """What one publisher process sends: ``messages`` messages over ``duration_s`` seconds,
    round-robin over ``topics`` (one per sensor), event time from ``first_ts`` on."""

    host: str
    port: int
    username: str  # the publisher identity (core.mqtt_login), resolved by the parent process
    password: str
    client_id: str
    topics: tuple[str, ...]
    messages: int
    per_message: int
    duration_s: float
    first_ts: datetime


@dataclass(frozen=True)
class LoadResult:
    messages: int
    readings: int
    started: float  # wall clock of the first publish
    published: float  # wall clock of the last publish
    acked: float  # wall clock of the last PUBACK
    unacked: int
    cpu_s: float  # the publisher's own CPU time


def payload(plan: LoadPlan, index: int) -> bytes:
    """Message ``index``: ``per_message`` readings of its sensor, one second apart."""
    first = (index // len(plan.topics)) * plan.per_message
    readings = [
        {
            "ts": (plan.first_ts + timedelta(seconds=first + i)).isoformat(),
            "values": {"pm25": 10.0 + (index + i) % 40, "pm10": 20.0, "co": 0.4},
        }
        for i in range(plan.per_message)
    ]
    return orjson.dumps(readings[0] if plan.per_message == 1 else readings)


def publish(
    plan: LoadPlan,
    ready: multiprocessing.synchronize.Barrier,
    results: multiprocessing.Queue[LoadResult],
) -> None:
    """The body of a publisher process: connect, wait at ``ready`` for the others, publish."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=plan.client_id)
    client.username_pw_set(plan.username, plan.password)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    acks = [0, 0.0]
    lock = threading.Lock()

    def on_publish(*_args: Any) -> None:
        with lock:
            acks[0] += 1
            acks[1] = time.time()

    client.on_publish = on_publish
    client.connect(plan.host, plan.port, keepalive=30)
    client.loop_start()
    ready.wait()
    started, cpu_began = time.time(), time.process_time()
    began, sent = time.monotonic(), 0
    while sent < plan.messages:
        elapsed = time.monotonic() - began
        due = min(plan.messages, 1 + int(elapsed / plan.duration_s * plan.messages))
        for index in range(sent, due):
            client.publish(plan.topics[index % len(plan.topics)], payload(plan, index), qos=1)
        sent = due
        time.sleep(TICK_S)
    published = time.time()
    deadline = time.monotonic() + ACK_TIMEOUT_S
    while acks[0] < sent and time.monotonic() < deadline:
        time.sleep(0.01)
    client.disconnect()
    client.loop_stop()
    results.put(
        LoadResult(
            sent,
            sent * plan.per_message,
            started,
            published,
            float(acks[1]),
            sent - int(acks[0]),
            time.process_time() - cpu_began,
        )
    )


def run_load(plans: list[LoadPlan], started: Callable[[], object]) -> list[LoadResult]:
    """Publish every plan from a process of its own, all starting together (``started`` is
    called then); their results once the broker acked everything."""
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(len(plans) + 1)
    results: multiprocessing.Queue[LoadResult] = context.Queue()
    processes = [context.Process(target=publish, args=(p, ready, results)) for p in plans]
    for process in processes:
        process.start()
    ready.wait()
    started()
    out: list[LoadResult] = []
    while len(out) < len(plans):
        try:
            out.append(results.get(timeout=1.0))
        except queue.Empty:
            if any(p.exitcode not in (None, 0) for p in processes):
                raise RuntimeError("a publisher process failed; see its traceback above") from None
    for process in processes:
        process.join(30)
    return out
