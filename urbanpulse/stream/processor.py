"""The stream processor runner: Kafka ``readings`` -> TimescaleDB, at least once, idempotent.

For each batch: decode, check against the registry, write everything (readings and the alerts
they open or close) in one transaction, produce alert events and dead letters, and only then
commit the Kafka offsets (``offset + 1`` of the last record per
partition).  A crash anywhere before the commit replays the batch; the writes are idempotent on
(sensor_id, ts), so the replay stores nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.partitioner import murmur2

from urbanpulse.core.catalogue import get_kind
from urbanpulse.core.envelope import DEADLETTER_SCHEMA, DeadLetter, Reading
from urbanpulse.core.logs import fields, report_counters
from urbanpulse.core.settings import Settings
from urbanpulse.heartbeat import processor_heartbeats
from urbanpulse.indices.vn_aqi import POLLUTANTS
from urbanpulse.indices.vn_wqi import Combination
from urbanpulse.storage import queries, registry
from urbanpulse.storage.writer import stored_keys, write_readings
from urbanpulse.stream.alerting import AlertStage, observations
from urbanpulse.stream.derive import derive_indices
from urbanpulse.stream.steps import ConsumedRecord, check_registry, decode_records
from urbanpulse.stream.windows import HOUR, HOURS_KEPT, HourlyMeans, HourlySeed, hour_of

log = logging.getLogger(__name__)

RETRY_DELAY_S = 1.0


@dataclass
class ProcessorCounters:
    consumed: int = 0
    stored: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    registered_pending: int = 0
    batches: int = 0
    write_retries: int = 0
    timer_ticks: int = 0


class StreamProcessor:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, producer: AIOKafkaProducer) -> None:
        self._settings = settings
        self._pool = pool
        self._producer = producer
        self._air_hours = HourlyMeans(POLLUTANTS)
        self._wqi_combination = Combination(settings.stream.wqi_combination)
        self._assignment: frozenset[TopicPartition] = frozenset()
        self._partition_count = 0
        self.alerts = AlertStage(settings, producer)
        self.counters = ProcessorCounters()
        self.assigned = asyncio.Event()
        self.last_commit_at: datetime | None = None  # heartbeats report it (urbanpulse.heartbeat)

    async def run(self, stop: asyncio.Event) -> None:
        kafka = self._settings.kafka
        consumer = AIOKafkaConsumer(
            kafka.topic("readings"),
            bootstrap_servers=kafka.bootstrap_servers,
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
        heartbeat = asyncio.create_task(processor_heartbeats(self._settings, self._producer, self))
        try:
            while not stop.is_set():
                batches = await consumer.getmany(
                    timeout_ms=self._settings.stream.batch_timeout_ms,
                    max_records=self._settings.stream.batch_max_records,
                )
                self._follow_assignment(frozenset(consumer.assignment()))
                if batches:
                    await self._process_until_stored(batches, stop)
                    await self._commit(consumer, batches)
                if self.alerts.timer_due() and self._assignment:
                    await self._alert_timer(consumer)
        finally:
            reporter.cancel()
            heartbeat.cancel()
            await consumer.stop()
            log.info("processor stopped", extra=fields(**vars(self.counters)))

    def _follow_assignment(self, assignment: frozenset[TopicPartition]) -> None:
        if assignment != self._assignment:
            # Sensors may have moved to another processor and back: rebuild from the database.
            self._air_hours.forget_all()
            self.alerts.stale = True
            self._assignment = assignment
            log.info(
                "processor assigned %s", sorted(f"{tp.topic}/{tp.partition}" for tp in assignment)
            )
        if assignment:
            self.assigned.set()

    async def _process_until_stored(
        self, batches: dict[TopicPartition, list[ConsumerRecord]], stop: asyncio.Event
    ) -> None:
        records = [
            ConsumedRecord(r.topic, r.partition, r.offset, r.value)
            for partition_records in batches.values()
            for r in partition_records
        ]
        while True:
            try:
                await self._process(records)
                return
            # InternalClientError: a pooled connection whose server was killed (found by the soak).
            except (
                asyncpg.PostgresError,
                asyncpg.InterfaceError,
                asyncpg.InternalClientError,
                OSError,
                KafkaError,
            ) as exc:
                # Keep the batch and try again: offsets stay uncommitted until it is stored.
                # The window may hold part of the failed batch: rebuild it from what is stored.
                self._air_hours.forget_all()
                self.alerts.stale = True
                self.counters.write_retries += 1
                log.warning("batch not stored (%r); retrying in %.0fs", exc, RETRY_DELAY_S)
                if stop.is_set():
                    raise
                await asyncio.sleep(RETRY_DELAY_S)

    async def _process(self, records: list[ConsumedRecord]) -> None:
        now = datetime.now(UTC)
        decoded = decode_records(records, now)
        async with self._pool.acquire() as conn, conn.transaction():
            if self.alerts.stale:
                await self.alerts.rebuild(conn)
            known = await registry.lookup(conn, (r.sensor_id for r in decoded.accepted))
            checked = check_registry(
                decoded.accepted, known, self._settings.stream.provisioning, now
            )
            await registry.register(conn, checked.to_register, overwrite=False)
            fresh = await self._not_stored_yet(conn, checked.accepted)
            await self._seed_window(conn, fresh)
            derived = derive_indices(fresh, self._air_hours, self._wqi_combination)
            result = await write_readings(conn, fresh, derived)
            seen = observations(fresh, derived, known, self._air_hours, self.alerts.rules)
            alerting = await self.alerts.evaluate(conn, seen, now)
        self.alerts.commit(alerting, now)
        await self.alerts.publish()
        dead_letters = decoded.dead_letters + checked.dead_letters
        await self._dead_letter(dead_letters)
        c = self.counters
        c.batches += 1
        c.consumed += len(records)
        c.stored += result.inserted
        c.duplicates += len(checked.accepted) - result.inserted
        c.dead_letters += len(dead_letters)
        c.registered_pending += len(checked.to_register)
        log.debug(
            "batch stored",
            extra=fields(records=len(records), inserted=result.inserted, dead=len(dead_letters)),
        )

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
        self.counters.timer_ticks += 1
        try:
            caught_up = await self._lag(consumer) < self._settings.stream.batch_max_records
            await self.alerts.on_timer(self._pool, self._owns, check_staleness=caught_up)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, KafkaError) as exc:
            self.alerts.stale = True
            log.warning("alert timer failed (%r); retrying at the next tick", exc)

    async def _lag(self, consumer: AIOKafkaConsumer) -> int:
        topic = self._settings.kafka.topic("readings")
        self._partition_count = len(consumer.partitions_for_topic(topic) or ())
        lag = 0
        for tp in self._assignment:
            high = consumer.highwater(tp)
            if high is not None:
                lag += max(0, high - await consumer.position(tp))
        return lag

    def _owns(self, sensor_id: str) -> bool:
        """Whether ``sensor_id``'s readings come to this processor (Kafka's key partitioner)."""
        if not self._partition_count:
            return False
        partition = (murmur2(sensor_id.encode()) & 0x7FFFFFFF) % self._partition_count
        return any(tp.partition == partition for tp in self._assignment)

    async def _dead_letter(self, dead_letters: list[DeadLetter]) -> None:
        topic = self._settings.kafka.topic("deadletter")
        acks = [
            await self._producer.send(topic, d.to_json(), headers=[("schema", DEADLETTER_SCHEMA)])
            for d in dead_letters
        ]
        for dead in dead_letters:
            log.warning("dead-lettered %s: %s", dead.source, dead.reason)
        await asyncio.gather(*acks)

    async def _commit(
        self, consumer: AIOKafkaConsumer, batches: dict[TopicPartition, list[ConsumerRecord]]
    ) -> None:
        offsets = {tp: records[-1].offset + 1 for tp, records in batches.items()}
        try:
            await consumer.commit(offsets)
            self.last_commit_at = datetime.now(UTC)
        except CommitFailedError as exc:
            # The group rebalanced: the new owner replays the batch and the writes absorb it.
            log.warning("offset commit failed after rebalance (%r); batch will be replayed", exc)
