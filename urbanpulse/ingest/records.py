"""The Kafka records of one MQTT message: its readings, and a dead letter for what is wrong.

A message's readings travel together, in one ``readings/2`` record keyed by their sensor
(:func:`urbanpulse.core.envelope.readings_records`), or in several when they would make one
larger than ``RECORD_BYTES``.

No I/O: the bridge sends what is made here.  Whatever decoding one message throws becomes that
message's dead letter (one poison pill must never stop the bridge); dead letters are bounded in
size (``DeadLetter.to_json``) and capped in rate per source (``deadletters.py``); a record Kafka
refused for good is replaced by a small dead letter saying so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo

from urbanpulse.core import metrics as m
from urbanpulse.core.deadletters import DeadLetterGate, describe, rate_cap_from
from urbanpulse.core.envelope import (
    DEADLETTER_SCHEMA,
    READINGS_SCHEMA,
    DeadLetter,
    DeadLetterLimits,
    readings_records,
)
from urbanpulse.core.settings import Settings
from urbanpulse.core.untrusted import preview
from urbanpulse.core.vocabulary import Rejection
from urbanpulse.ingest.decode import DecodeRules, decode_message
from urbanpulse.ingest.mqtt_source import IncomingMessage

log = logging.getLogger(__name__)

# The dead letter that replaces a refused record keeps only the start of the payload.
REFUSED_LIMITS = DeadLetterLimits(raw_prefix_bytes=1024, max_reasons=5)
# A message's readings go in records of at most this many bytes (of at least one reading): a
# message of 20 readings makes one record of a few KiB, one of 1,000 (256 KiB) about twenty.
# Small enough to travel in the bridge's record batches (kafka_batches.py), and far below the
# processor's limit (stream.max_record_bytes), beyond which it would refuse a record whole.
RECORD_BYTES = 16 * 1024
# Shared by every record (aiokafka only reads them).
READINGS_HEADERS = [("schema", READINGS_SCHEMA)]
DEADLETTER_HEADERS = [("schema", DEADLETTER_SCHEMA)]


@dataclass(frozen=True, slots=True)
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
                # Rejected messages by class (Rejection), whether dead-lettered or capped.
                **{
                    f"rejected_{r.value}": m.Series(m.DEAD_LETTERS, {**ingest, "reason": r.value})
                    for r in Rejection
                },
                # Over the rate cap: counted and summarised, not produced.
                "dead_letters_capped": m.Series(m.INGEST_DEAD_LETTERS_CAPPED),
                # Records Kafka refused for good, replaced by a dead letter.
                "kafka_refused": m.Series(m.DEAD_LETTERS, {**ingest, "reason": "kafka_refused"}),
                # Replacements Kafka refused too: only logged and counted.
                "kafka_dropped": m.Series(m.INGEST_KAFKA_DROPPED),
            },
        )

    def count_rejection(self, rejection: Rejection) -> None:
        self.metrics.inc(m.DEAD_LETTERS, stage="ingest", reason=rejection.value)


class RecordMaker:
    """Turns MQTT messages into records, counting what it made and why it refused."""

    def __init__(
        self,
        settings: Settings,
        counters: BridgeCounters,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        ingest = settings.ingest
        self._topic_root = settings.mqtt.topic_root
        self._rules = DecodeRules(
            max_payload_bytes=ingest.max_payload_bytes,
            max_readings=ingest.max_readings_per_message,
            max_depth=ingest.max_nesting_depth,
            max_future_skew=timedelta(seconds=ingest.max_future_skew_s),
            max_age=timedelta(days=ingest.max_age_days),
            naive_time_zone=ZoneInfo(ingest.naive_time_zone) if ingest.naive_time_zone else None,
        )
        self._dead_letter_limits = ingest.dead_letter_limits()
        self.rate_cap = rate_cap_from(ingest)
        self._clock = clock
        self._gate = DeadLetterGate(self.rate_cap, clock())
        self._readings_topic = settings.kafka.topic("readings")
        self._record_bytes = min(RECORD_BYTES, settings.stream.max_record_bytes)
        self._deadletter_topic = settings.kafka.topic("deadletter")
        self._counters = counters
        # Messages and readings made since ``count_made``: counted in plain ints per message,
        # into the metrics once per batch (their locks and label look-ups per message were a
        # tenth of the bridge's own time in its profile).
        self._messages = 0
        self._readings = 0

    def records(self, message: IncomingMessage) -> list[OutgoingRecord]:
        """The records of one message; never raises for anything the message holds."""
        self._messages += 1
        try:
            return self._decoded(message)
        except Exception as exc:
            self._counters.count_rejection(Rejection.CRASH)
            log.error("decoding a message on %s failed", preview(message.topic), exc_info=True)
            reason = f"internal error while decoding: {type(exc).__name__} {preview(exc.args)}"
            return self._dead_letters(message, [reason], self._dead_letter_limits)

    def count_made(self) -> None:
        """Count the messages and readings made since the last call into the counters."""
        self._counters.messages += self._messages
        self._counters.readings += self._readings
        self._messages = self._readings = 0

    def replacement(
        self, record: OutgoingRecord, message: IncomingMessage, exc: Exception
    ) -> OutgoingRecord | None:
        """The small dead letter that stands for a record Kafka refused for good, if any."""
        if record.replaces_refused:
            self._counters.kafka_dropped += 1
            log.error(
                "Kafka refused even the dead letter of a refused record from %s (%r); dropped",
                preview(message.topic),
                exc,
            )
            return None
        self._counters.kafka_refused += 1
        reason = f"Kafka refused the record for {record.topic} for good: {exc!r}"
        log.error("%s (message on %s)", reason, preview(message.topic))
        replacement = self._dead_letters(message, [reason], REFUSED_LIMITS, replaces_refused=True)
        return replacement[0] if replacement else None

    def log_capped(self) -> None:
        """One log line for the dead letters capped since the last call, if any."""
        summary = self._gate.take_summary()
        if summary is not None:
            log.warning("%s", describe(summary, self.rate_cap))

    def _decoded(self, message: IncomingMessage) -> list[OutgoingRecord]:
        decoded = decode_message(
            self._topic_root, message.topic, message.payload, message.received_at, self._rules
        )
        if decoded is None:
            self._counters.status_messages += 1
            return []
        # One record per message (its readings are one sensor's), cut where it would be large.
        values = readings_records(decoded.readings, self._record_bytes)
        key = decoded.readings[0].sensor_id.encode() if values else None
        records = [
            OutgoingRecord(self._readings_topic, value, key, READINGS_HEADERS) for value in values
        ]
        self._readings += len(decoded.readings)
        if decoded.ignored:
            self._counters.ignored_attributes += len(decoded.ignored)
            log.debug(
                "ignored attributes on %s: %s", preview(message.topic), preview(decoded.ignored)
            )
        if decoded.problems:
            self._counters.count_rejection(decoded.rejection)
            records += self._dead_letters(message, decoded.problems, self._dead_letter_limits)
        return records

    def _dead_letters(
        self,
        message: IncomingMessage,
        problems: list[str],
        limits: DeadLetterLimits,
        *,
        replaces_refused: bool = False,
    ) -> list[OutgoingRecord]:
        """The message's dead letter, or nothing if its source is over the rate cap."""
        if not self._gate.admit(message.topic, self._clock()):
            self._counters.dead_letters_capped += 1
            return []
        self._counters.dead_letters += 1
        dead = DeadLetter(
            tuple(problems), message.topic, "ingest", message.payload, message.received_at
        )
        log.warning(
            "dead-lettered message on %s: %s", preview(message.topic), preview(dead.reason, 300)
        )
        value = dead.to_json(limits)
        return [
            OutgoingRecord(
                self._deadletter_topic, value, None, DEADLETTER_HEADERS, replaces_refused
            )
        ]
