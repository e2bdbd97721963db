"""The ingest bridge: MQTT (QoS 1, persistent session) -> Kafka, at least once.

paho's network loop runs in its own thread; ``on_message`` only wraps the message and hands it
to the event loop (``call_soon_threadsafe``) through a bounded :class:`HandOff`.

No single message can stop the bridge: whatever decoding one message throws becomes that
message's dead letter; dead letters are bounded in size (``DeadLetter.to_json``) and capped in
rate per source (``deadletters.py``); a record Kafka refuses for good is replaced by a small
dead letter instead of being retried forever.

Each MQTT message is acknowledged only after Kafka has acknowledged every record made from it
(readings and, for bad input, its dead letter).  A crash before that makes the broker redeliver the
message to the next bridge; the duplicate records this can cause are absorbed by the database's
idempotent writes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    CorruptRecordException,
    InvalidTimestampError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
)
from paho.mqtt.enums import CallbackAPIVersion

from urbanpulse.core import metrics as m
from urbanpulse.core.envelope import (
    DEADLETTER_SCHEMA,
    READING_SCHEMA,
    DeadLetter,
    DeadLetterLimits,
)
from urbanpulse.core.logs import fields, report_counters
from urbanpulse.core.settings import Settings
from urbanpulse.core.untrusted import preview
from urbanpulse.ingest.deadletters import DeadLetterGate, RateCap
from urbanpulse.ingest.decode import DecodeRules, Rejection, decode_message
from urbanpulse.ingest.handoff import HandOff

log = logging.getLogger(__name__)

RETRY_DELAY_S = 1.0

# Kafka errors come in two families, told apart here.
# - Transient: the cluster is unreachable, a leader moves, a request times out (everything
#   aiokafka marks retriable, and any error not known to be about the record itself).  The
#   same record will be accepted later: retry it, in order, and do not ack the MQTT message.
# - Permanent for the record: these errors are properties of the record (its size, its
#   encoding, its timestamp), so retrying can never succeed and would stop all ingest behind
#   it.  The record is replaced by a small dead letter saying so, and the message is acked.
RECORD_REFUSED = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    CorruptRecordException,
    InvalidTimestampError,
)
# The dead letter that replaces a refused record keeps only the start of the payload.
REFUSED_LIMITS = DeadLetterLimits(raw_prefix_bytes=1024, max_reasons=5)


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
    replaces_refused: bool = False  # the dead letter of a record Kafka refused for good


class BridgeCounters(m.CounterView):
    """The bridge's numbers by name, kept in its metrics (``/metrics``, log lines, tests)."""

    def __init__(self, metrics: m.Metrics) -> None:
        ingest = {"stage": "ingest"}
        super().__init__(
            metrics,
            {
                "messages": m.Series(m.INGEST_MESSAGES),
                "readings": m.Series(m.INGEST_READINGS),
                "dead_letters": m.Series(m.INGEST_DEAD_LETTERS_PRODUCED),
                "status_messages": m.Series(m.INGEST_STATUS_MESSAGES),
                "ignored_attributes": m.Series(m.INGEST_IGNORED_ATTRIBUTES),
                "kafka_retries": m.Series(m.INGEST_KAFKA_RETRIES),
                # Rejected messages by class (decode.Rejection), whether dead-lettered or capped.
                **{
                    f"rejected_{r.value}": m.Series(m.DEAD_LETTERS, {**ingest, "reason": r.value})
                    for r in Rejection
                },
                "dead_letters_capped": m.Series(m.INGEST_DEAD_LETTERS_CAPPED),
                # Records Kafka refused for good, replaced by a dead letter.
                "kafka_refused": m.Series(m.DEAD_LETTERS, {**ingest, "reason": "kafka_refused"}),
                "kafka_dropped": m.Series(m.INGEST_KAFKA_DROPPED),
            },
        )

    def count_rejection(self, rejection: Rejection) -> None:
        self.metrics.inc(m.DEAD_LETTERS, stage="ingest", reason=rejection.value)


class _NotAcked(Exception):
    """Kafka failed while the bridge stops: leave the MQTT message unacked."""


class MqttBridge:
    def __init__(self, settings: Settings, producer: AIOKafkaProducer) -> None:
        self._settings = settings
        self._producer = producer
        ingest = settings.ingest
        self._rules = DecodeRules(
            max_payload_bytes=ingest.max_payload_bytes,
            max_readings=ingest.max_readings_per_message,
            max_depth=ingest.max_nesting_depth,
            max_future_skew=timedelta(seconds=ingest.max_future_skew_s),
            max_age=timedelta(days=ingest.max_age_days),
            naive_time_zone=ZoneInfo(ingest.naive_time_zone) if ingest.naive_time_zone else None,
        )
        self._dead_letter_limits = ingest.dead_letter_limits()
        self._rate_cap = RateCap(
            per_source=ingest.dead_letter_rate_per_source,
            total=ingest.dead_letter_rate_total,
            interval_s=ingest.dead_letter_rate_interval_s,
        )
        self._gate = DeadLetterGate(self._rate_cap, time.monotonic())
        self._readings_topic = settings.kafka.topic("readings")
        self._deadletter_topic = settings.kafka.topic("deadletter")
        self._closing = threading.Event()
        self._handoff = HandOff(ingest.queue_size, ingest.max_queued_bytes)
        self.connected = asyncio.Event()
        self.metrics = m.Metrics()
        self.counters = BridgeCounters(self.metrics)

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[IncomingMessage] = asyncio.Queue()  # bounded by _handoff
        client = self._connect(loop, queue)
        pending: set[asyncio.Task[None]] = set()
        consumer = asyncio.create_task(self._consume(client, queue, pending, stop))
        stopper = asyncio.create_task(stop.wait())
        reporters = [
            asyncio.create_task(report_counters(log, "bridge", self.counters)),
            asyncio.create_task(self._report_capped()),
        ]
        try:
            await asyncio.wait({consumer, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if consumer.done():
                consumer.result()  # re-raises what killed the consumer loop
        finally:
            consumer.cancel()
            stopper.cancel()
            for reporter in reporters:
                reporter.cancel()
            if pending:
                log.info("bridge stopping: waiting for %d messages in flight", len(pending))
                await asyncio.wait(pending, timeout=10)
            self._closing.set()
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)
            self._log_capped()
            log.info("bridge stopped", extra=fields(**self.counters.snapshot()))

    async def _consume(
        self,
        client: mqtt.Client,
        queue: asyncio.Queue[IncomingMessage],
        pending: set[asyncio.Task[None]],
        stop: asyncio.Event,
    ) -> None:
        while True:
            message = await queue.get()
            # Records reach the producer in arrival order (keeping each sensor's order within
            # its partition); waiting for Kafka's acks happens concurrently.
            records = self._contained_records(message)
            sent = await self._send_all(records, message)
            task = asyncio.create_task(self._ack_after_kafka(client, message, sent, stop))
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
            log.info("bridge connected to MQTT %s:%s", cfg.host, cfg.port)

        def on_subscribe(_c: mqtt.Client, _u: Any, _m: int, reasons: list[Any], _p: Any) -> None:
            if any(reason.is_failure for reason in reasons):
                log.error("MQTT subscription to %s refused: %s", subscription, reasons)
                return
            # Only now does the broker route messages to us: until then they would be lost.
            log.info("bridge subscribed to %s", subscription)
            loop.call_soon_threadsafe(self.connected.set)

        def on_disconnect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            loop.call_soon_threadsafe(self.connected.clear)
            if not self._closing.is_set():
                log.warning("MQTT connection lost (%s); paho reconnects with backoff", reason)

        def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            item = IncomingMessage(
                msg.topic, bytes(msg.payload), msg.mid, msg.qos, datetime.now(UTC)
            )
            # No room: hold paho back (the broker keeps the messages) until some frees up.
            while not self._handoff.acquire(len(item.payload), timeout_s=1.0):
                if self._closing.is_set():
                    return  # not acked: the broker redelivers it to the next bridge
            loop.call_soon_threadsafe(queue.put_nowait, item)

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_disconnect = on_disconnect
        client.on_message = on_message
        client.connect_async(cfg.host, cfg.port, keepalive=30)
        client.loop_start()
        return client

    async def _send_all(
        self, records: list[OutgoingRecord], message: IncomingMessage
    ) -> list[tuple[OutgoingRecord, asyncio.Future[Any]]]:
        """Hand records to the producer, in order; see RECORD_REFUSED for what is retried."""
        sent = []
        for record in records:
            while True:
                try:
                    future = await self._producer.send(
                        record.topic, record.value, key=record.key, headers=record.headers
                    )
                except RECORD_REFUSED as exc:
                    replacement = self._replace_refused(record, message, exc)
                    if replacement is None:
                        break
                    record = replacement
                except KafkaError as exc:
                    await self._before_retry(exc)
                else:
                    sent.append((record, future))
                    break
        return sent

    async def _ack_after_kafka(
        self,
        client: mqtt.Client,
        message: IncomingMessage,
        sent: list[tuple[OutgoingRecord, asyncio.Future[Any]]],
        stop: asyncio.Event,
    ) -> None:
        try:
            while sent:
                sent = await self._resend_failed(message, sent, stop)
            client.ack(message.mid, message.qos)
        except _NotAcked:
            log.warning("not acking MQTT message %s: Kafka failed at shutdown", message.mid)
            # the broker redelivers it to the next bridge
        finally:
            # The message's room is held until Kafka answered for all its records, so that the
            # byte budget bounds what the bridge holds in memory, not only what waits in line.
            self._handoff.release(len(message.payload))

    async def _resend_failed(
        self,
        message: IncomingMessage,
        sent: list[tuple[OutgoingRecord, asyncio.Future[Any]]],
        stop: asyncio.Event,
    ) -> list[tuple[OutgoingRecord, asyncio.Future[Any]]]:
        """Wait for Kafka's answers; send again what failed (see RECORD_REFUSED)."""
        results = await asyncio.gather(*(future for _, future in sent), return_exceptions=True)
        again: list[OutgoingRecord] = []
        transient: KafkaError | None = None
        for (record, _), result in zip(sent, results, strict=True):
            if isinstance(result, RECORD_REFUSED):
                replacement = self._replace_refused(record, message, result)
                again += [replacement] if replacement is not None else []
            elif isinstance(result, KafkaError):
                again.append(record)
                transient = result
            elif isinstance(result, BaseException):
                raise result  # not Kafka's answer: a bug, not something to retry
        if transient is not None:
            if stop.is_set():
                raise _NotAcked
            await self._before_retry(transient)
        return await self._send_all(again, message)

    async def _before_retry(self, exc: KafkaError) -> None:
        self.counters.kafka_retries += 1
        log.warning("Kafka produce failed (%r); retrying in %.0fs", exc, RETRY_DELAY_S)
        await asyncio.sleep(RETRY_DELAY_S)

    def _replace_refused(
        self, record: OutgoingRecord, message: IncomingMessage, exc: KafkaError
    ) -> OutgoingRecord | None:
        """The small dead letter that stands for a record Kafka refused for good, if any."""
        if record.replaces_refused:
            self.counters.kafka_dropped += 1
            log.error(
                "Kafka refused even the dead letter of a refused record from %s (%r); dropped",
                preview(message.topic),
                exc,
            )
            return None
        self.counters.kafka_refused += 1
        reason = f"Kafka refused the record for {record.topic} for good: {exc!r}"
        log.error("%s (message on %s)", reason, preview(message.topic))
        replacement = self._dead_letter_records(
            message, [reason], REFUSED_LIMITS, replaces_refused=True
        )
        return replacement[0] if replacement else None

    def _contained_records(self, message: IncomingMessage) -> list[OutgoingRecord]:
        """The records of one message.  Whatever decoding it throws becomes the message's dead
        letter: one poison pill must never stop the loop, nor crash the bridge into a loop of
        redeliveries of the same message."""
        self.counters.messages += 1
        try:
            return self._records_for(message)
        except Exception as exc:
            self.counters.count_rejection(Rejection.CRASH)
            log.error("decoding a message on %s failed", preview(message.topic), exc_info=True)
            reason = f"internal error while decoding: {type(exc).__name__} {preview(exc.args)}"
            return self._dead_letter_records(message, [reason], self._dead_letter_limits)

    def _records_for(self, message: IncomingMessage) -> list[OutgoingRecord]:
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
            log.debug(
                "ignored attributes on %s: %s", preview(message.topic), preview(decoded.ignored)
            )
        if decoded.problems:
            self.counters.count_rejection(decoded.rejection)
            records += self._dead_letter_records(
                message, decoded.problems, self._dead_letter_limits
            )
        return records

    def _dead_letter_records(
        self,
        message: IncomingMessage,
        problems: list[str],
        limits: DeadLetterLimits,
        *,
        replaces_refused: bool = False,
    ) -> list[OutgoingRecord]:
        """The message's dead letter, or nothing if its source is over the rate cap."""
        if not self._gate.admit(message.topic, time.monotonic()):
            self.counters.dead_letters_capped += 1
            return []
        self.counters.dead_letters += 1
        dead = DeadLetter(
            tuple(problems), message.topic, "ingest", message.payload, message.received_at
        )
        log.warning(
            "dead-lettered message on %s: %s",
            preview(message.topic),
            preview(dead.reason, 300),
        )
        return [
            OutgoingRecord(
                self._deadletter_topic,
                dead.to_json(limits),
                None,
                [("schema", DEADLETTER_SCHEMA)],
                replaces_refused,
            )
        ]

    async def _report_capped(self) -> None:
        while True:
            await asyncio.sleep(self._rate_cap.interval_s)
            self._log_capped()

    def _log_capped(self) -> None:
        summary = self._gate.take_summary()
        if summary is not None:
            top = ", ".join(f"{preview(source)}: {count}" for source, count in summary.top)
            log.warning(
                "%d dead letters over the rate cap (%d per source, %d in all, per %.0fs) were "
                "counted, not produced; from %d sources, most from %s",
                summary.capped,
                self._rate_cap.per_source,
                self._rate_cap.total,
                self._rate_cap.interval_s,
                summary.sources,
                top,
            )
