"""The stream processor runner: Kafka ``readings`` -> TimescaleDB, at least once, idempotent.

For each batch: decode and validate, check against the registry, write everything (readings,
the alerts they open or close and the alerts' announcements in the outbox) in one transaction,
produce dead letters, and only then commit the Kafka offsets (``offset + 1`` of the last record
per partition).  A crash anywhere before the commit replays the batch; the writes are idempotent
on (sensor_id, ts), so the replay stores nothing twice.

A batch that fails is retried whole when the failure is transient (a server down) and bisected
when it is permanent (:mod:`urbanpulse.stream.faults`, :mod:`urbanpulse.stream.isolate`): the
good records are stored, a record the database refuses even alone is dead-lettered with its
error, and the partition keeps flowing.  Offsets are committed once every record of the batch
is stored or dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.partitioner import murmur2

from urbanpulse.alerts.model import Severity
from urbanpulse.core import metrics as metrics_
from urbanpulse.core.catalogue import get_kind
from urbanpulse.core.deadletters import DeadLetterGate, describe, rate_cap_from
from urbanpulse.core.envelope import DEADLETTER_SCHEMA, DeadLetter, Reading
from urbanpulse.core.logs import fields, report_counters
from urbanpulse.core.settings import KafkaPrincipal, Settings
from urbanpulse.indices.vn_aqi import POLLUTANTS
from urbanpulse.indices.vn_wqi import Combination
from urbanpulse.storage import queries, registry
from urbanpulse.storage.writer import stored_keys, write_readings
from urbanpulse.stream.admission import PendingAdmission, PendingBudget
from urbanpulse.stream.alerting import AlertStage, observations
from urbanpulse.stream.derive import derive_indices
from urbanpulse.stream.faults import is_transient
from urbanpulse.stream.isolate import store_isolating
from urbanpulse.stream.steps import (
    REASON_CHARS,
    Checked,
    ConsumedRecord,
    check_registry,
    decode_records,
)
from urbanpulse.stream.validate import RecordLimits
from urbanpulse.stream.windows import HOUR, HOURS_KEPT, HourlyMeans, HourlySeed, hour_of

log = logging.getLogger(__name__)

RETRY_DELAY_S = 1.0


def processor_counters(metrics: metrics_.Metrics) -> metrics_.CounterView:
    """The processor's numbers by name, for its log lines and for tests."""
    m = metrics_
    return m.CounterView(
        metrics,
        {
            "consumed": m.Series(m.STREAM_RECORDS),
            "stored": m.Series(m.STREAM_RECORDS, {"result": "stored"}),
            "duplicates": m.Series(m.STREAM_RECORDS, {"result": "duplicate"}),
            "dead_letters": m.Series(m.DEAD_LETTERS, {"stage": "stream"}),
            "registered_pending": m.Series(m.STREAM_PENDING_REGISTERED),
            "pending_refused": m.Series(m.DEAD_LETTERS, _dead("pending_cap")),
            "isolated": m.Series(m.DEAD_LETTERS, _dead("db_refused")),
            "batches": m.Series(m.STREAM_BATCHES),
            "write_retries": m.Series(m.STREAM_WRITE_RETRIES),
            "window_evictions": m.Series(m.STREAM_WINDOW_EVICTIONS),
            "timer_ticks": m.Series(m.STREAM_ALERT_TIMER_TICKS),
        },
    )


def _dead(reason: str) -> dict[str, str]:
    return {"stage": "stream", "reason": reason}


class StreamProcessor:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, producer: AIOKafkaProducer) -> None:
        self._settings = settings
        self._pool = pool
        self._producer = producer
        self._air_hours = HourlyMeans(POLLUTANTS, settings.stream.max_window_sensors)
        self._limits = RecordLimits(
            settings.stream.max_record_bytes,
            timedelta(seconds=settings.ingest.max_future_skew_s),
        )
        self._admission = PendingAdmission(
            settings.stream.pending_cap, settings.stream.pending_per_minute, time.monotonic()
        )
        self._wqi_combination = Combination(settings.stream.wqi_combination)
        self._dead_letter_cap = rate_cap_from(settings.ingest)
        self._dead_letter_gate = DeadLetterGate(self._dead_letter_cap, time.monotonic())
        self._next_cap_summary = time.monotonic() + self._dead_letter_cap.interval_s
        self._assignment: frozenset[TopicPartition] = frozenset()
        self._partition_count = 0
        self.metrics = metrics_.Metrics()
        self.alerts = AlertStage(settings, producer, self.metrics)
        self.counters = processor_counters(self.metrics)
        self.assigned = asyncio.Event()
        self.last_commit_at: datetime | None = None  # heartbeats report it (urbanpulse.heartbeat)

    async def run(self, stop: asyncio.Event) -> None:
        kafka = self._settings.kafka
        consumer = AIOKafkaConsumer(
            kafka.topic("readings"),
            **self._settings.kafka_as(KafkaPrincipal.PROCESSOR).client_kwargs(),
            group_id=kafka.consumer_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self._settings.stream.batch_max_records,
        )
        await consumer.start()
        log.info(
            "processor consuming %s as group %s", kafka.topic("readings"), kafka.consumer_group
        )
        reporter = asyncio.create_task(report_counters(log, "processor", self.counters))
        relay = asyncio.create_task(self.alerts.relay(self._pool, stop))
        try:
            while not stop.is_set():
                batches = await consumer.getmany(
                    timeout_ms=self._settings.stream.batch_timeout_ms,
                    max_records=self._settings.stream.batch_max_records,
                )
                self._follow_assignment(frozenset(consumer.assignment()))
                await self._lag(consumer)  # kept up to date on the consumer-lag gauge
                if batches:
                    await self._process_until_stored(batches, stop)
                    await self._commit(consumer, batches)
                if self.alerts.timer_due() and self._assignment:
                    await self._alert_timer(consumer)
        finally:
            reporter.cancel()
            if not stop.is_set():
                relay.cancel()
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(relay, 10)  # its last drain
            await consumer.stop()
            log.info("processor stopped", extra=fields(**self.counters.snapshot()))

    def _follow_assignment(self, assignment: frozenset[TopicPartition]) -> None:
        if assignment != self._assignment:
            # Sensors may have moved to another processor and back: rebuild from the database.
            self._air_hours.forget_all()
            self.alerts.stale = True
            self._assignment = assignment
            self.metrics.clear(metrics_.CONSUMER_LAG)  # partitions gone are no longer ours
            log.info(
                "processor assigned %s", sorted(f"{tp.topic}/{tp.partition}" for tp in assignment)
            )
        if assignment:
            self.assigned.set()

    async def _process_until_stored(
        self, batches: dict[TopicPartition, list[ConsumerRecord]], stop: asyncio.Event
    ) -> None:
        records = [
            ConsumedRecord(r.topic, r.partition, r.offset, r.value or b"", tuple(r.headers))
            for partition_records in batches.values()
            for r in partition_records
        ]
        while True:
            try:
                refused = await store_isolating(records, self._attempt)
                await self._dead_letter([_refused(r, exc) for r, exc in refused])
                self._count_dead(len(refused), "db_refused")
                self._count_records("dead_letter", len(refused))
                return
            except Exception as exc:
                if not is_transient(exc):
                    raise  # store_isolating raises only transient errors: a bug, not data
                # Keep the batch and try again: offsets stay uncommitted until it is stored.
                self.metrics.inc(metrics_.STREAM_WRITE_RETRIES)
                log.warning(
                    "batch not stored (%s: %s); retrying in %.0fs",
                    type(exc).__name__,
                    str(exc)[:REASON_CHARS],
                    RETRY_DELAY_S,
                )
                if stop.is_set():
                    raise
                await asyncio.sleep(RETRY_DELAY_S)

    async def _attempt(self, records: Sequence[ConsumedRecord]) -> None:
        try:
            await self._process(records)
        except BaseException:
            # The window may hold part of the failed attempt: rebuild it from what is stored.
            self._air_hours.forget_all()
            self.alerts.stale = True
            raise

    async def _process(self, records: Sequence[ConsumedRecord]) -> None:
        now = datetime.now(UTC)
        decoded = decode_records(records, now, self._limits)
        started = time.perf_counter()
        async with self._pool.acquire() as conn, conn.transaction():
            if self.alerts.stale:
                await self.alerts.rebuild(conn)
            known = await registry.lookup(conn, (r.sensor_id for r in decoded.accepted))
            checked = await self._check_registry(conn, decoded.accepted, known, now)
            await registry.register(conn, checked.to_register, overwrite=False)
            fresh = await self._not_stored_yet(conn, checked.accepted)
            await self._seed_window(conn, fresh)
            derived = derive_indices(fresh, self._air_hours, self._wqi_combination)
            result = await write_readings(conn, fresh, derived)
            seen = observations(fresh, derived, known, self._air_hours, self.alerts.rules)
            alerting = await self.alerts.evaluate(conn, seen, now)
        self.metrics.observe(metrics_.BATCH_WRITE_SECONDS, time.perf_counter() - started)
        self._admission.spend(len(checked.to_register))
        self.alerts.commit(alerting)
        dead_letters = decoded.dead_letters + checked.dead_letters
        await self._dead_letter(dead_letters)
        self._count_batch(result.inserted, len(decoded.dead_letters), checked)
        log.debug(
            "batch stored",
            extra=fields(records=len(records), inserted=result.inserted, dead=len(dead_letters)),
        )

    def _count_batch(self, inserted: int, undecodable: int, checked: Checked) -> None:
        m, count = metrics_, self.metrics
        count.inc(m.STREAM_BATCHES)
        self._count_records("stored", inserted)
        self._count_records("duplicate", len(checked.accepted) - inserted)
        self._count_records("dead_letter", undecodable + len(checked.dead_letters))
        self._count_dead(undecodable, "undecodable")
        self._count_dead(checked.pending_refused, "pending_cap")
        self._count_dead(len(checked.dead_letters) - checked.pending_refused, "registry")
        count.inc(m.STREAM_PENDING_REGISTERED, len(checked.to_register))
        evicted = self._air_hours.evicted - count.value(m.STREAM_WINDOW_EVICTIONS)
        count.inc(m.STREAM_WINDOW_EVICTIONS, evicted)
        self._count_open_alerts()

    def _count_open_alerts(self) -> None:
        # Every processor holds every active alert (rebuilt from the database): boards take
        # the max over processors, not the sum.
        active = Counter(
            t.alert.severity.value
            for t in self.alerts.state.tracks.values()
            if t.alert is not None and t.alert.active
        )
        for severity in Severity:
            self.metrics.set(metrics_.ALERTS_OPEN, active[severity.value], severity=severity.value)

    def _count_records(self, result: str, n: int) -> None:
        self.metrics.inc(metrics_.STREAM_RECORDS, n, result=result)

    def _count_dead(self, n: int, reason: str) -> None:
        self.metrics.inc(metrics_.DEAD_LETTERS, n, stage="stream", reason=reason)

    async def _check_registry(
        self,
        conn: asyncpg.Connection,
        readings: list[Reading],
        known: dict[str, registry.RegisteredSensor],
        now: datetime,
    ) -> Checked:
        stream = self._settings.stream
        budget = PendingBudget(0, "")
        if stream.provisioning == "pending" and any(r.sensor_id not in known for r in readings):
            pending_now = await registry.count_pending(conn)
            budget = self._admission.budget(pending_now, time.monotonic())
        return check_registry(readings, known, stream.provisioning, now, budget)

    @staticmethod
    async def _not_stored_yet(conn: asyncpg.Connection, readings: list[Reading]) -> list[Reading]:
        """Drop replays (stored before) and repeats within the batch: each is derived once."""
        stored = await stored_keys(conn, readings)
        fresh: dict[tuple[str, datetime], Reading] = {}
        for reading in readings:
            key = (reading.sensor_id, reading.ts)
            if key not in stored:
                fresh.setdefault(key, reading)
        return list(fresh.values())

    async def _seed_window(self, conn: asyncpg.Connection, readings: list[Reading]) -> None:
        """Load the stored hourly means of air sensors this processor has not seen yet."""
        unseen = [r for r in readings if r.kind == "air" and not self._air_hours.knows(r.sensor_id)]
        if not unseen:
            return
        sensor_ids = sorted({r.sensor_id for r in unseen})
        since = hour_of(min(r.ts for r in unseen)) - HOURS_KEPT * HOUR
        rows = await queries.hourly_sums(conn, get_kind("air"), POLLUTANTS, sensor_ids, since)
        self._air_hours.seed(sensor_ids, (HourlySeed(*row) for row in rows))

    async def _alert_timer(self, consumer: AIOKafkaConsumer) -> None:
        """Processing-time timer: staleness only once caught up (a backlog is not silence)."""
        self.metrics.inc(metrics_.STREAM_ALERT_TIMER_TICKS)
        try:
            caught_up = await self._lag(consumer) < self._settings.stream.batch_max_records
            await self.alerts.on_timer(self._pool, self._owns, check_staleness=caught_up)
            self._count_open_alerts()
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, KafkaError) as exc:
            self.alerts.stale = True
            log.warning("alert timer failed (%r); retrying at the next tick", exc)

    async def _lag(self, consumer: AIOKafkaConsumer) -> int:
        """Records behind the high-water marks, in all; each partition's on the lag gauge.

        As far as the consumer knows: no round trip to the brokers."""
        topic = self._settings.kafka.topic("readings")
        self._partition_count = len(consumer.partitions_for_topic(topic) or ())
        total = 0
        for tp in self._assignment:
            high = consumer.highwater(tp)
            if high is not None:
                lag = max(0, high - await consumer.position(tp))
                self.metrics.set(metrics_.CONSUMER_LAG, lag, partition=str(tp.partition))
                total += lag
        return total

    def _owns(self, sensor_id: str) -> bool:
        """Whether ``sensor_id``'s readings come to this processor (Kafka's key partitioner)."""
        if not self._partition_count:
            return False
        partition = (murmur2(sensor_id.encode()) & 0x7FFFFFFF) % self._partition_count
        return any(tp.partition == partition for tp in self._assignment)

    async def _dead_letter(self, dead_letters: list[DeadLetter]) -> None:
        """Produce the dead letters the rate cap admits (per sender, as the bridge does); the
        rest are counted and summarised in one log line per interval."""
        now = time.monotonic()
        admitted = [
            d for d in dead_letters if self._dead_letter_gate.admit(_rate_source(d.source), now)
        ]
        self.metrics.inc(metrics_.STREAM_DEAD_LETTERS_CAPPED, len(dead_letters) - len(admitted))
        topic = self._settings.kafka.topic("deadletter")
        acks = [
            await self._producer.send(topic, d.to_json(), headers=[("schema", DEADLETTER_SCHEMA)])
            for d in admitted
        ]
        for dead in admitted:
            log.warning("dead-lettered %s: %s", dead.source, dead.reason[:REASON_CHARS])
        if now >= self._next_cap_summary:
            self._next_cap_summary = now + self._dead_letter_cap.interval_s
            if (summary := self._dead_letter_gate.take_summary()) is not None:
                log.warning("%s", describe(summary, self._dead_letter_cap))
        await asyncio.gather(*acks)

    async def _commit(
        self, consumer: AIOKafkaConsumer, batches: dict[TopicPartition, list[ConsumerRecord]]
    ) -> None:
        # A rebalance during the batch may have taken partitions away: committing for one we no
        # longer own raises IllegalStateError.  Its new owner replays those records from the
        # last committed offset, and the idempotent writes absorb the replay.
        assigned = consumer.assignment()
        offsets = {tp: records[-1].offset + 1 for tp, records in batches.items() if tp in assigned}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
            self.last_commit_at = datetime.now(UTC)
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("offset commit failed after rebalance (%r); batch will be replayed", exc)


def _rate_source(source: str) -> str:
    """Whose fault a dead letter is, for the rate cap: a record's partition (its source names
    the offset too, unique per record), or the MQTT topic of a reading the registry refused."""
    return source.rpartition("@")[0] if source.startswith("kafka:") else source


def _refused(record: ConsumedRecord, exc: Exception) -> DeadLetter:
    """The dead letter of a record that fails even alone, with the database's error."""
    reason = f"refused when stored alone: {type(exc).__name__}: {exc}"[:REASON_CHARS]
    return DeadLetter((reason,), record.source, "stream", record.value, datetime.now(UTC))
