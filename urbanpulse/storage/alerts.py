"""The ``alerts`` table: lifecycle writes from the processor, queries and transitions for the API.

One non-resolved alert per (rule, subject) is guaranteed by a partial unique index, whatever
any process believes; the processor's writes happen in the transaction of the readings that
caused them, so a crash can store neither without the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from urbanpulse.alerts.incidents import GroupKey, Incident, IncidentState
from urbanpulse.alerts.model import Alert, AlertEvent, AlertState, EventType
from urbanpulse.core.vocabulary import Severity
from urbanpulse.storage.geo import SUBTREE_SQL

ALERTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    alert_id            text PRIMARY KEY,
    rule_id             text NOT NULL,
    subject             text NOT NULL,
    sensor_id           text,
    area_id             text,
    kind                text NOT NULL,
    metric              text,
    severity            text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    state               text NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
    opened_at           timestamptz NOT NULL,
    last_triggered_at   timestamptz NOT NULL,
    trigger_count       integer NOT NULL DEFAULT 1,
    acknowledged_at     timestamptz,
    acknowledged_by     text,
    acknowledged_note   text,
    resolved_at         timestamptz,
    resolved_by         text,
    resolved_note       text,
    value               double precision,
    threshold           double precision,
    message_vi          text NOT NULL,
    message_en          text NOT NULL,
    location            geography(Point, 4326),
    created_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at          timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE UNIQUE INDEX IF NOT EXISTS alerts_one_active_idx
    ON alerts (rule_id, subject) WHERE state <> 'resolved';
CREATE INDEX IF NOT EXISTS alerts_opened_at_idx ON alerts (opened_at DESC);
CREATE INDEX IF NOT EXISTS alerts_updated_at_idx ON alerts (updated_at);
CREATE INDEX IF NOT EXISTS alerts_area_idx ON alerts (area_id);
CREATE INDEX IF NOT EXISTS alerts_location_gix ON alerts USING gist (location);

-- Storms grouped: many alerts of one rule in one area at once (urbanpulse.alerts.incidents).
CREATE TABLE IF NOT EXISTS incidents (
    incident_id     text PRIMARY KEY,
    rule_id         text NOT NULL,
    kind            text NOT NULL,
    group_key       text NOT NULL,
    area_id         text,
    severity        text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    state           text NOT NULL CHECK (state IN ('open', 'resolved')),
    opened_at       timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    resolved_at     timestamptz,
    member_count    integer NOT NULL,
    active_count    integer NOT NULL,
    revision        integer NOT NULL,
    title_vi        text NOT NULL,
    title_en        text NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS incidents_one_open_idx
    ON incidents (rule_id, kind, group_key) WHERE state = 'open';
CREATE INDEX IF NOT EXISTS incidents_opened_at_idx ON incidents (opened_at DESC);
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS incident_id text;
CREATE INDEX IF NOT EXISTS alerts_incident_idx ON alerts (incident_id);
"""

FIELDS = (
    "alert_id, rule_id, subject, sensor_id, area_id, kind, metric, severity, state, opened_at, "
    "last_triggered_at, trigger_count, acknowledged_at, acknowledged_by, acknowledged_note, "
    "resolved_at, resolved_by, resolved_note, value, threshold, message_vi, message_en, "
    "incident_id"
)
# Page 1 shows what matters most: critical first, then the newest.
SEVERITY_RANK = "CASE severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END"
SELECT_SQL = (
    f"SELECT {FIELDS}, ST_X(location::geometry) AS lon, ST_Y(location::geometry) AS lat, "
    "created_at, updated_at FROM alerts"
)

INSERT_SQL = """
INSERT INTO alerts (alert_id, rule_id, subject, sensor_id, area_id, kind, metric, severity, state,
                    opened_at, last_triggered_at, trigger_count, value, threshold, message_vi,
                    message_en, resolved_at, resolved_by, location)
SELECT $1::text, $2::text, $3::text, $4::text, COALESCE($5::text, s.area_id), $6::text,
       $7::text, $8::text, $9::text, $10::timestamptz, $11::timestamptz, $12::int, $13::float8,
       $14::float8, $15::text, $16::text, $17::timestamptz, $18::text,
       COALESCE(s.location, (SELECT ST_PointOnSurface(a.geom)::geography FROM areas a
                             WHERE a.area_id = COALESCE($5::text, s.area_id)))
FROM (SELECT 1) AS one LEFT JOIN sensors s ON s.sensor_id = $4::text
ON CONFLICT DO NOTHING
"""

# The engine's view of an alert it already stored.  An operator's acknowledgement is kept; an
# alert an operator resolved is not touched again (except to re-open it within the cool-down,
# and never while another alert of the same rule and subject is active).
UPDATE_SQL = """
UPDATE alerts a SET
    state = CASE WHEN $2::text = 'resolved' THEN 'resolved'
                 WHEN a.state = 'resolved' THEN 'open' ELSE a.state END,
    last_triggered_at = GREATEST(a.last_triggered_at, $3::timestamptz),
    value = $4::float8, message_vi = $5::text, message_en = $6::text,
    trigger_count = GREATEST(a.trigger_count, $7::int),
    resolved_at = CASE WHEN $2::text = 'resolved' THEN $8::timestamptz END,
    resolved_by = CASE WHEN $2::text = 'resolved' THEN $9::text END,
    resolved_note = CASE WHEN $2::text = 'resolved' THEN $10::text END,
    updated_at = clock_timestamp()
WHERE a.alert_id = $1::text
  AND (a.state <> 'resolved'
       OR ($11::boolean AND NOT EXISTS (SELECT 1 FROM alerts o
                                        WHERE o.rule_id = a.rule_id AND o.subject = a.subject
                                          AND o.state <> 'resolved'
                                          AND o.alert_id <> a.alert_id)))
"""


class TransitionError(ValueError):
    """An operator's action the alert's state does not allow (HTTP 409)."""


def alert_from_row(row: asyncpg.Record | dict[str, Any]) -> Alert:
    return Alert(
        alert_id=row["alert_id"],
        rule_id=row["rule_id"],
        subject=row["subject"],
        kind=row["kind"],
        severity=Severity(row["severity"]),
        state=AlertState(row["state"]),
        opened_at=row["opened_at"],
        last_triggered_at=row["last_triggered_at"],
        value=row["value"],
        threshold=row["threshold"],
        message_vi=row["message_vi"],
        message_en=row["message_en"],
        sensor_id=row["sensor_id"],
        area_id=row["area_id"],
        metric=row["metric"],
        trigger_count=row["trigger_count"],
        acknowledged_at=row["acknowledged_at"],
        acknowledged_by=row["acknowledged_by"],
        acknowledged_note=row["acknowledged_note"],
        resolved_at=row["resolved_at"],
        resolved_by=row["resolved_by"],
        resolved_note=row["resolved_note"],
        incident_id=row["incident_id"],
    )


async def apply_events(conn: asyncpg.Connection, events: Sequence[AlertEvent]) -> list[AlertEvent]:
    """Store a batch's events (inside the caller's transaction); returns those that applied.

    Only the newest state of each alert is written: a batch that opens and updates an alert
    inserts it once, and a stream of "still above" readings is one UPDATE per batch.
    """
    final: dict[str, Alert] = {}
    opened: set[str] = set()
    reopened: set[str] = set()
    for event in events:
        final[event.alert.alert_id] = event.alert
        if event.type is EventType.OPENED:
            opened.add(event.alert.alert_id)
        elif event.type is EventType.REOPENED:
            reopened.add(event.alert.alert_id)
    applied: set[str] = set()
    for alert_id, a in final.items():
        if alert_id in opened:
            status = await conn.execute(
                INSERT_SQL,
                a.alert_id, a.rule_id, a.subject, a.sensor_id, a.area_id, a.kind, a.metric,
                a.severity.value, a.state.value, a.opened_at, a.last_triggered_at,
                a.trigger_count, a.value, a.threshold, a.message_vi, a.message_en,
                a.resolved_at, a.resolved_by,
            )  # fmt: skip
        else:
            status = await conn.execute(
                UPDATE_SQL,
                a.alert_id, a.state.value, a.last_triggered_at, a.value, a.message_vi,
                a.message_en, a.trigger_count, a.resolved_at, a.resolved_by, a.resolved_note,
                alert_id in reopened,
            )  # fmt: skip
        if status.endswith(" 1"):
            applied.add(alert_id)
    return [e for e in events if e.alert.alert_id in applied]


INCIDENT_FIELDS = (
    "incident_id, rule_id, kind, group_key, area_id, severity, state, opened_at, updated_at, "
    "resolved_at, member_count, active_count, revision, title_vi, title_en"
)
UPSERT_INCIDENT_SQL = f"""
INSERT INTO incidents ({INCIDENT_FIELDS})
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
ON CONFLICT (incident_id) DO UPDATE SET
    state = EXCLUDED.state, updated_at = EXCLUDED.updated_at, resolved_at = EXCLUDED.resolved_at,
    member_count = EXCLUDED.member_count, active_count = EXCLUDED.active_count,
    revision = EXCLUDED.revision, severity = EXCLUDED.severity
WHERE incidents.revision < EXCLUDED.revision
"""


async def apply_incidents(
    conn: asyncpg.Connection, incidents: Sequence[Incident], joined: dict[str, str]
) -> None:
    """Store incidents' newest states and their new members (inside the caller's transaction)."""
    newest = {i.incident_id: i for i in sorted(incidents, key=lambda i: i.revision)}
    if newest:
        await conn.executemany(
            UPSERT_INCIDENT_SQL,
            [
                (
                    i.incident_id, i.rule_id, i.kind, i.group, i.area_id, i.severity.value,
                    i.state.value, i.opened_at, i.updated_at, i.resolved_at, i.member_count,
                    i.active_count, i.revision, i.title_vi, i.title_en,
                )
                for i in newest.values()
            ],
        )  # fmt: skip
    if joined:
        await conn.execute(
            "UPDATE alerts a SET incident_id = j.incident_id, updated_at = clock_timestamp() "
            "FROM unnest($1::text[], $2::text[]) AS j(alert_id, incident_id) "
            "WHERE a.alert_id = j.alert_id",
            list(joined),
            list(joined.values()),
        )


def incident_from_row(row: asyncpg.Record | dict[str, Any]) -> Incident:
    return Incident(
        incident_id=row["incident_id"],
        rule_id=row["rule_id"],
        kind=row["kind"],
        group=row["group_key"],
        area_id=row["area_id"],
        severity=Severity(row["severity"]),
        state=IncidentState(row["state"]),
        opened_at=row["opened_at"],
        updated_at=row["updated_at"],
        member_count=row["member_count"],
        active_count=row["active_count"],
        revision=row["revision"],
        title_vi=row["title_vi"],
        title_en=row["title_en"],
        resolved_at=row["resolved_at"],
    )


KEYS_SQL = "(SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))"


async def load_incidents(
    conn: asyncpg.Connection, keys: Sequence[GroupKey]
) -> tuple[list[Incident], list[tuple[str, str, bool]], list[Alert]]:
    """Of the groups ``keys`` (rule id, kind, group): the open incidents, their members (alert,
    incident, active), and the active alerts in no incident (they may still form one: see
    ``urbanpulse.alerts.incidents``, which keeps those within its window)."""
    columns = [list(column) for column in zip(*keys, strict=True)] if keys else [[], [], []]
    incidents = [
        incident_from_row(r)
        for r in await conn.fetch(
            f"SELECT {INCIDENT_FIELDS} FROM incidents WHERE state = 'open' "
            f"AND (rule_id, kind, group_key) IN {KEYS_SQL}",
            *columns,
        )
    ]
    members = await conn.fetch(
        "SELECT a.alert_id, a.incident_id, a.state <> 'resolved' AS active FROM alerts a "
        "JOIN incidents i USING (incident_id) WHERE i.state = 'open' "
        f"AND (i.rule_id, i.kind, i.group_key) IN {KEYS_SQL}",
        *columns,
    )
    waiting = await conn.fetch(
        f"SELECT {FIELDS} FROM alerts WHERE state <> 'resolved' AND incident_id IS NULL "
        f"AND area_id IS NOT NULL AND (rule_id, kind, 'area:' || area_id) IN {KEYS_SQL}",
        *columns,
    )
    return (
        incidents,
        [(r["alert_id"], r["incident_id"], r["active"]) for r in members],
        [alert_from_row(r) for r in waiting],
    )


REBUILD_SQL = f"""
SELECT DISTINCT ON (rule_id, subject) {FIELDS} FROM alerts
WHERE state <> 'resolved' OR resolved_at >= $1
ORDER BY rule_id, subject, (state <> 'resolved') DESC, last_triggered_at DESC
"""


async def load_for_rebuild(conn: asyncpg.Connection, resolved_since: datetime) -> list[Alert]:
    """Active alerts, and per (rule, subject) the last one resolved since ``resolved_since``."""
    return [alert_from_row(r) for r in await conn.fetch(REBUILD_SQL, resolved_since)]


async def load_changed(conn: asyncpg.Connection, since: datetime) -> list[Alert]:
    """Alerts written since ``since`` (operators' acknowledgements and resolutions among them)."""
    rows = await conn.fetch(f"SELECT {FIELDS} FROM alerts WHERE updated_at >= $1", since)
    return [alert_from_row(r) for r in rows]


async def latest_clock(conn: asyncpg.Connection) -> datetime:
    now: datetime = await conn.fetchval("SELECT clock_timestamp()")
    return now


# --- the API's side -------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertFilter:
    state: str | None = None
    severity: str | None = None
    kind: str | None = None
    area_id: str | None = None
    rule_id: str | None = None
    sensor_id: str | None = None
    start: datetime | None = None  # opened at or after
    end: datetime | None = None  # opened before
    grouped: bool | None = None  # True: members of an incident only; False: no members
    incident_id: str | None = None

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("state", self.state),
            ("severity", self.severity),
            ("kind", self.kind),
            ("rule_id", self.rule_id),
            ("sensor_id", self.sensor_id),
            ("incident_id", self.incident_id),
        ):
            if value is not None:
                params.append(value)
                clauses.append(f"{column} = ${len(params)}")
        if self.area_id is not None:
            # An area's alerts include those of every area below it, as /v1/areas counts them.
            params.append(self.area_id)
            clauses.append(f"area_id IN ({SUBTREE_SQL.format(param=f'${len(params)}')})")
        if self.start is not None:
            params.append(self.start)
            clauses.append(f"opened_at >= ${len(params)}")
        if self.end is not None:
            params.append(self.end)
            clauses.append(f"opened_at < ${len(params)}")
        if self.grouped is not None:
            clauses.append(f"incident_id IS {'NOT ' if self.grouped else ''}NULL")
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


async def list_alerts(
    conn: asyncpg.Connection, where: AlertFilter, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    clause, params = where.where()
    total = await conn.fetchval(f"SELECT count(*) FROM alerts{clause}", *params)
    n = len(params)
    rows = await conn.fetch(
        f"{SELECT_SQL}{clause} ORDER BY {SEVERITY_RANK}, opened_at DESC, alert_id "
        f"LIMIT ${n + 1} OFFSET ${n + 2}",
        *params,
        limit,
        offset,
    )
    return [dict(r) for r in rows], int(total)


INCIDENTS_SQL = (
    f"SELECT {', '.join('i.' + f for f in INCIDENT_FIELDS.split(', '))}, ar.name AS area_name "
    "FROM incidents i LEFT JOIN areas ar ON ar.area_id = i.area_id"
)


async def list_incidents(
    conn: asyncpg.Connection,
    state: str | None,
    kind: str | None,
    area_id: str | None,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    """Incidents, critical first, then the newest."""
    clauses, params = [], []
    for column, value in (("i.state", state), ("i.kind", kind), ("i.area_id", area_id)):
        if value is not None:
            params.append(value)
            clauses.append(f"{column} = ${len(params)}")
    clause = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    total = await conn.fetchval(f"SELECT count(*) FROM incidents i{clause}", *params)
    n = len(params)
    rank = SEVERITY_RANK.replace("severity", "i.severity")
    rows = await conn.fetch(
        f"{INCIDENTS_SQL}{clause} ORDER BY {rank}, i.opened_at DESC, i.incident_id "
        f"LIMIT ${n + 1} OFFSET ${n + 2}",
        *params,
        limit,
        offset,
    )
    return [dict(r) for r in rows], int(total)


async def get_incident(conn: asyncpg.Connection, incident_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(f"{INCIDENTS_SQL} WHERE i.incident_id = $1", incident_id)
    return dict(row) if row else None


async def get_alert(conn: asyncpg.Connection, alert_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(f"{SELECT_SQL} WHERE alert_id = $1", alert_id)
    return dict(row) if row else None


async def acknowledge(
    conn: asyncpg.Connection, alert_id: str, by: str, note: str | None
) -> dict[str, Any] | None:
    """Open -> acknowledged (call inside a transaction); None when there is no such alert."""
    state = await _lock_state(conn, alert_id)
    if state is None:
        return None
    if state != AlertState.OPEN:
        raise TransitionError(
            f"alert {alert_id} is {state}; only an open alert can be acknowledged"
        )
    await conn.execute(
        "UPDATE alerts SET state = 'acknowledged', acknowledged_at = clock_timestamp(), "
        "acknowledged_by = $2, acknowledged_note = $3, updated_at = clock_timestamp() "
        "WHERE alert_id = $1",
        alert_id,
        by,
        note,
    )
    return await get_alert(conn, alert_id)


async def resolve(
    conn: asyncpg.Connection, alert_id: str, by: str, note: str | None
) -> dict[str, Any] | None:
    """Open or acknowledged -> resolved by an operator (call inside a transaction)."""
    state = await _lock_state(conn, alert_id)
    if state is None:
        return None
    if state == AlertState.RESOLVED:
        raise TransitionError(f"alert {alert_id} is resolved already")
    await conn.execute(
        "UPDATE alerts SET state = 'resolved', resolved_at = clock_timestamp(), resolved_by = $2, "
        "resolved_note = $3, updated_at = clock_timestamp() WHERE alert_id = $1",
        alert_id,
        by,
        note,
    )
    return await get_alert(conn, alert_id)


async def _lock_state(conn: asyncpg.Connection, alert_id: str) -> AlertState | None:
    state = await conn.fetchval("SELECT state FROM alerts WHERE alert_id = $1 FOR UPDATE", alert_id)
    return None if state is None else AlertState(state)
