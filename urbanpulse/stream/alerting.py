"""The processor's alert stage: pure rule evaluation (``urbanpulse.alerts``) around I/O.

Per batch, inside the readings' transaction: observations of the new readings -> engine ->
events stored in ``alerts`` and, in the same transaction, their announcements in the
``alert_outbox`` table.  After the commit the new engine state is kept and the outbox relay
sends the announcements to Kafka ``<prefix>.alerts`` (see :meth:`AlertStage.relay`).
Only active sensors are observed: a pending sensor (unknown until an operator approves it)
raises no alert, neither on its readings nor by going silent.
A processing-time timer handles staleness, area rules, rule-file reloads and operators'
acknowledgements and resolutions made through the API: each tick loads what the database says,
plans with the pure :func:`urbanpulse.stream.tick.plan_tick`, and stores the plan.
The state is kept per Kafka partition (:mod:`urbanpulse.stream.partition_state`); a partition
newly assigned (or whose batch failed) is seeded from the database: active alerts, recently
resolved ones for the cool-down, and its sensors' last-seen times from ``sensor_latest``.

Storms become incidents (``urbanpulse.alerts.incidents``): the events a batch or a tick applied
are grouped, and the incidents' changes are stored and announced in the same transaction.  The
timer also flags active sensors that never reported (a rule with ``never_reported_after``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer

from urbanpulse.alerts import engine, incidents, messages
from urbanpulse.alerts.incidents import IncidentEvent, IncidentEventType, incident_event_id
from urbanpulse.alerts.model import (
    AREA_PREFIX,
    BROADCAST,
    Alert,
    AlertEvent,
    EventType,
    Observation,
    event_id_for,
)
from urbanpulse.alerts.rules import RulesError, RuleSet, load_rules
from urbanpulse.core import metrics as m
from urbanpulse.core.envelope import Reading
from urbanpulse.core.settings import Settings
from urbanpulse.core.untrusted import is_number
from urbanpulse.storage import alerts as store
from urbanpulse.storage import outbox, registry
from urbanpulse.storage.registry import RegisteredSensor
from urbanpulse.storage.writer import DerivedValues
from urbanpulse.stream import tick
from urbanpulse.stream.faults import is_transient
from urbanpulse.stream.partition_state import PartitionState, PartitionStates, partition_for
from urbanpulse.stream.windows import HourlyMeans

log = logging.getLogger(__name__)

ALERT_SCHEMA = b"alert-event/1"
SYNC_MARGIN = timedelta(seconds=30)  # operators' writes may commit a little after they began
RELAY_BATCH = 500  # outbox rows per Kafka round trip
RELAY_POLL_S = 5.0  # the relay also looks by itself: after a failure, or for another's leftovers

LATEST_SQL = """
SELECT l.sensor_id, l.kind, s.area_id, l.ts, l.received_at, l."values", l.derived
FROM sensor_latest l LEFT JOIN sensors s USING (sensor_id)
WHERE s.status = 'active'
"""
# What area rules may count (``tick.area_query``): sensors in an area, of a kind an area rule
# watches, heard recently enough to be fresh.
AREA_LATEST_SQL = (
    LATEST_SQL + "AND s.area_id IS NOT NULL AND l.kind = ANY($1::text[]) AND l.received_at >= $2"
)


@dataclass
class Pending:
    """An evaluation not yet committed: the states to keep once its transaction commits."""

    alerts: dict[int, engine.EngineState]  # partition -> its new alert state
    applied: list[AlertEvent] = field(default_factory=list)  # stored (or by operators)
    synced_at: datetime | None = None
    incident_events: list[IncidentEvent] = field(default_factory=list)


def alert_counters(metrics: m.Metrics) -> m.CounterView:
    """The alert stage's numbers by name, kept in the processor's metrics."""
    return m.CounterView(
        metrics,
        {
            "opened": m.Series(m.ALERT_EVENTS, {"event": "opened"}),
            "resolved": m.Series(m.ALERT_EVENTS, {"event": "resolved"}),
            "published": m.Series(m.ALERTS_PUBLISHED),
            "relay_failures": m.Series(m.ALERT_RELAY_FAILURES),
            "sensors_forgotten": m.Series(m.ALERT_SENSORS_FORGOTTEN),
            "rule_reloads": m.Series(m.ALERT_RULE_RELOADS, {"result": "ok"}),
            "rule_reload_errors": m.Series(m.ALERT_RULE_RELOADS, {"result": "error"}),
            "incidents_opened": m.Series(m.INCIDENT_EVENTS, {"event": "opened"}),
            "incidents_resolved": m.Series(m.INCIDENT_EVENTS, {"event": "resolved"}),
        },
    )


def event_json(event: AlertEvent | IncidentEvent, at: datetime) -> bytes:
    """An alert's lifecycle event ``{"event", "event_id", "at", "alert"}``, or an incident's
    ``{"event": "incident_opened|incident_updated|incident_resolved", ..., "incident"}``."""
    if isinstance(event, IncidentEvent):
        body = {
            "event": event.type.value,
            "event_id": incident_event_id(event),
            "at": at,
            "incident": event.incident.to_dict(),
        }
    else:
        body = {
            "event": event.type.value,
            "event_id": event_id_for(event),
            "at": at,
            "alert": event.alert.to_dict(),
        }
    return orjson.dumps(body, option=orjson.OPT_UTC_Z)


def outbox_rows(
    events: Iterable[AlertEvent],
    at: datetime,
    grouped: incidents.Outcome | None = None,
) -> list[outbox.OutboxRow]:
    """The announcements of ``events`` (those an operator's screen needs), keyed by alert, each
    naming its incident; then the incidents' own events, keyed by incident."""
    incident_of = grouped.incident_of if grouped is not None else {}
    rows = []
    for e in events:
        if e.type not in BROADCAST:
            continue
        incident_id = incident_of.get(e.alert.alert_id, e.alert.incident_id)
        if incident_id != e.alert.incident_id:
            e = AlertEvent(e.type, replace(e.alert, incident_id=incident_id))
        rows.append(outbox.OutboxRow(event_id_for(e), e.alert.alert_id.encode(), event_json(e, at)))
    for i in grouped.events if grouped is not None else []:
        key = i.incident.incident_id.encode()
        rows.append(outbox.OutboxRow(incident_event_id(i), key, event_json(i, at)))
    return rows


def observations(
    readings: Iterable[Reading],
    derived: DerivedValues,
    known: Mapping[str, RegisteredSensor],
    hours: HourlyMeans,
    rules: RuleSet,
) -> list[Observation]:
    """What the rules see of each new reading of an active sensor: values, numeric indices,
    windowed means.  Pending sensors (and those registered by this very batch) are left out."""
    result = []
    for r in readings:
        registered = known.get(r.sensor_id)
        if registered is None or registered.status != "active":
            continue
        values = dict(r.values)
        indices = derived.get((r.sensor_id, r.ts))
        for name, value in indices.items() if indices else ():
            if is_number(value):
                values[name] = float(value)
        spans = rules.of_kind(r.kind).windows
        windows = window_means(hours, r.sensor_id, r.ts, spans) if spans else {}
        result.append(
            Observation(
                r.sensor_id, r.kind, r.ts, r.received_at, values, registered.area_id, windows
            )
        )
    return result


def window_means(
    hours: HourlyMeans, sensor_id: str, ts: datetime, spans: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], tuple[float, int]]:
    """(metric, hours) -> :meth:`HourlyMeans.mean_over` of each span that has data."""
    means = {}
    for metric, span in spans:
        if (mean := hours.mean_over(sensor_id, ts, span, metric)) is not None:
            means[(metric, span)] = mean
    return means


class AlertStage:
    """The alert rules around the processor's per-partition state (:mod:`partition_state`).

    Who evaluates what, with several processors in one consumer group:

    - a sensor's rules and staleness: the owner of its partition, from its own tracks;
    - an area's rules: the owner of the partition the area id maps to, on its timer, from the
      area's sensors as stored (no partition sees them all);
    - incidents: whoever applies an alert event of the group, in the same transaction, under a
      transaction-level advisory lock per group, from the group's incident state as stored.
      Processors serialise on the lock and each sees its predecessor's commit, so a storm spread
      over every partition still makes one incident, announced once.
    """

    def __init__(self, settings: Settings, producer: AIOKafkaProducer, metrics: m.Metrics) -> None:
        self._settings = settings
        self._producer = producer
        self._topic = settings.kafka.topic("alerts")
        self._path = Path(settings.alerts.rules_path)
        self._default_cooldown = timedelta(seconds=settings.alerts.default_cooldown_s)
        self._mtime = self._path.stat().st_mtime_ns
        # A bad rule file at start-up stops the processor with the file's problems.
        self._use(load_rules(self._path, self._default_cooldown))
        log.info("alert rules: %d from %s", len(self.rules), self._path)
        self.policy = incidents.Policy(
            settings.alerts.incident_min_members,
            timedelta(seconds=settings.alerts.incident_window_s),
        )
        self._synced_at: datetime | None = None
        self._next_timer = 0.0
        self._relay_wake = asyncio.Event()
        self.counters = alert_counters(metrics)

    def _use(self, rules: RuleSet) -> None:
        self.rules = rules
        self.sensor_rules = rules.per_sensor()

    # --- per partition and per batch --------------------------------------------------------

    async def seed(
        self, conn: asyncpg.Connection, states: Iterable[PartitionState], partitions: int
    ) -> None:
        """Load the alert state of ``states`` (partitions newly assigned, or dropped after a
        failed batch): their sensors' and areas' active alerts, the recently resolved ones for
        the cool-down, and their sensors' last-seen times from ``sensor_latest``."""
        wanted = {state.partition: state for state in states}
        if not wanted:
            return
        longest = max((r.cooldown or timedelta(0) for r in self.rules), default=timedelta(0))
        now = await store.latest_clock(conn)
        alerts: dict[int, list[Alert]] = {}
        for alert in await store.load_for_rebuild(conn, now - longest):
            owner = partition_for(alert.subject.removeprefix(AREA_PREFIX), partitions)
            alerts.setdefault(owner, []).append(alert)
        sensors: dict[int, dict[str, engine.SensorSeen]] = {}
        for row in await conn.fetch(LATEST_SQL):
            owner = partition_for(row["sensor_id"], partitions)
            sensors.setdefault(owner, {})[row["sensor_id"]] = _seen(row)
        for partition, state in wanted.items():
            state.alerts = engine.rebuild(alerts.get(partition, []), sensors.get(partition, {}))
            state.seeded = True
        self._synced_at = self._synced_at or now
        active = sum(
            1
            for s in wanted.values()
            for t in s.alerts.tracks.values()
            if t.alert and t.alert.active
        )
        log.info(
            "alert state seeded for partitions %s: %d active alerts, %d sensors",
            sorted(wanted),
            active,
            sum(len(s.alerts.sensors) for s in wanted.values()),
        )

    async def changes(self, conn: asyncpg.Connection) -> tuple[list[Alert], datetime]:
        """Alerts written since the last look (operators' acknowledgements and resolutions
        among them), and the database's clock for the next look."""
        clock = await store.latest_clock(conn)
        return await store.load_changed(conn, (self._synced_at or clock) - SYNC_MARGIN), clock

    async def apply(
        self,
        conn: asyncpg.Connection,
        alerts: dict[int, engine.EngineState],
        by_operators: list[AlertEvent],
        raised: list[AlertEvent],
        synced_at: datetime,
        now: datetime,
    ) -> Pending:
        """Store ``raised`` (inside the caller's transaction), group the applied events into
        incidents, store those and queue every announcement; keep it with :meth:`commit`."""
        keys = await _lock_groups(conn, [*by_operators, *raised])
        before = await _groups_before(conn, keys, by_operators) if keys else None
        written = await store.apply_events(conn, raised) if raised else []
        applied = by_operators + written
        grouped = None
        if before is not None:
            titles = {r.id: messages.incident_title(r) for r in self.rules}
            grouped = incidents.group(before, applied, self.policy, now, titles)
            await store.apply_incidents(conn, [e.incident for e in grouped.events], grouped.joined)
        await outbox.enqueue(conn, outbox_rows(applied, now, grouped))
        return Pending(alerts, applied, synced_at, grouped.events if grouped else [])

    def commit(self, states: PartitionStates, pending: Pending) -> None:
        """The transaction committed: keep the states and let the relay send the events."""
        for partition, alerts in pending.alerts.items():
            state = states.get(partition)
            if state is not None:
                state.alerts, forgotten = engine.forget_silent(alerts, states.tracked_per_partition)
                self.counters.sensors_forgotten += forgotten
        for incident_event in pending.incident_events:
            i = incident_event.incident
            if incident_event.type is IncidentEventType.OPENED:
                self.counters.incidents_opened += 1
            elif incident_event.type is IncidentEventType.RESOLVED:
                self.counters.incidents_resolved += 1
            log.info(
                "incident %s %s: %s, %d of %d members active in %s",
                i.incident_id,
                incident_event.type.value,
                i.rule_id,
                i.active_count,
                i.member_count,
                i.group,
            )
        if pending.synced_at is not None:
            self._synced_at = pending.synced_at
        for event in pending.applied:
            if event.type in BROADCAST:
                if event.type.value in ("opened", "reopened"):
                    self.counters.opened += 1
                elif event.type.value == "resolved":
                    self.counters.resolved += 1
                log.info(
                    "alert %s %s: %s",
                    event.alert.alert_id,
                    event.type.value,
                    event.alert.message_en,
                )
        if pending.applied or pending.incident_events:
            self._relay_wake.set()

    # --- the outbox relay ---------------------------------------------------------------------

    async def relay(self, pool: asyncpg.Pool, stop: asyncio.Event) -> None:
        """Send the outbox to Kafka until ``stop``, then once more; run it as a task.

        It starts with what a previous process left.  Delivery is effectively once, not
        strictly once: a crash between Kafka's ack and the deletion of the rows sends them
        again on restart, with the same event id (in the value and the ``event_id`` header),
        on which consumers dedupe.  Strictly once would need Kafka transactions spanning the
        database commit, which no transaction manager here offers.
        """
        delay = self._settings.stream.outbox_relay_delay_s
        self._relay_wake.set()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._relay_wake.wait(), RELAY_POLL_S)
            self._relay_wake.clear()
            if delay:
                await asyncio.sleep(delay)
            await self._drain(pool)
        await self._drain(pool)

    async def _drain(self, pool: asyncpg.Pool) -> None:
        try:
            async with pool.acquire() as conn:
                while await outbox.drain(conn, self._send, RELAY_BATCH) == RELAY_BATCH:
                    pass
        except Exception as exc:  # the relay must outlive any failure: the rows wait for it
            self.counters.relay_failures += 1
            level = logging.WARNING if is_transient(exc) else logging.ERROR
            log.log(
                level, "alert events not sent yet (%s: %.300s); retrying", type(exc).__name__, exc
            )

    async def _send(self, rows: list[outbox.OutboxRow]) -> None:
        acks = [
            await self._producer.send(
                self._topic,
                row.payload,
                key=row.key,
                headers=[("schema", ALERT_SCHEMA), ("event_id", row.event_id.encode())],
            )
            for row in rows
        ]
        for ack in acks:
            await ack
        self.counters.published += len(rows)

    # --- the processing-time timer -----------------------------------------------------------

    def timer_due(self) -> bool:
        return time.monotonic() >= self._next_timer

    async def on_timer(
        self, pool: asyncpg.Pool, states: PartitionStates, check_staleness: bool
    ) -> None:
        """One tick (:mod:`urbanpulse.stream.tick`): load, plan, store.  Staleness of the
        sensors of the partitions owned and the rules of the areas owned only once caught up
        (a backlog is not silence); operators' changes always."""
        self._next_timer = time.monotonic() + self._settings.alerts.check_interval_s
        self.reload_if_changed()
        now = datetime.now(UTC)
        async with pool.acquire() as conn, conn.transaction():
            loaded, synced_at = await self._load_tick(conn, states, check_staleness, now)
            alerts = {s.partition: s.alerts for s in states}
            plan = tick.plan_tick(alerts, loaded, self.rules, states.partitions, now)
            pending = await self.apply(
                conn, plan.alerts, plan.by_operators, plan.raised, synced_at, now
            )
        self.commit(states, pending)

    async def _load_tick(
        self, conn: asyncpg.Connection, states: PartitionStates, caught_up: bool, now: datetime
    ) -> tuple[tick.TickLoaded, datetime]:
        """What a tick needs from the database, and the clock of the alerts read."""
        await self.seed(conn, [s for s in states if not s.seeded], states.partitions)
        changed, synced_at = await self.changes(conn)
        if not caught_up:
            return tick.TickLoaded(changed), synced_at
        unheard = await self._unheard(conn)
        area_sensors = await self._area_sensors(conn, now) if len(states) else {}
        return tick.TickLoaded(changed, True, unheard, area_sensors), synced_at

    async def _area_sensors(
        self, conn: asyncpg.Connection, now: datetime
    ) -> dict[str, engine.SensorSeen]:
        """The stored latest readings an area rule may count, in every area: the plan keeps
        those of the areas this processor owns."""
        query = tick.area_query(self.rules, now)
        if query is None:
            return {}
        kinds, since = query
        rows = await conn.fetch(AREA_LATEST_SQL, kinds, since)
        return {row["sensor_id"]: _seen(row) for row in rows}

    async def _unheard(self, conn: asyncpg.Connection) -> dict[str, engine.Unheard] | None:
        """Active sensors that never reported, when a rule watches for them."""
        if not any(r.is_never_reported for r in self.rules):
            return None
        return {
            s.sensor_id: engine.Unheard(s.kind, s.area_id, s.registered_at)
            for s in await registry.never_reported(conn)
        }

    def reload_if_changed(self) -> None:
        try:
            mtime = self._path.stat().st_mtime_ns
        except OSError as exc:
            log.error("alert rules %s unreadable (%s); keeping the current rules", self._path, exc)
            return
        if mtime == self._mtime:
            return
        self._mtime = mtime
        try:
            rules = load_rules(self._path, self._default_cooldown)
        except RulesError as exc:
            self.counters.rule_reload_errors += 1
            log.error("alert rules not reloaded, keeping the current ones:\n%s", exc)
            return
        self._use(rules)
        self.counters.rule_reloads += 1
        log.info("alert rules reloaded: %d from %s", len(rules), self._path)


async def _lock_groups(
    conn: asyncpg.Connection, events: Iterable[AlertEvent]
) -> list[incidents.GroupKey]:
    """Take the incident groups of ``events`` for this transaction, in one order everywhere
    (no deadlock between processors); before any alert row is written, so that whoever writes
    an alert of a group holds its lock."""
    keys = sorted({key for e in events if (key := incidents.key_of(e.alert)) is not None})
    for key in keys:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", group_lock_id(key))
    return keys


async def _groups_before(
    conn: asyncpg.Connection, keys: list[incidents.GroupKey], by_operators: list[AlertEvent]
) -> incidents.Grouping:
    """The incident groups ``keys`` as they were before this step's events, which the grouping
    applies: read before the step's own events are stored, and with the members operators
    resolved through the API (stored already, announced in this step) still counted active."""
    found, members, waiting = await store.load_incidents(conn, keys)
    undone = {e.alert.alert_id for e in by_operators if e.type is EventType.RESOLVED}
    return incidents.rebuild(
        found, [(a, i, active or a in undone) for a, i, active in members], waiting
    )


def group_lock_id(key: incidents.GroupKey) -> int:
    """A signed 64-bit advisory lock id for an incident group, stable across processes."""
    digest = hashlib.blake2b("|".join(("incident", *key)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _seen(row: asyncpg.Record) -> engine.SensorSeen:
    values: dict[str, float] = {}
    for blob in (row["values"], row["derived"]):
        data = orjson.loads(blob) if isinstance(blob, str | bytes) else (blob or {})
        values.update({k: float(v) for k, v in data.items() if is_number(v)})
    return engine.SensorSeen(row["kind"], row["area_id"], row["received_at"], row["ts"], values)
