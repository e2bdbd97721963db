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
from datetime import UTC, datetime

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from urbanpulse.core import metrics as metrics_
from urbanpulse.core.catalogue import get_kind
from urbanpulse.core.deadletters import DeadLetterGate, describe, rate_cap_from
from urbanpulse.core.envelope import DEADLETTER_SCHEMA, DeadLetter, Reading
from urbanpulse.core.logs import fields, report_counters
from urbanpulse.core.settings import KafkaPrincipal, Settings
from urbanpulse.core.vocabulary import Severity
from urbanpulse.indices.vn_aqi import POLLUTANTS
from urbanpulse.indices.vn_wqi import Combination
from urbanpulse.storage import queries, registry
from urbanpulse.storage.writer import stored_keys, write_readings
from urbanpulse.stream import batch
from urbanpulse.stream.admission import PendingAdmission, PendingBudget
from urbanpulse.stream.alerting import AlertStage
from urbanpulse.stream.faults import is_transient
from urbanpulse.stream.isolate import store_isolating
from urbanpulse.stream.partition_state import PartitionState, PartitionStates, Rebalance
from urbanpulse.stream.steps import REASON_CHARS, ConsumedRecord, parts_of
from urbanpulse.stream.validate import RecordLimits
from urbanpulse.stream.windows import HOUR, HOURS_KEPT, HourlySeed, hour_of

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
        self._states = PartitionStates(
            settings.stream.max_window_sensors, settings.alerts.max_tracked_sensors
        )
        # Held around each batch (and its commit) and each timer tick: a rebalance waits.
        self._lock = asyncio.Lock()
        self._limits = RecordLimits.from_settings(settings)
        self._admission = PendingAdmission(
            settings.stream.pending_cap, settings.stream.pending_per_minute, time.monotonic()
        )
        self._wqi_combination = Combination(settings.stream.wqi_combination)
        self._dead_letter_cap = rate_cap_from(settings.ingest)
        self._dead_letter_gate = DeadLetterGate(self._dead_letter_cap, time.monotonic())
        self._next_cap_summary = time.monotonic() + self._dead_letter_cap.interval_s
        self.metrics = metrics_.Metrics()
        self.alerts = AlertStage(settings, producer, self.metrics)
        self.counters = processor_counters(self.metrics)
        self.assigned = asyncio.Event()
        self.last_commit_at: datetime | None = None  # heartbeats report it (urbanpulse.heartbeat)

    @property
    def partitions(self) -> frozenset[int]:
        """The partitions of the readings topic this processor owns now."""
        return frozenset(state.partition for state in self._states)

    def _new_consumer(self) -> AIOKafkaConsumer:
        kafka = self._settings.kafka
        return AIOKafkaConsumer(
            **self._settings.kafka_as(KafkaPrincipal.PROCESSOR).client_kwargs(),
            group_id=kafka.consumer_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self._settings.stream.batch_max_records,
        )

    async def run(self, stop: asyncio.Event) -> None:
        kafka = self._settings.kafka
        topic = kafka.topic("readings")
        consumer = self._new_consumer()

        async def committed(tp: TopicPartition) -> int | None:
            offset: int | None = await consumer.committed(tp)
            return offset

        def partition_count() -> int:
            return len(consumer.partitions_for_topic(topic) or ())

        listener = Rebalance(
            self._states, self._lock, committed, partition_count, self._follow_assignment
        )
        consumer.subscribe([topic], listener=listener)
        await consumer.start()
        log.info("processor consuming %s as group %s", topic, kafka.consumer_group)
        reporter = asyncio.create_task(report_counters(log, "processor", self.counters))
        relay = asyncio.create_task(self.alerts.relay(self._pool, stop))
        try:
            while not stop.is_set():
                batches = await consumer.getmany(
                    timeout_ms=self._settings.stream.batch_timeout_ms,
                    max_records=self._settings.stream.batch_max_records,
                )
                async with self._lock:
                    # Fetched before a rebalance took them away: left to their next owner.
                    owned = {tp: r for tp, r in batches.items() if self._states.owns(tp.partition)}
                    await self._lag(consumer)  # kept up to date on the consumer-lag gauge
                    if owned:
                        await self._process_until_stored(owned, stop)
                        self._states.committed(await self._commit(consumer, owned))
                    if self.alerts.timer_due() and len(self._states):
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
        """After each rebalance: the lag gauge keeps only the partitions still ours."""
        self.metrics.clear(metrics_.CONSUMER_LAG)
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
                refused = await self._isolate_readings(
                    await store_isolating(records, self._attempt)
                )
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

    async def _isolate_readings(
        self, refused: list[tuple[ConsumedRecord, Exception]]
    ) -> list[tuple[ConsumedRecord, Exception]]:
        """Records refused alone that hold several readings, tried reading by reading: only
        the readings at fault are refused, their siblings stored."""
        alone: list[tuple[ConsumedRecord, Exception]] = []
        for record, exc in refused:
            parts = parts_of(record)
            alone += (
                [(record, exc)]
                if parts == [record]
                else await store_isolating(parts, self._attempt)
            )
        return alone

    async def _attempt(self, records: Sequence[ConsumedRecord]) -> None:
        try:
            await self._process(records)
        except BaseException:
            # The windows may hold part of the failed attempt: reload them from what is stored.
            # (The alert states change only once a batch commits.)
            for partition in {r.partition for r in records}:
                state = self._states.get(partition)
                if state is not None:
                    state.windows.forget_all()
            raise

    async def _process(self, records: Sequence[ConsumedRecord]) -> None:
        """Decode, load, plan (:mod:`urbanpulse.stream.batch`), store; then keep the plan's
        alert states and send its dead letters."""
        now = datetime.now(UTC)
        states = {state.partition: state for state in self._states}
        decoded = batch.decode(records, now, self._limits, self._states.partitions, states)
        evicted = sum(s.windows.evicted for s in states.values())
        started = time.perf_counter()
        async with self._pool.acquire() as conn, conn.transaction():
            unseeded = [s for s in states.values() if not s.seeded]
            await self.alerts.seed(conn, unseeded, self._states.partitions)
            loaded, synced_at = await self._load(conn, decoded, states)
            plan = batch.plan(decoded, loaded, states, self._plan_settings(), now)
            await registry.register(conn, plan.to_register, overwrite=False)
            result = await write_readings(conn, plan.readings, plan.derived)
            pending = await self.alerts.apply(
                conn, plan.alerts, plan.by_operators, plan.raised, synced_at, now
            )
        self.metrics.observe(metrics_.BATCH_WRITE_SECONDS, time.perf_counter() - started)
        self._admission.spend(len(plan.to_register))
        self.alerts.commit(self._states, pending)
        await self._dead_letter(plan.dead_letters)
        evicted = sum(s.windows.evicted for s in states.values()) - evicted
        self._count_batch(result.inserted, plan, evicted)
        log.debug(
            "batch stored",
            extra=fields(
                records=len(records), inserted=result.inserted, dead=len(plan.dead_letters)
            ),
        )

    def _plan_settings(self) -> batch.PlanSettings:
        stream = self._settings.stream
        return batch.PlanSettings(
            self.alerts.sensor_rules, stream.provisioning, self._wqi_combination
        )

    async def _load(
        self,
        conn: asyncpg.Connection,
        decoded: batch.Decoded,
        states: dict[int, PartitionState],
    ) -> tuple[batch.Loaded, datetime]:
        """What the plan needs from the database (and the clock of the alerts read)."""
        readings = decoded.all_readings()
        known = await registry.lookup(conn, (r.sensor_id for r in readings))
        budget = await self._pending_budget(conn, readings, known)
        stored = await stored_keys(conn, readings)
        await self._seed_windows(conn, decoded, states)
        changed, synced_at = await self.alerts.changes(conn)
        return batch.Loaded(known, frozenset(stored), budget, changed), synced_at

    def _count_batch(self, inserted: int, plan: batch.Plan, evicted: int) -> None:
        m, count = metrics_, self.metrics
        count.inc(m.STREAM_BATCHES)
        self._count_records("stored", inserted)
        self._count_records("duplicate", len(plan.readings) + plan.duplicates - inserted)
        self._count_records("dead_letter", len(plan.dead_letters))
        self._count_dead(len(plan.undecodable), "undecodable")
        self._count_dead(plan.pending_refused, "pending_cap")
        self._count_dead(len(plan.refused) - plan.pending_refused, "registry")
        count.inc(m.STREAM_PENDING_REGISTERED, len(plan.to_register))
        count.inc(m.STREAM_WINDOW_EVICTIONS, evicted)
        self._count_open_alerts()

    def _count_open_alerts(self) -> None:
        # Each active alert is in the state of one processor (its sensor's or area's partition):
        # boards sum over processors.
        active = Counter(
            t.alert.severity.value
            for state in self._states
            for t in state.alerts.tracks.values()
            if t.alert is not None and t.alert.active
        )
        for severity in Severity:
            self.metrics.set(metrics_.ALERTS_OPEN, active[severity.value], severity=severity.value)

    def _count_records(self, result: str, n: int) -> None:
        self.metrics.inc(metrics_.STREAM_RECORDS, n, result=result)

    def _count_dead(self, n: int, reason: str) -> None:
        self.metrics.inc(metrics_.DEAD_LETTERS, n, stage="stream", reason=reason)

    async def _pending_budget(
        self,
        conn: asyncpg.Connection,
        readings: list[Reading],
        known: dict[str, registry.RegisteredSensor],
    ) -> PendingBudget:
        if self._settings.stream.provisioning == "pending" and any(
            r.sensor_id not in known for r in readings
        ):
            pending_now = await registry.count_pending(conn)
            return self._admission.budget(pending_now, time.monotonic())
        return PendingBudget(0, "")

    @staticmethod
    async def _seed_windows(
        conn: asyncpg.Connection, decoded: batch.Decoded, states: dict[int, PartitionState]
    ) -> None:
        """Load the stored hourly means of air sensors a partition's windows do not hold yet."""
        unseen: dict[str, set[int]] = {}  # sensor -> the partitions to seed
        earliest: datetime | None = None
        for partition, r in decoded.readings:
            if r.kind == "air" and not states[partition].windows.knows(r.sensor_id):
                unseen.setdefault(r.sensor_id, set()).add(partition)
                earliest = r.ts if earliest is None else min(earliest, r.ts)
        if earliest is None:
            return
        since = hour_of(earliest) - HOURS_KEPT * HOUR
        sensor_ids = sorted(unseen)
        rows = await queries.hourly_sums(conn, get_kind("air"), POLLUTANTS, sensor_ids, since)
        seeds = [HourlySeed(*row) for row in rows]
        for partition in {p for partitions in unseen.values() for p in partitions}:
            mine = {s for s, partitions in unseen.items() if partition in partitions}
            states[partition].windows.seed(mine, (row for row in seeds if row.sensor_id in mine))

    async def _alert_timer(self, consumer: AIOKafkaConsumer) -> None:
        """Processing-time timer: staleness only once caught up (a backlog is not silence)."""
        self.metrics.inc(metrics_.STREAM_ALERT_TIMER_TICKS)
        try:
            caught_up = await self._lag(consumer) < self._settings.stream.batch_max_records
            await self.alerts.on_timer(self._pool, self._states, check_staleness=caught_up)
            self._count_open_alerts()
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, KafkaError) as exc:
            # Nothing is kept of a tick that failed: the next one starts from the same states.
            log.warning("alert timer failed (%r); retrying at the next tick", exc)

    async def _lag(self, consumer: AIOKafkaConsumer) -> int:
        """Records behind the high-water marks, in all; each partition's on the lag gauge.

        From this processor's last commit, as far as the consumer knows: no round trip to the
        brokers, and nothing that waits for the group coordinator, which may be waiting for
        the lock this runs under (a rebalance's callbacks)."""
        topic = self._settings.kafka.topic("readings")
        total = 0
        for state in self._states:
            try:
                high = consumer.highwater(TopicPartition(topic, state.partition))
            except IllegalStateError:
                continue  # a rebalance is taking it away
            if high is None:
                continue
            # Never committed (or unknown): everything up to the high-water mark may be ahead.
            position = state.committed if state.committed is not None else 0
            lag = max(0, high - max(0, position))
            self.metrics.set(metrics_.CONSUMER_LAG, lag, partition=str(state.partition))
            total += lag
        return total

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
    ) -> dict[int, int]:
        """Commit the offsets after each partition's last record; returns them by partition.

        A rebalance during the batch may have taken partitions away: committing for one we no
        longer own raises IllegalStateError.  Its new owner replays those records from the
        last committed offset, and the idempotent writes absorb the replay."""
        assigned = consumer.assignment()
        offsets = {tp: records[-1].offset + 1 for tp, records in batches.items() if tp in assigned}
        if not offsets:
            return {}
        try:
            await consumer.commit(offsets)
            self.last_commit_at = datetime.now(UTC)
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("offset commit failed after rebalance (%r); batch will be replayed", exc)
            return {}
        return {tp.partition: offset for tp, offset in offsets.items()}


def _rate_source(source: str) -> str:
    """Whose fault a dead letter is, for the rate cap: a record's partition (its source names
    the offset too, unique per record), or the MQTT topic of a reading the registry refused."""
    return source.rpartition("@")[0] if source.startswith("kafka:") else source


def _refused(record: ConsumedRecord, exc: Exception) -> DeadLetter:
    """The dead letter of a record that fails even alone, with the database's error."""
    which = "" if record.part is None else f"reading [{record.part}] of the record: "
    reason = f"{which}refused when stored alone: {type(exc).__name__}: {exc}"[:REASON_CHARS]
    return DeadLetter((reason,), record.source, "stream", record.value, datetime.now(UTC))
