"""The ingest bridge alone: how fast one ``urbanpulse bridge`` process moves readings to Kafka.

    python -m bench.bridge_alone [--readings 60000] [--per-message 20] [--sensors 500]
                                 [--profile prof.txt]

The bridge runs as its own process and the load comes from outside it, so the figures are the
bridge's own.  Steps:

1. start the bridge once so that the broker holds its persistent session, then stop it;
2. a publisher process (paho, QoS 1) puts ``--readings`` readings into the broker, which queues
   them for the bridge's session (``--per-message`` readings per MQTT message, as a batching
   gateway sends them);
3. start the bridge again and time the drain: records arriving on Kafka's readings topic
   (partition end offsets) from the first one to the last, and the CPU seconds the bridge process
   spent meanwhile (from /proc: user + system, all its threads).  The bridge writes a record per
   MQTT message (cut where large): how many records make the whole drain is counted by running
   the bridge's own ``RecordMaker`` over the same messages.

The machine may be shared, so the figure to compare is CPU seconds per 10,000 readings; the
wall-clock rate depends on what else runs.  ``--profile`` samples the bridge with py-spy during
the drain and writes the collapsed stacks (``py-spy record --format raw``) there.

Settings (the stack's servers) come from the environment as for every ``urbanpulse`` command;
the bench uses topics of its own, so it disturbs no other data.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from bench.support import say, stack_ready
from urbanpulse.bus import TopicCounter
from urbanpulse.core.metrics import Metrics
from urbanpulse.core.mqtt_login import Identity, broker_port, new_client
from urbanpulse.core.settings import KafkaPrincipal, MqttSettings, Settings
from urbanpulse.ingest.mqtt_source import IncomingMessage
from urbanpulse.ingest.records import BridgeCounters, RecordMaker
from urbanpulse.simulators.gateway import data_topic

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its threads so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def messages(settings: MqttSettings, readings: int, per_message: int, sensors: int) -> list[Any]:
    """(topic, payload) pairs: ``readings`` distinct (sensor, ts) readings in all."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    out = []
    for first in range(0, readings, per_message):
        sensor = f"{settings.topic_root.split('/')[0]}-{(first // per_message) % sensors:05d}"
        batch = [
            {
                "ts": start + timedelta(seconds=index),
                "values": {"pm25": 12.5 + index % 7, "pm10": 20.0, "co": 0.4},
            }
            for index in range(first, min(first + per_message, readings))
        ]
        document = batch[0] if per_message == 1 else batch
        out.append((data_topic(settings, "air", sensor), orjson.dumps(document)))
    return out


def records_made(settings: Settings, readings: int, per_message: int, sensors: int) -> int:
    """How many Kafka records the bridge makes of the messages ``publish`` sends."""
    maker = RecordMaker(settings, BridgeCounters(Metrics()))
    now = datetime.now(UTC)
    return sum(
        len(maker.records(IncomingMessage(topic, payload, 0, 1, now)))
        for topic, payload in messages(settings.mqtt, readings, per_message, sensors)
    )


def publish(settings: MqttSettings, readings: int, per_message: int, sensors: int) -> None:
    """Run in its own process: publish everything with QoS 1 and wait for the broker's acks."""
    client = new_client(settings, Identity.PUBLISHER, f"{settings.topic_root}-pub")
    client.max_inflight_messages_set(1000)
    acked = threading.Semaphore(0)
    client.on_publish = lambda *_args: acked.release()
    client.connect(settings.host, broker_port(settings))
    client.loop_start()
    sent = messages(settings, readings, per_message, sensors)
    for topic, payload in sent:
        client.publish(topic, payload, qos=1)
    for _ in sent:
        acked.acquire()
    client.disconnect()
    client.loop_stop()


def bridge_process(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "URBANPULSE_MQTT__TOPIC_ROOT": settings.mqtt.topic_root,
        "URBANPULSE_MQTT__BRIDGE_CLIENT_ID": settings.mqtt.bridge_client_id,
        "URBANPULSE_MQTT__SHARE_GROUP": settings.mqtt.share_group,
        "URBANPULSE_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
        "URBANPULSE_LOG_LEVEL": "WARNING",
    }
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "urbanpulse.cli", "bridge"], env=env, stdout=log, stderr=log
        )


async def wait_subscribed(settings: Settings, log_path: Path) -> None:
    """Start the bridge until the broker routes to its session (a probe reaches Kafka)."""
    bridge = bridge_process(settings, log_path)
    probe = new_client(settings.mqtt, Identity.PUBLISHER, f"{settings.mqtt.topic_root}-probe")
    probe.connect(settings.mqtt.host, broker_port(settings.mqtt))
    probe.loop_start()
    topic = data_topic(settings.mqtt, "air", f"{settings.kafka.topic_prefix}-probe")
    payload = orjson.dumps({"ts": datetime.now(UTC) - timedelta(hours=1), "values": {"pm25": 1}})
    try:
        async with TopicCounter(settings.kafka_as(KafkaPrincipal.ADMIN)) as topics:
            deadline = time.monotonic() + 120
            while await topics.total(settings.kafka.topic("readings")) == 0:
                if time.monotonic() > deadline or bridge.poll() is not None:
                    raise SystemExit(f"the bridge never subscribed; see {log_path}")
                probe.publish(topic, payload, qos=1)
                await asyncio.sleep(0.5)
    finally:
        probe.disconnect()
        probe.loop_stop()
        bridge.terminate()
        bridge.wait(30)


async def drain(
    settings: Settings, log_path: Path, expected: int, profile: Path | None
) -> tuple[int, float, float]:
    """Start the bridge on the queued backlog until ``expected`` records arrived: (records
    timed, seconds, bridge CPU seconds)."""
    readings_topic = settings.kafka.topic("readings")
    async with TopicCounter(settings.kafka_as(KafkaPrincipal.ADMIN)) as topics:
        before = await topics.total(readings_topic)
        bridge = bridge_process(settings, log_path)
        spy = None
        try:
            while (first := await topics.total(readings_topic)) == before:
                await asyncio.sleep(0.05)
            began, cpu_began = time.perf_counter(), cpu_seconds(bridge.pid)
            if profile is not None:
                py_spy = str(Path(sys.executable).with_name("py-spy"))
                spy = subprocess.Popen(
                    [
                        py_spy,
                        "record",
                        "--pid",
                        str(bridge.pid),
                        "--threads",
                        "--rate",
                        "200",
                        "--format",
                        "raw",
                        "--output",
                        str(profile),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            total = first
            while total < before + expected:
                await asyncio.sleep(0.05)
                total = await topics.total(readings_topic)
            seconds, cpu = time.perf_counter() - began, cpu_seconds(bridge.pid) - cpu_began
        finally:
            if spy is not None:
                spy.send_signal(2)  # SIGINT: py-spy writes its output and exits
                spy.wait(60)
            bridge.terminate()
            bridge.wait(30)
    return total - first, seconds, cpu


async def main(args: argparse.Namespace) -> None:
    name = f"bb{uuid.uuid4().hex[:8]}"
    settings = Settings().isolated(name)
    settings = await stack_ready(settings)
    log_path = Path(f"/tmp/{name}-bridge.log")
    await wait_subscribed(settings, log_path)

    began = time.perf_counter()
    publisher = multiprocessing.get_context("spawn").Process(
        target=publish, args=(settings.mqtt, args.readings, args.per_message, args.sensors)
    )
    publisher.start()
    await asyncio.to_thread(publisher.join)
    say(
        f"queued {args.readings} readings ({args.per_message} per message) for the bridge in "
        f"{time.perf_counter() - began:.1f}s"
    )
    records = records_made(settings, args.readings, args.per_message, args.sensors)
    timed_records, seconds, cpu = await drain(settings, log_path, records, args.profile)
    timed = round(timed_records * args.readings / records)  # from the first record's arrival
    say(
        f"bridge alone: {timed} readings in {seconds:.2f}s -> {timed / seconds:,.0f} readings/s; "
        f"bridge CPU {cpu:.2f}s -> {cpu / timed * 10_000:.2f} CPU s per 10,000 readings "
        f"(log: {log_path})"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readings", type=int, default=60_000, help="readings to move")
    parser.add_argument(
        "--per-message", type=int, default=20, help="readings per MQTT message (1 or a batch)"
    )
    parser.add_argument("--sensors", type=int, default=500, help="distinct sensors (topics)")
    parser.add_argument(
        "--profile", type=Path, default=None, help="write py-spy collapsed stacks of the drain"
    )
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
