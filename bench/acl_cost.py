"""What authentication and one ACL entry per topic cost the broker: QoS 1 publish rate and broker
CPU of a gateway with N bound sensors (2 N exact ACL entries), of the publisher identity (one
wildcard entry), and of an anonymous client on an open broker (no plugin), on private brokers.

    python -m bench.acl_cost [--sensors 1000] [--readings 20000]

Each client publishes round-robin over its N sensors' data topics with up to WINDOW messages
unacknowledged, and waits for every PUBACK.  Nothing subscribes: the figure is the broker's
work at the door (authorisation, then routing to no one).
"""

from __future__ import annotations

import argparse
import json
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
from pydantic import SecretStr

from bench.support import say
from urbanpulse.core.settings import IngestSettings, MqttSettings
from urbanpulse.gateways import broker as broker_admin
from urbanpulse.gateways.acl import BoundSensor, bootstrap_config, gateway_acls
from urbanpulse.stack.dev_tls import CertificatePair, ensure_ca, issue_server_certificate
from urbanpulse.stack.services.mosquitto import (
    BrokerSecurity,
    binary,
    dynsec_plugin,
    mosquitto_conf,
)

WINDOW = 1000
INGEST = IngestSettings()
PAYLOAD = b'{"ts": 1764403200000, "values": {"pm25": 35.2, "pm10": 60.1, "no2": 20.5}}'
GATEWAY = "bench-gw"
# Throwaway passwords of a private broker that lives for one run.
PASSWORDS = {"admin": "bench-admin", "bridge": "bench-bridge", "publisher": "bench-publisher"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Broker:
    """A private Mosquitto with the stack's configuration, secured or open."""

    def __init__(self, secured: bool) -> None:
        self.data = Path(tempfile.mkdtemp(prefix="urbanpulse-bench-acl-"))
        os.chmod(self.data, 0o755)
        self.port = free_port()
        self.settings = MqttSettings(
            port=self.port,
            topic_root="bench/v1",
            password=SecretStr(PASSWORDS["publisher"]),
            bridge_password=SecretStr(PASSWORDS["bridge"]),
            admin_password=SecretStr(PASSWORDS["admin"]),
        )
        security = self._security() if secured else None
        conf = self.data / "mosquitto.conf"
        conf.write_text(
            mosquitto_conf(
                host="127.0.0.1",
                port=self.port,
                persistence_dir=self.data,
                log_file=self.data / "mosquitto.log",
                run_as="root" if os.geteuid() == 0 else None,
                message_size_limit=INGEST.broker_message_size_limit,
                max_queued_bytes=INGEST.broker_max_queued_bytes,
                security=security,
            )
        )
        self.process = subprocess.Popen([str(binary()), "-c", str(conf)], stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # a bench, not a test: the broker listens within milliseconds

    def _security(self) -> BrokerSecurity:
        cfg = self.settings
        passwords = {
            cfg.admin_username: PASSWORDS["admin"],
            cfg.bridge_username: PASSWORDS["bridge"],
            cfg.username: PASSWORDS["publisher"],
        }
        dynsec = self.data / "dynamic-security.json"
        dynsec.write_text(json.dumps(bootstrap_config(cfg, passwords)))
        cert = CertificatePair(self.data / "server.crt", self.data / "server.key")
        issue_server_certificate(ensure_ca(self.data / "tls"), cert, ["127.0.0.1"])
        return BrokerSecurity(dynsec_plugin(), dynsec, free_port(), cert)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        shutil.rmtree(self.data, ignore_errors=True)


def publish_all(
    broker: Broker, login: tuple[str, str] | None, client_id: str, topics: list[str], n: int
) -> tuple[float, float]:
    """Readings per second and broker CPU seconds for ``n`` QoS 1 readings over ``topics``."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    if login is not None:
        client.username_pw_set(*login)
    client.max_inflight_messages_set(WINDOW)
    client.max_queued_messages_set(0)
    free = threading.Semaphore(WINDOW)

    def on_publish(*_args: Any) -> None:
        free.release()

    client.on_publish = on_publish
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    cpu0, started = cpu_seconds(broker.process.pid), time.monotonic()
    for index in range(n):
        free.acquire()
        client.publish(topics[index % len(topics)], PAYLOAD, qos=1)
    for _ in range(WINDOW):
        free.acquire()
    elapsed = time.monotonic() - started
    cpu = cpu_seconds(broker.process.pid) - cpu0
    client.disconnect()
    client.loop_stop()
    return n / elapsed, cpu


def report(case: str, rate: float, cpu: float) -> None:
    say(f"  {case:<38} {rate:8.0f} readings/s  broker CPU {cpu:5.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sensors", type=int, default=1000, help="sensors bound to the gateway")
    parser.add_argument("--readings", type=int, default=20_000, help="readings per client")
    args = parser.parse_args()
    sensors = [BoundSensor(f"bench-{i:05d}", "air") for i in range(args.sensors)]
    say(f"{args.readings} QoS 1 readings round-robin over {args.sensors} sensors' topics:")

    open_broker = Broker(secured=False)
    try:
        topics = [f"bench/v1/air/{s.sensor_id}/data" for s in sensors]
        rate, cpu = publish_all(open_broker, None, "bench-anon", topics, args.readings)
        report("anonymous, open broker (no plugin)", rate, cpu)
    finally:
        open_broker.close()

    secured = Broker(secured=True)
    try:
        cfg = secured.settings
        password = "bench-gateway-password"
        broker_admin.execute(cfg, broker_admin.create_gateway_commands(GATEWAY, None, password))
        acls = gateway_acls(cfg.topic_root, sensors)
        broker_admin.execute(cfg, broker_admin.add_acl_commands(GATEWAY, acls), timeout_s=60)
        topics = [f"bench/v1/air/{s.sensor_id}/data" for s in sensors]
        login = (GATEWAY, password)
        rate, cpu = publish_all(secured, login, GATEWAY, topics, args.readings)
        report(f"gateway, {len(acls)} exact ACL entries", rate, cpu)
        publisher = (cfg.username, PASSWORDS["publisher"])
        rate, cpu = publish_all(secured, publisher, "bench-publisher", topics, args.readings)
        report("publisher, one wildcard ACL entry", rate, cpu)
    finally:
        secured.close()


if __name__ == "__main__":
    main()
