"""What Mosquitto's crash-loss bound costs: throughput and broker CPU per autosave setting.

A private Mosquitto per setting (the stack's own config, only the autosave lines changed) takes
QoS 1 readings as fast as one gateway sends them, in two situations: the bridge's persistent
session is offline (every reading is queued, so every save rewrites a growing queue: the worst
case) and online (a subscriber acks each reading, the queue stays short).  Printed: readings/s,
broker CPU seconds and the number of saves.  Nothing is asserted.

    python -m bench.broker_persistence [--readings 20000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.support import say
from urbanpulse.core.settings import IngestSettings
from urbanpulse.stack.services.mosquitto import AUTOSAVE_CHANGES, binary, mosquitto_conf

SETTINGS = {
    "every 1 s (phase 1)": ("1", "false"),
    "after 100 changes": ("100", "true"),
    f"after {AUTOSAVE_CHANGES} changes (shipped)": (
        str(AUTOSAVE_CHANGES),
        "true",
    ),
    "after 10000 changes": ("10000", "true"),
}
WINDOW = 10_000
INGEST = IngestSettings()  # the broker limits the local stack uses
TOPIC = "bench/v1/air/s1/data"
PAYLOAD = b'{"ts": 1764403200000, "values": {"pm25": 35.2, "pm10": 60.1, "no2": 20.5}}'


def broker_config(port: int, data: Path, interval: str, on_changes: str) -> str:
    conf = mosquitto_conf(
        host="127.0.0.1",
        port=port,
        persistence_dir=data,
        log_file=data / "mosquitto.log",
        run_as="root" if os.geteuid() == 0 else None,
        message_size_limit=INGEST.broker_message_size_limit,
        max_queued_bytes=INGEST.broker_max_queued_bytes,
    )
    lines = [
        f"autosave_interval {interval}"
        if line.startswith("autosave_interval")
        else f"autosave_on_changes {on_changes}"
        if line.startswith("autosave_on_changes")
        else line
        for line in conf.splitlines()
    ]
    return "\n".join(lines) + "\n"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def client(port: int, client_id: str, clean: bool) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def run_one(
    interval: str, on_changes: str, readings: int, online: bool
) -> tuple[float, float, int]:
    data = Path(tempfile.mkdtemp(prefix="urbanpulse-bench-mqtt-"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf = data / "mosquitto.conf"
    conf.write_text(broker_config(port, data, interval, on_changes))
    broker = subprocess.Popen([str(binary()), "-c", str(conf)], stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)  # a bench, not a test: the broker listens within milliseconds
        bridge = client(port, "bench-bridge", clean=False)
        bridge.subscribe("bench/v1/#", qos=1)
        time.sleep(0.3)
        if not online:
            bridge.disconnect()
            bridge.loop_stop()
        # At most WINDOW unacknowledged: paho's message ids wrap at 65,535.
        free = threading.Semaphore(WINDOW)

        def on_publish(*_args: Any) -> None:
            free.release()

        gateway = client(port, "bench-gateway", clean=True)
        gateway.on_publish = on_publish
        cpu0, started = cpu_seconds(broker.pid), time.monotonic()
        for _ in range(readings):
            free.acquire()
            gateway.publish(TOPIC, PAYLOAD, qos=1)
        for _ in range(WINDOW):
            free.acquire()
        elapsed, cpu = time.monotonic() - started, cpu_seconds(broker.pid) - cpu0
        gateway.disconnect()
        gateway.loop_stop()
        if online:
            bridge.disconnect()
            bridge.loop_stop()
        log = (data / "mosquitto.log").read_text(errors="replace")
        return readings / elapsed, cpu, log.count("Saving in-memory database")
    finally:
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readings", type=int, default=20_000, help="readings per run")
    args = parser.parse_args()
    for online in (False, True):
        say(f"bridge session {'online (acking)' if online else 'offline (all queued)'}:")
        for name, (interval, on_changes) in SETTINGS.items():
            rate, cpu, saves = run_one(interval, on_changes, args.readings, online)
            say(f"  save {name:<32} {rate:8.0f} readings/s  broker CPU {cpu:5.2f} s  saves {saves}")


if __name__ == "__main__":
    main()
