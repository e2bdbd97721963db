"""The ingest bridge: MQTT (QoS 1, persistent session) -> Kafka, at least once.

paho's network loop runs in its own thread; ``on_message`` only wraps the message and hands it
to the event loop (``call_soon_threadsafe``).  The hand-off is bounded by a semaphore of free
slots: when all are taken paho's thread waits, acks stop, and the broker holds further messages
back (it never drops QoS 1 for a persistent session).

Each MQTT message is acknowledged only after Kafka has acknowledged every record made from it
(readings and, for bad input, its dead letter).  A crash before that makes the broker redeliver the
message to the next bridge; the duplicate records this can cause are absorbed by the database's
idempotent writes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from paho.mqtt.enums import CallbackAPIVersion

from urbanpulse.core.envelope import DEADLETTER_SCHEMA, READING_SCHEMA, DeadLetter
from urbanpulse.core.logs import fields, report_counters
from urbanpulse.core.settings import Settings
from urbanpulse.heartbeat import bridge_heartbeats
from urbanpulse.ingest.decode import DecodeRules, decode_message

log = logging.getLogger(__name__)

RETRY_DELAY_S = 1.0


@dataclass(frozen=True)
class IncomingMessage:
    topic: str
    payload: bytes
    mid: int
    qos: int
    received_at: datetime


@dataclass(frozen=True)
class OutgoingRecord:
    topic: str
    value: bytes
    key: bytes | None
    headers: list[tuple[str, bytes]]


@dataclass
class BridgeCounters:
    messages: int = 0
    readings: int = 0
    dead_letters: int = 0
    status_messages: int = 0
    ignored_attributes: int = 0  # FIWARE attributes the catalogue does not hold
    kafka_retries: int = 0


class MqttBridge:
    def __init__(self, settings: Settings, producer: AIOKafkaProducer) -> None:
        self._settings = settings
        self._producer = producer
        ingest = settings.ingest
        self._rules = DecodeRules(
            max_payload_bytes=ingest.max_payload_bytes,
            max_future_skew=timedelta(seconds=ingest.max_future_skew_s),
            max_age=timedelta(days=ingest.max_age_days),
            naive_time_zone=ZoneInfo(ingest.naive_time_zone) if ingest.naive_time_zone else None,
        )
        self._readings_topic = settings.kafka.topic("readings")
        self._deadletter_topic = settings.kafka.topic("deadletter")
        self._closing = threading.Event()
        # Free places between paho's thread and the event loop (see on_message).
        self._free_slots = threading.BoundedSemaphore(settings.ingest.queue_size)
        self.connected = asyncio.Event()
        self.counters = BridgeCounters()
        self.last_ack_at: datetime | None = None  # heartbeats report it (urbanpulse.heartbeat)

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[IncomingMessage] = asyncio.Queue()  # bounded by _free_slots
        client = self._connect(loop, queue)
        pending: set[asyncio.Task[None]] = set()
        consumer = asyncio.create_task(self._consume(client, queue, pending, stop))
        stopper = asyncio.create_task(stop.wait())
        reporter = asyncio.create_task(report_counters(log, "bridge", self.counters))
        heartbeat = asyncio.create_task(bridge_heartbeats(self._settings, self._producer, self))
        try:
            await asyncio.wait({consumer, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if consumer.done():
                consumer.result()  # re-raises what killed the consumer loop
        finally:
            consumer.cancel()
            stopper.cancel()
            reporter.cancel()
            heartbeat.cancel()
            if pending:
                log.info("bridge stopping: waiting for %d messages in flight", len(pending))
                await asyncio.wait(pending, timeout=10)
            self._closing.set()
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)
            log.info("bridge stopped", extra=fields(**vars(self.counters)))

    async def _consume(
        self,
        client: mqtt.Client,
        queue: asyncio.Queue[IncomingMessage],
        pending: set[asyncio.Task[None]],
        stop: asyncio.Event,
    ) -> None:
        while True:
            message = await queue.get()
            self._free_slots.release()
            # Records reach the producer in arrival order (keeping each sensor's order within
            # its partition); waiting for Kafka's acks happens concurrently.
            records = self._records_for(message)
            sent = await self._send_all(records)
            task = asyncio.create_task(self._ack_after_kafka(client, message, records, sent, stop))
            pending.add(task)
            task.add_done_callback(pending.discard)

    def _connect(
        self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[IncomingMessage]
    ) -> mqtt.Client:
        cfg = self._settings.mqtt
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=cfg.bridge_client_id,
            clean_session=False,
            manual_ack=True,
        )
        if cfg.username:
            password = cfg.password.get_secret_value() if cfg.password else None
            client.username_pw_set(cfg.username, password)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        subscription = f"{cfg.topic_root}/#"

        def on_connect(client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if reason.is_failure:
                log.error("MQTT connection refused: %s", reason)
                return
            # Subscribe on every (re)connect: a broker that lost our session must relearn it.
            client.subscribe(subscription, qos=1)
            log.info(
                "bridge connected to MQTT %s:%s, subscribed to %s", cfg.host, cfg.port, subscription
            )
            loop.call_soon_threadsafe(self.connected.set)

        def on_disconnect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            loop.call_soon_threadsafe(self.connected.clear)
            if not self._closing.is_set():
                log.warning("MQTT connection lost (%s); paho reconnects with backoff", reason)

        def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            item = IncomingMessage(
                msg.topic, bytes(msg.payload), msg.mid, msg.qos, datetime.now(UTC)
            )
            # No free slot: hold paho back (the broker keeps the messages) until one frees up.
            while not self._free_slots.acquire(timeout=1.0):
                if self._closing.is_set():
                    return  # not acked: the broker redelivers it to the next bridge
            loop.call_soon_threadsafe(queue.put_nowait, item)

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_message = on_message
        client.connect_async(cfg.host, cfg.port, keepalive=30)
        client.loop_start()
        return client

    async def _send_all(self, records: list[OutgoingRecord]) -> list[asyncio.Future[Any]]:
        """Hand records to the producer, retrying while Kafka is unreachable."""
        while True:
            try:
                return [
                    await self._producer.send(r.topic, r.value, key=r.key, headers=r.headers)
                    for r in records
                ]
            except KafkaError as exc:
                await self._before_retry(exc)

    async def _ack_after_kafka(
        self,
        client: mqtt.Client,
        message: IncomingMessage,
        records: list[OutgoingRecord],
        sent: list[asyncio.Future[Any]],
        stop: asyncio.Event,
    ) -> None:
        while True:
            try:
                await asyncio.gather(*sent)
                break
            except KafkaError as exc:
                if stop.is_set():
                    log.warning("not acking MQTT message %s: Kafka failed at shutdown", message.mid)
                    return  # the broker redelivers it to the next bridge
                await self._before_retry(exc)
                sent = await self._send_all(records)
        client.ack(message.mid, message.qos)
        self.last_ack_at = datetime.now(UTC)

    async def _before_retry(self, exc: KafkaError) -> None:
        self.counters.kafka_retries += 1
        log.warning("Kafka produce failed (%r); retrying in %.0fs", exc, RETRY_DELAY_S)
        await asyncio.sleep(RETRY_DELAY_S)

    def _records_for(self, message: IncomingMessage) -> list[OutgoingRecord]:
        self.counters.messages += 1
        decoded = decode_message(
            self._settings.mqtt.topic_root,
            message.topic,
            message.payload,
            message.received_at,
            self._rules,
        )
        if decoded is None:
            self.counters.status_messages += 1
            return []
        records = [
            OutgoingRecord(
                self._readings_topic,
                reading.to_json(),
                reading.sensor_id.encode(),
                [("schema", READING_SCHEMA)],
            )
            for reading in decoded.readings
        ]
        self.counters.readings += len(decoded.readings)
        if decoded.ignored:
            self.counters.ignored_attributes += len(decoded.ignored)
            log.debug("ignored attributes on %s: %s", message.topic, decoded.ignored)
        if decoded.problems:
            self.counters.dead_letters += 1
            dead = DeadLetter(
                tuple(decoded.problems),
                message.topic,
                "ingest",
                message.payload,
                message.received_at,
            )
            log.warning("dead-lettered message on %s: %s", message.topic, dead.reason[:300])
            records.append(
                OutgoingRecord(
                    self._deadletter_topic, dead.to_json(), None, [("schema", DEADLETTER_SCHEMA)]
                )
            )
        return records
