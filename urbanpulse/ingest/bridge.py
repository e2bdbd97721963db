"""The ingest bridge: MQTT (QoS 1, persistent session) -> Kafka, at least once.

It takes the messages from an :class:`MqttSource` in batches, makes their records
(``records.py``), hands the records to the Kafka producer without waiting for each one, and acks
every message once Kafka acknowledged all records made from it (readings and, for bad input, its
dead letter).  A crash before that leaves the message in the bridge's broker-side session, which
gets it again when the same bridge instance comes back; the duplicate records this can cause are
absorbed by the database's idempotent writes.

Several bridges share the readings through an MQTT shared subscription (see ``mqtt_source.py``).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    CorruptRecordException,
    InvalidTimestampError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
)

from urbanpulse.bus import RememberingPartitioner
from urbanpulse.core import metrics as m
from urbanpulse.core.logs import fields, report_counters
from urbanpulse.core.settings import Settings
from urbanpulse.ingest.handoff import HandOff
from urbanpulse.ingest.kafka_batches import KafkaBatches
from urbanpulse.ingest.mqtt_source import IncomingMessage, MqttSource
from urbanpulse.ingest.records import BridgeCounters, OutgoingRecord, RecordMaker

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

# Each record handed to the producer, the future of Kafka's answer, and whether it went in a
# batch of several records (an answer about the batch, not necessarily about this record).
Sent = list[tuple[OutgoingRecord, "asyncio.Future[Any]", bool]]


class _NotAcked(Exception):
    """Kafka failed while the bridge stops: leave the MQTT message unacked."""


class MqttBridge:
    def __init__(
        self, settings: Settings, producer: AIOKafkaProducer, source: MqttSource | None = None
    ) -> None:
        self._producer = producer
        ingest = settings.ingest
        self._source = source or MqttSource(
            settings.mqtt,
            HandOff(ingest.queue_size, ingest.max_queued_bytes),
            receive_maximum=ingest.queue_size,
        )
        self.metrics = m.Metrics()
        self.counters = BridgeCounters(self.metrics)
        self._records = RecordMaker(settings, self.counters)
        self._batches = KafkaBatches(producer, RememberingPartitioner())
        self._linger_s = ingest.kafka_linger_ms / 1000
        self._flushing: asyncio.Task[None] | None = None
        self.connected = self._source.connected
        self.last_ack_at: datetime | None = None  # when a message was last acked

    async def run(self, stop: asyncio.Event) -> None:
        """Bridge until ``stop`` is set (or the source ends), then settle what is in flight."""
        pending: set[asyncio.Task[None]] = set()
        async with self._source as source:
            consumer = asyncio.create_task(self._consume(source, pending, stop))
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
                await asyncio.wait({consumer})  # stopped adding to the open record batches
                if self._batches.holding:  # sent, so that the messages they hold are acked
                    pending.add(asyncio.create_task(self._batches.flush()))
                if self._flushing is not None:
                    pending.add(self._flushing)
                if pending:
                    log.info("bridge stopping: waiting for %d batches in flight", len(pending))
                    await asyncio.wait(pending, timeout=10)
        self._records.log_capped()
        log.info("bridge stopped", extra=fields(**self.counters.snapshot()))

    async def _consume(
        self, source: MqttSource, pending: set[asyncio.Task[None]], stop: asyncio.Event
    ) -> None:
        async for batch in source:
            # Records reach the producer in arrival order (keeping each sensor's order within
            # its partition); Kafka's answers are awaited concurrently, one task per batch.
            sent = [
                (message, await self._send_all(self._records.records(message), message, True))
                for message in batch
            ]
            self._records.count_made()
            self._flush_soon()
            task = asyncio.create_task(self._settle(source, sent, stop))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await self._batches.flush()
        await asyncio.gather(*pending)

    def _flush_soon(self) -> None:
        """Have the open record batches sent a linger from now, unless that is under way."""
        if self._flushing is not None and self._flushing.done():
            self._flushing.result()  # a bug in sending propagates, as it did inline
            self._flushing = None
        if self._flushing is None and self._batches.holding:
            self._flushing = asyncio.create_task(self._flush_after_linger())

    async def _flush_after_linger(self) -> None:
        """Send the open record batches once the following MQTT batches had a linger
        (``URBANPULSE_INGEST__KAFKA_LINGER_MS``) to add to them; again for what they added
        while it was sending."""
        while self._batches.holding:
            await asyncio.sleep(self._linger_s)
            await self._batches.flush()

    async def _send_all(
        self, records: list[OutgoingRecord], message: IncomingMessage, batched: bool = False
    ) -> Sent:
        """Hand records to the producer, in order: readings into record batches if
        ``batched``, the rest (and everything sent again) one by one; see RECORD_REFUSED for
        what is retried."""
        sent: Sent = []
        batches = self._batches
        for record in records:
            if (
                batched
                and batches.takes(record)
                and (batch_future := await batches.add(record)) is not None
            ):
                sent.append((record, batch_future, True))
                continue
            while True:
                try:
                    future = await self._producer.send(
                        record.topic, record.value, key=record.key, headers=record.headers
                    )
                except RECORD_REFUSED as exc:
                    replacement = self._records.replacement(record, message, exc)
                    if replacement is None:
                        break
                    record = replacement
                except KafkaError as exc:
                    await self._before_retry(exc)
                else:
                    sent.append((record, future, False))
                    break
        return sent

    async def _settle(
        self, source: MqttSource, batch: list[tuple[IncomingMessage, Sent]], stop: asyncio.Event
    ) -> None:
        """Ack each message of a batch once Kafka answered for all its records."""
        for message, sent in batch:
            acked = False
            try:
                while sent:
                    sent = await self._resend_failed(message, sent, stop)
                acked = True
            except _NotAcked:
                log.warning("not acking MQTT message %s: Kafka failed at shutdown", message.mid)
            finally:
                # The message's room is held until Kafka answered for all its records, so that
                # the byte budget bounds what the bridge holds in memory, not only what waits.
                if acked:
                    source.ack(message)
                    self.last_ack_at = datetime.now(UTC)
                else:
                    source.release(message)  # the broker sends it again to this session

    async def _resend_failed(
        self, message: IncomingMessage, sent: Sent, stop: asyncio.Event
    ) -> Sent:
        """Wait for Kafka's answers; send again what failed (see RECORD_REFUSED)."""
        again: list[OutgoingRecord] = []
        transient: KafkaError | None = None
        for record, future, batched in sent:
            try:
                await future
            except RECORD_REFUSED as exc:
                if batched:
                    again.append(record)  # sent again alone: Kafka then says if it was this one
                    continue
                replacement = self._records.replacement(record, message, exc)
                again += [replacement] if replacement is not None else []
            except KafkaError as exc:
                again.append(record)
                transient = exc
            # Anything else is not Kafka's answer but a bug: it propagates, never retried.
        if transient is not None:
            if stop.is_set():
                raise _NotAcked
            await self._before_retry(transient)
        return await self._send_all(again, message)

    async def _before_retry(self, exc: KafkaError) -> None:
        self.counters.kafka_retries += 1
        log.warning("Kafka produce failed (%r); retrying in %.0fs", exc, RETRY_DELAY_S)
        await asyncio.sleep(RETRY_DELAY_S)

    async def _report_capped(self) -> None:
        while True:
            await asyncio.sleep(self._records.rate_cap.interval_s)
            self._records.log_capped()
