"""The live feed: Kafka readings and alerts fanned out to WebSocket clients.

One consumer per API process reads ``<prefix>.readings`` and ``<prefix>.alerts`` from their end,
without a consumer group (no commits: a live view has nothing to resume).  The :class:`Hub`
offers each record to every client whose :class:`Subscription` matches; each client has a
:class:`Outbox`, a bounded queue that coalesces readings to the latest per sensor.  Publishing
never awaits a client, so a slow client cannot stall the others: its outbox absorbs bursts by
coalescing and, once full, marks it overflowed, and its sender closes it (code 1013).  The hub
knows each client's API key, so it can cap clients per key and close a revoked key's clients
(:func:`watch_revocations`).

Records are read with the producers' own formats: readings with the envelope's
:func:`~urbanpulse.core.envelope.decode_readings` (a record holds one or several), alerts as
the processor's lifecycle events
(``urbanpulse.stream.alerting.event_json``: ``{"event", "at", "alert": {...}}``, or an
incident's ``{"event": "incident_...", "at", "incident": {...}}``), and clients get alerts and
incidents in that same shape; an alert that is a member of an incident is not sent on its own
(a storm is a few incident events, not thousands that would overflow every client).
A record that cannot be read (not JSON, wrong shape, too large)
is counted in :attr:`Hub.metrics`, logged at most once per ``REJECT_LOG_INTERVAL_S`` and
skipped: one bad record never stops the feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from pydantic import TypeAdapter, ValidationError

from urbanpulse.alerts.incidents import Incident, IncidentEventType
from urbanpulse.alerts.model import Alert, EventType
from urbanpulse.api.params import BBox
from urbanpulse.core import metrics as m
from urbanpulse.core.envelope import (
    EnvelopeError,
    Reading,
    RecordReadings,
    decode_readings,
    schema_header,
)
from urbanpulse.core.logs import report_counters
from urbanpulse.core.settings import DbRole, KafkaSettings, Settings
from urbanpulse.core.untrusted import preview
from urbanpulse.storage.db import connect
from urbanpulse.storage.keys import REVOKED_CHANNEL, active_key_ids

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.25
MAX_PENDING_SENSORS = 20_000
MAX_PENDING_ALERTS = 500
OVERLOAD_CLOSE_CODE = 1013  # "try again later"
DIRECTORY_REFRESH_S = 30.0
KEY_RECHECK_S = 30.0  # live sockets' keys checked against the table (missed notifications)
# An alert event is well under 4 KiB and the bridge's records of readings at most 16 KiB;
# anything this big is not one.
MAX_RECORD_BYTES = 64 * 1024
REJECT_LOG_INTERVAL_S = 60.0
REASON_CHARS = 200


class BadRecord(ValueError):
    """A Kafka record the live feed cannot show; the message says why, briefly."""


@dataclass(frozen=True)
class AlertEventRecord:
    """An alert lifecycle event as the processor publishes it (``event_json``)."""

    event: EventType
    at: datetime
    alert: Alert
    # The outbox's id of this event: a relay that crashed after Kafka's ack sends it again with
    # the same id, so clients can drop the repeat.
    event_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        message = {"event": self.event.value, "at": self.at, "alert": self.alert.to_dict()}
        if self.event_id is not None:
            message["event_id"] = self.event_id
        return message


@dataclass(frozen=True)
class IncidentEventRecord:
    """An incident's lifecycle event (storms grouped), on the alerts topic too."""

    event: IncidentEventType
    at: datetime
    incident: Incident
    event_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        message = {"event": self.event.value, "at": self.at, "incident": self.incident.to_dict()}
        if self.event_id is not None:
            message["event_id"] = self.event_id
        return message


# Validates against the Alert and Incident dataclasses themselves, so the two sides cannot
# drift apart; other fields the producer may add later are ignored.
_ALERT_EVENT = TypeAdapter(AlertEventRecord)
_INCIDENT_EVENT = TypeAdapter(IncidentEventRecord)
_INCIDENT_EVENTS = frozenset(IncidentEventType)


@dataclass(frozen=True)
class _EventName:
    event: str = ""


_EVENT_NAME = TypeAdapter(_EventName)  # which of the two shapes a record is


def decode_alert_event(value: bytes | None) -> AlertEventRecord | IncidentEventRecord:
    raw = _bounded(value)
    try:
        # The event's name says which shape it is; anything else is read as an alert event.
        head = _EVENT_NAME.validate_json(raw)
        if head.event in _INCIDENT_EVENTS:
            return _INCIDENT_EVENT.validate_json(raw)
        return _ALERT_EVENT.validate_json(raw)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "record"
        raise BadRecord(f"not an alert event: {where}: {first['msg']}") from None


def decode_reading_record(value: bytes | None, schema: bytes | None = None) -> RecordReadings:
    try:
        return decode_readings(_bounded(value), schema)
    except EnvelopeError as exc:
        raise BadRecord(str(exc)) from None


def _bounded(value: bytes | None) -> bytes:
    if value is None:
        raise BadRecord("no value")
    if len(value) > MAX_RECORD_BYTES:
        raise BadRecord(f"{len(value)} bytes, more than the {MAX_RECORD_BYTES} a record may have")
    return value


def feed_counters(metrics: m.Metrics) -> m.CounterView:
    """The live feed's numbers by name: records offered to clients, records skipped."""
    return m.CounterView(
        metrics,
        {
            "readings": m.Series(m.LIVE_RECORDS, {"kind": "reading"}),
            "alerts": m.Series(m.LIVE_RECORDS, {"kind": "alert"}),
            "rejected": m.Series(m.LIVE_RECORDS, {"kind": "rejected"}),
        },
    )


class RejectLog:
    """Logs a skipped record at most once per interval, saying how many went unlogged."""

    def __init__(
        self,
        interval_s: float = REJECT_LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._next: float | None = None
        self._held = 0

    def note(self, topic: str, reason: str, value: bytes | None) -> None:
        now = self._clock()
        if self._next is not None and now < self._next:
            self._held += 1
            return
        log.warning(
            "live feed: skipped a record on %s (%s; %d more skipped since the last report): %s",
            topic,
            reason,
            self._held,
            preview(value, 120),
        )
        self._next, self._held = now + self.interval_s, 0


@dataclass(frozen=True)
class Place:
    """Where a sensor is: what the subscription filters need to know about it."""

    kind: str
    lon: float | None
    lat: float | None
    areas: frozenset[str]  # its area and every area above it


@dataclass(frozen=True)
class Subscription:
    kinds: frozenset[str] | None = None
    areas: frozenset[str] | None = None
    bbox: BBox | None = None
    readings: bool = True
    alerts: bool = True

    def matches(self, kind: str | None, place: Place | None, lon_lat: Any = None) -> bool:
        if self.kinds is not None and (kind is None or kind not in self.kinds):
            return False
        if self.areas is not None and (place is None or not (self.areas & place.areas)):
            return False
        if self.bbox is not None:
            lon, lat = lon_lat or ((place.lon, place.lat) if place else (None, None))
            if lon is None or lat is None or not self.bbox.contains(lon, lat):
                return False
        return True

    def to_json(self) -> dict[str, Any]:
        return {
            "kinds": None if self.kinds is None else sorted(self.kinds),
            "areas": None if self.areas is None else sorted(self.areas),
            "bbox": None if self.bbox is None else self.bbox.as_list(),
            "readings": self.readings,
            "alerts": self.alerts,
        }


class Outbox:
    """One client's bounded queue: latest reading per sensor, and alerts in order."""

    def __init__(
        self, max_sensors: int = MAX_PENDING_SENSORS, max_alerts: int = MAX_PENDING_ALERTS
    ) -> None:
        self.max_sensors = max_sensors
        self.max_alerts = max_alerts
        self.readings: dict[str, dict[str, Any]] = {}
        self.alerts: list[dict[str, Any]] = []
        self.overflowed = False
        self.coalesced = 0  # readings replaced by a newer one before being sent
        self.wakeup = asyncio.Event()

    def offer_reading(self, reading: dict[str, Any]) -> None:
        sensor_id = reading["sensor_id"]
        pending = self.readings.get(sensor_id)
        if pending is not None:
            self.coalesced += 1
            if _instant(pending["ts"]) > _instant(reading["ts"]):
                return  # a late reading never replaces a newer one
        elif len(self.readings) >= self.max_sensors:
            self.overflowed = True
            return
        self.readings[sensor_id] = reading
        self.wakeup.set()

    def offer_alert(self, alert: dict[str, Any]) -> None:
        if len(self.alerts) >= self.max_alerts:
            self.overflowed = True
            return
        self.alerts.append(alert)
        self.wakeup.set()

    def take(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(alerts, readings) waiting, oldest alert first; the outbox is left empty."""
        alerts, readings = self.alerts, list(self.readings.values())
        self.alerts, self.readings = [], {}
        self.wakeup.clear()
        return alerts, readings

    def __len__(self) -> int:
        return len(self.alerts) + len(self.readings)


def _instant(ts: Any) -> datetime:
    if isinstance(ts, datetime):
        return ts
    try:
        return datetime.fromisoformat(str(ts))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


@dataclass(eq=False)
class Client:
    subscription: Subscription
    outbox: Outbox = field(default_factory=Outbox)
    key_id: int | None = None  # the API key it connected with; None: anonymous (public_read)
    close_reason: str | None = None  # set: its sender closes it (key revoked)

    def close(self, reason: str) -> None:
        self.close_reason = reason
        self.outbox.wakeup.set()


class Hub:
    """Fan-out of readings and alerts to subscribed clients; never blocks on a client."""

    def __init__(self, directory: SensorDirectory | None = None) -> None:
        self.clients: set[Client] = set()
        self.directory = directory or SensorDirectory()
        self.metrics = m.Metrics()  # the API process's: served at /metrics
        self.counters = feed_counters(self.metrics)
        self.rejects = RejectLog()

    def connect(
        self, subscription: Subscription, outbox: Outbox | None = None, key_id: int | None = None
    ) -> Client:
        client = Client(subscription, outbox if outbox is not None else Outbox(), key_id)
        self.clients.add(client)
        self.metrics.set(m.LIVE_CLIENTS, len(self.clients))
        return client

    def cap_refusal(self, key_id: int | None, total: int, per_key: int) -> str | None:
        """Why one more client of ``key_id`` would be one too many, or None; counted."""
        if len(self.clients) >= total:
            self.metrics.inc(m.API_REFUSED, guard="live_total")
            return f"the live feed has its {total} clients; try again later"
        if key_id is not None and sum(c.key_id == key_id for c in self.clients) >= per_key:
            self.metrics.inc(m.API_REFUSED, guard="live_per_key")
            return f"this API key has its {per_key} live connections; close one first"
        return None

    def key_ids(self) -> set[int]:
        return {c.key_id for c in self.clients if c.key_id is not None}

    def close_keys(self, key_ids: set[int]) -> None:
        """Close the clients connected with any of ``key_ids`` (revoked keys)."""
        for client in self.clients:
            if client.key_id in key_ids and client.close_reason is None:
                client.close("API key revoked")
                self.metrics.inc(m.LIVE_REVOKED_CLOSES)

    def disconnect(self, client: Client) -> None:
        self.clients.discard(client)
        self.metrics.set(m.LIVE_CLIENTS, len(self.clients))

    def offer_record(
        self, topic: str, is_alert: bool, value: bytes | None, schema: bytes | None = None
    ) -> None:
        """One Kafka record, whatever it holds: offered to the clients, or counted and skipped
        (``schema``: its header, if any).  Of a record of several readings, the good ones are
        offered even when others are bad; the record then counts as rejected too."""
        try:
            if is_alert:
                self.publish_alert(decode_alert_event(value))
                return
            unpacked = decode_reading_record(value, schema)
            for _, reading in unpacked.readings:
                self.publish_reading(reading)
            if unpacked.bad:
                first = unpacked.bad[0]
                raise BadRecord(
                    f"{len(unpacked.bad)} of its {unpacked.count} readings are not readings, "
                    f"the first ([{first.index}]): {first.reason}"
                )
        except Exception as exc:  # containment: no record may stop the feed
            reason = str(exc) if isinstance(exc, BadRecord) else f"{type(exc).__name__}: {exc}"
            self.metrics.inc(m.LIVE_RECORDS, kind="rejected")
            self.rejects.note(topic, preview(reason, REASON_CHARS), value)

    def publish_reading(self, reading: Reading) -> None:
        place = self.directory.get(reading.sensor_id)
        lon_lat = reading.location or _reported_position(reading.values)
        message = {
            "sensor_id": reading.sensor_id,
            "kind": reading.kind,
            "ts": reading.ts,
            "received_at": reading.received_at,
            "values": reading.values,
            "lon": lon_lat[0] if lon_lat else (place.lon if place else None),
            "lat": lon_lat[1] if lon_lat else (place.lat if place else None),
        }
        self.metrics.inc(m.LIVE_RECORDS, kind="reading")
        for client in self.clients:
            sub = client.subscription
            if sub.readings and sub.matches(reading.kind, place, lon_lat):
                client.outbox.offer_reading(message)

    def publish_alert(self, event: AlertEventRecord | IncidentEventRecord) -> None:
        if isinstance(event, IncidentEventRecord):
            kind, sensor_id, area_id = event.incident.kind, None, event.incident.area_id
        elif event.alert.incident_id is not None:
            return  # a storm's member: its incident's events say it (one, not thousands)
        else:
            kind, sensor_id, area_id = event.alert.kind, event.alert.sensor_id, event.alert.area_id
        place = self.directory.get(sensor_id) if sensor_id else None
        if place is None and area_id is not None:
            place = Place(kind, None, None, self.directory.area_path(area_id))
        message = event.to_json()
        self.metrics.inc(m.LIVE_RECORDS, kind="alert")
        for client in self.clients:
            sub = client.subscription
            if sub.alerts and sub.matches(kind, place):
                client.outbox.offer_alert(message)


def _reported_position(values: Mapping[str, float]) -> tuple[float, float] | None:
    """Where a moving sensor (a truck) says it is, in its lat/lon values."""
    if "lat" in values and "lon" in values:
        return values["lon"], values["lat"]
    return None


class SensorDirectory:
    """Sensor places and the area tree, cached from the database and refreshed now and then."""

    def __init__(self) -> None:
        self.places: dict[str, Place] = {}
        self.parents: dict[str, str | None] = {}
        self.loaded_at = 0.0
        self.missing: set[str] = set()  # seen on the feed, not in the cache: refresh soon

    def get(self, sensor_id: str) -> Place | None:
        place = self.places.get(sensor_id)
        if place is None and len(self.missing) < MAX_PENDING_SENSORS:
            self.missing.add(sensor_id)
        return place

    def area_path(self, area_id: str | None) -> frozenset[str]:
        path: set[str] = set()
        while area_id is not None and area_id not in path:
            path.add(area_id)
            area_id = self.parents.get(area_id)
        return frozenset(path)

    def load(
        self,
        sensors: Iterable[tuple[str, str, float | None, float | None, str | None]],
        parents: Mapping[str, str | None],
    ) -> None:
        self.parents = dict(parents)
        self.places = {
            sid: Place(kind, lon, lat, self.area_path(area))
            for sid, kind, lon, lat, area in sensors
        }
        self.loaded_at = time.monotonic()
        self.missing -= self.places.keys()

    async def refresh(self, pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn:
            areas = await conn.fetch("SELECT area_id, parent_id FROM areas")
            sensors = await conn.fetch(
                "SELECT sensor_id, kind, ST_X(location::geometry) AS lon, "
                "ST_Y(location::geometry) AS lat, area_id FROM sensors"
            )
        self.load(
            [(r["sensor_id"], r["kind"], r["lon"], r["lat"], r["area_id"]) for r in sensors],
            {r["area_id"]: r["parent_id"] for r in areas},
        )


async def run_directory(directory: SensorDirectory, pool: asyncpg.Pool) -> None:
    """Keep the directory fresh for as long as the API runs: every DIRECTORY_REFRESH_S, and
    within a second of the feed naming a sensor it does not know (a new registration)."""
    while True:
        try:
            await directory.refresh(pool)
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("live feed: cannot refresh the sensor directory: %s", exc)
        next_full = time.monotonic() + DIRECTORY_REFRESH_S
        await asyncio.sleep(1.0)
        while not directory.missing and time.monotonic() < next_full:
            await asyncio.sleep(1.0)
        directory.missing.clear()


async def watch_revocations(
    settings: Settings, hub: Hub, recheck_s: float = KEY_RECHECK_S, retry_s: float = 2.0
) -> None:
    """Close the live sockets of revoked keys, for as long as the API runs.

    A revocation (API or CLI, any process) notifies ``REVOKED_CHANNEL`` on commit: this process
    hears it on a connection of its own and closes that key's sockets at once.  A notification
    sent while that connection was down is lost, so the keys of the live sockets are also
    checked against the table on every (re)connect and every ``recheck_s`` (which also notices
    a dead connection).
    """

    def on_revoked(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        with contextlib.suppress(ValueError):
            hub.close_keys({int(payload)})

    while True:
        try:
            conn = await connect(settings, DbRole.API)
            try:
                await conn.add_listener(REVOKED_CHANNEL, on_revoked)
                while True:
                    live = hub.key_ids()
                    if live:
                        hub.close_keys(live - await active_key_ids(conn, live))
                    await asyncio.sleep(recheck_s)
            finally:
                with contextlib.suppress(asyncpg.PostgresError, OSError):
                    await conn.close()
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("live feed: cannot watch key revocations (%s); retrying", exc)
        await asyncio.sleep(retry_s)


async def run_kafka_feed(settings: KafkaSettings, hub: Hub, retry_s: float = 2.0) -> None:
    """Consume readings and alerts from their end into ``hub``, reconnecting on errors."""
    reporter = asyncio.create_task(report_counters(log, "live feed", hub.counters))
    try:
        await _follow(settings, hub, retry_s)
    finally:
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter


async def _follow(settings: KafkaSettings, hub: Hub, retry_s: float) -> None:
    readings, alerts = settings.topic("readings"), settings.topic("alerts")
    while True:
        # No group: every partition of both topics is ours, nothing is committed, and a
        # partition with no position starts at its end ("latest").
        consumer = AIOKafkaConsumer(
            **settings.client_kwargs(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            client_id="urbanpulse-api-live",
            metadata_max_age_ms=5000,
        )
        try:
            await consumer.start()
            while not {readings, alerts} <= await consumer.topics():
                await asyncio.sleep(2.0)  # subscribing to missing topics only logs errors
            consumer.subscribe([readings, alerts])
            log.info("live feed: following %s and %s", readings, alerts)
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                for tp, records in batches.items():
                    for record in records:
                        schema = schema_header(record.headers)
                        hub.offer_record(tp.topic, tp.topic == alerts, record.value, schema)
        except (KafkaError, OSError) as exc:
            log.warning("live feed: Kafka unavailable (%s); retrying", exc)
        except Exception:  # a client library fault must not end the feed silently
            log.exception("live feed: the consumer failed; restarting it")
        finally:
            with contextlib.suppress(KafkaError, OSError):
                await consumer.stop()
        await asyncio.sleep(retry_s)
