"""A gateway that knows which readings the broker accepted, and when.

"Accepted" is what MQTT QoS 1 promises a gateway: the broker sent PUBACK.  paho reports a PUBACK
by message id only (``on_publish``), and ids are reused, so both sides are logged in order and
matched afterwards: the k-th PUBACK of id m belongs to the k-th publish that got id m (an id is
not given out again while it waits for its PUBACK, unless more than 65,535 messages are
outstanding at once).  Fault tests and the soak use it to tell a broker's loss from ours.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from datetime import datetime
from typing import Any

import paho.mqtt.client as mqtt

from urbanpulse.core.mqtt_login import Identity, broker_port, new_client
from urbanpulse.core.settings import MqttSettings

Key = tuple[str, datetime]  # (sensor_id, ts): what the database stores once


class AckedPublisher:
    """A QoS 1 publisher (clean session, unbounded client queue, fast reconnects) with a ledger."""

    def __init__(self, settings: MqttSettings, client_id: str) -> None:
        self._settings = settings
        self._client = new_client(settings, Identity.PUBLISHER, client_id)
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)
        # A restarted broker is back within seconds: do not let the backoff grow to paho's 2 min.
        self._client.reconnect_delay_set(min_delay=1, max_delay=4)
        self._client.on_publish = self._on_publish
        # list.append and deque.append are atomic: no lock, so paho's thread (which calls
        # on_publish holding its own message lock) can never wait on ours.
        self._published: list[tuple[int, Key | None]] = []
        self._pubacks: list[tuple[int, float]] = []

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, _rc: Any, _p: Any) -> None:
        self._pubacks.append((mid, time.time()))

    @property
    def sent(self) -> int:
        return len(self._published)

    @property
    def acked(self) -> int:
        return len(self._pubacks)

    def connect(self) -> None:
        self._client.connect(self._settings.host, broker_port(self._settings), keepalive=10)
        self._client.loop_start()

    def publish(self, topic: str, payload: bytes, key: Key | None = None) -> None:
        """Publish with QoS 1; ``key`` names the reading in the ledger (None: not tracked).

        paho queues the message while the broker is away and sends it again after a reconnect.
        """
        info = self._client.publish(topic, payload, qos=1)
        self._published.append((info.mid, key))

    def close(self, timeout_s: float = 60.0) -> None:
        """Wait until the broker acknowledged everything sent, then disconnect."""
        deadline = time.monotonic() + timeout_s
        while self.acked < self.sent and time.monotonic() < deadline:
            time.sleep(0.05)
        self._client.disconnect()
        self._client.loop_stop()

    def accepted(self) -> dict[Key, float]:
        """Each tracked reading the broker acked, with the wall-clock time its PUBACK arrived.

        Call it once publishing is over (after ``close``): a PUBACK may overtake the ledger's
        record of its publish.
        """
        waiting: dict[int, deque[Key | None]] = defaultdict(deque)
        for mid, key in self._published:
            waiting[mid].append(key)
        acked: dict[Key, float] = {}
        for mid, at in list(self._pubacks):
            key = waiting[mid].popleft()
            if key is not None:
                acked[key] = at
        return acked
