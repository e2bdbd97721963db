"""The MQTT side of the bridge: paho as an async source of messages, each acked explicitly.

paho's network loop runs in its own thread.  ``on_message`` only wraps the message, takes room
for it in the :class:`HandOff` and appends it to a queue; the event loop is woken once for all
that arrived meanwhile, not once per message, and takes them as one batch.  A message is acked
(PUBACK) only when its consumer calls :meth:`MqttSource.ack`; until then the broker keeps it in
this client's session and sends it again if the connection is lost.

The session is an MQTT 5 persistent one (clean start off, a session expiry interval) with a
client id of its own per bridge instance, subscribed through the shared subscription
``$share/<group>/<topic_root>/#``: the broker hands each message to one member of the group.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from urbanpulse.core.mqtt_login import Identity, broker_port, new_client
from urbanpulse.core.settings import MqttSettings
from urbanpulse.ingest.handoff import HandOff

log = logging.getLogger(__name__)

MAX_BATCH = 256  # messages per batch: bounds how long one batch holds the event loop
RECEIVE_MAXIMUM_LIMIT = 65_535  # the largest value MQTT 5 allows


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    topic: str
    payload: bytes
    mid: int
    qos: int
    received_at: datetime


class MqttSource:
    """``async with source: async for batch in source: ... source.ack(message)``."""

    def __init__(self, settings: MqttSettings, handoff: HandOff, receive_maximum: int) -> None:
        self._settings = settings
        self._handoff = handoff
        # Unacked messages the broker may send us at once (MQTT 5 Receive Maximum).
        self._receive_maximum = max(1, min(receive_maximum, RECEIVE_MAXIMUM_LIMIT))
        self._arrived: collections.deque[IncomingMessage] = collections.deque()
        self._woken = False  # a wake-up is scheduled and the queue not yet taken
        self._wakeup = asyncio.Event()
        self._closing = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: mqtt.Client | None = None
        self.connected = asyncio.Event()  # subscribed: the broker routes messages to us

    async def __aenter__(self) -> MqttSource:
        self._loop = asyncio.get_running_loop()
        self._client = self._new_client()
        cfg = self._settings
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = cfg.bridge_session_expiry_s
        properties.ReceiveMaximum = self._receive_maximum
        self._client.connect_async(
            cfg.host, broker_port(cfg), keepalive=30, clean_start=False, properties=properties
        )
        self._client.loop_start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._closing.set()
        client = self._require_client()
        client.disconnect()
        await asyncio.to_thread(client.loop_stop)

    def __aiter__(self) -> MqttSource:
        return self

    async def __anext__(self) -> list[IncomingMessage]:
        """The messages that arrived since the last batch (at most MAX_BATCH), in order."""
        while True:
            await self._wakeup.wait()
            # Cleared before taking: a message appended from now on schedules a new wake-up.
            self._wakeup.clear()
            self._woken = False
            arrived = self._arrived
            batch = [arrived.popleft() for _ in range(min(len(arrived), MAX_BATCH))]
            if arrived:
                self._wake()  # the rest makes the next batch
            if batch:
                return batch

    def ack(self, message: IncomingMessage) -> None:
        """Acknowledge a message: the broker forgets it.  Gives back its room."""
        self._require_client().ack(message.mid, message.qos)
        self._handoff.release(len(message.payload))

    def release(self, message: IncomingMessage) -> None:
        """Give back a message's room without acking it: the broker keeps it in our session
        and sends it again when this client id connects next."""
        self._handoff.release(len(message.payload))

    def _require_client(self) -> mqtt.Client:
        if self._client is None:
            raise RuntimeError("the MQTT source is used outside its `async with` block")
        return self._client

    def _wake(self) -> None:
        self._woken = True
        self._wakeup.set()

    def _new_client(self) -> mqtt.Client:
        cfg = self._settings
        # The bridge's own identity: the only one the broker lets read the readings.
        client = new_client(
            cfg, Identity.BRIDGE, cfg.bridge_client(), protocol=mqtt.MQTTv5, manual_ack=True
        )
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    # paho's callbacks: they run in paho's network thread.

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.error("MQTT connection refused: %s", reason)
            return
        # Subscribe on every (re)connect: a broker that lost our session must relearn it.
        client.subscribe(self._settings.bridge_subscription(), qos=1)
        log.info(
            "bridge %s connected to MQTT %s:%s (session resumed: %s)",
            self._settings.bridge_client(),
            self._settings.host,
            broker_port(self._settings),
            flags.session_present,
        )

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _m: int, reasons: list[Any], _p: Any) -> None:
        subscription = self._settings.bridge_subscription()
        if any(reason.is_failure for reason in reasons):
            log.error("MQTT subscription to %s refused: %s", subscription, reasons)
            return
        # Only now does the broker route messages to us: until then they would be lost.
        log.info("bridge subscribed to %s", subscription)
        self._call_soon(self.connected.set)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self._call_soon(self.connected.clear)
        if not self._closing.is_set():
            log.warning("MQTT connection lost (%s); paho reconnects with backoff", reason)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        item = IncomingMessage(msg.topic, bytes(msg.payload), msg.mid, msg.qos, datetime.now(UTC))
        # No room: hold paho back (the broker keeps the messages) until some frees up.
        while not self._handoff.acquire(len(item.payload), timeout_s=1.0):
            if self._closing.is_set():
                return  # not acked: the broker sends it again
        self._arrived.append(item)
        if not self._woken:
            self._woken = True
            self._call_soon(self._wakeup.set)

    def _call_soon(self, callback: Any) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(callback)
