"""A simulated gateway: publishes readings over MQTT with QoS 1, exactly as field gateways do."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import paho.mqtt.client as mqtt

from urbanpulse.core.mqtt_login import Identity, broker_port, new_client
from urbanpulse.core.settings import MqttSettings
from urbanpulse.simulators.fleet import SimulatedSensor

log = logging.getLogger(__name__)


def data_topic(settings: MqttSettings, kind: str, sensor_id: str) -> str:
    return f"{settings.topic_root}/{kind}/{sensor_id}/data"


def reading_payload(ts: datetime, values: dict[str, float], seq: int | None = None) -> bytes:
    document: dict[str, Any] = {"ts": ts, "values": values}
    if seq is not None:
        document["seq"] = seq
    return orjson.dumps(document, option=orjson.OPT_UTC_Z)


class MqttGateway:
    """A paho client that counts what the broker has acknowledged."""

    def __init__(
        self,
        settings: MqttSettings,
        client_id: str,
        will: tuple[str, bytes] | None = None,
    ) -> None:
        """``will``: (status topic, payload) the broker publishes, retained, if we vanish.

        Disconnections are survived: paho reconnects with exponential backoff (1 s doubling to
        30 s) and QoS 1 messages published meanwhile wait in its queue (unbounded here).
        """
        self._settings = settings
        # The publisher identity (settings.username): simulated readings for any sensor.
        self._client = new_client(settings, Identity.PUBLISHER, client_id)
        if will is not None:
            self._client.will_set(will[0], will[1], qos=1, retain=True)
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._refusal: str | None = None
        self.sent = 0
        self.acked = 0
        self.reconnects = 0
        self._client.on_connect = self._on_connect
        self._client.on_publish = self._on_publish
        self._client.on_disconnect = self._on_disconnect

    def _on_connect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self._refusal = str(reason)
        else:
            if self._connected.is_set():
                self.reconnects += 1
            self._connected.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.warning("MQTT connection lost (%s); reconnecting with backoff", reason)

    def _on_publish(self, _c: mqtt.Client, _u: Any, _mid: int, _rc: Any, _p: Any) -> None:
        with self._lock:
            self.acked += 1

    def connect(self, timeout_s: float = 10.0) -> None:
        port = broker_port(self._settings)
        self._client.connect(self._settings.host, port, keepalive=30)
        self._client.loop_start()
        if not self._connected.wait(timeout_s):
            raise ConnectionError(
                f"MQTT broker {self._settings.host}:{port} did not accept "
                f"{self._settings.username!r} ({self._refusal or 'no answer'})"
            )

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        self._client.publish(topic, payload, qos=qos, retain=retain)
        if qos > 0:
            self.sent += 1

    def close(self, timeout_s: float = 30.0) -> None:
        """Wait until the broker acknowledged everything sent, then disconnect."""
        deadline = time.monotonic() + timeout_s
        while self.acked < self.sent and time.monotonic() < deadline:
            time.sleep(0.02)
        if self.acked < self.sent:
            log.warning("%d messages not acknowledged by the broker", self.sent - self.acked)
        self._client.disconnect()
        self._client.loop_stop()


@dataclass(frozen=True)
class SimulationPlan:
    sensors: Sequence[SimulatedSensor]
    rate: float  # readings per second, across the whole fleet
    count: int | None = None  # stop after this many readings
    duration_s: float | None = None  # or after this long
    seed: int = 1
