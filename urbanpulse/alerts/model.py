"""What the alert engine reads and writes: observations, alerts, lifecycle events."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from urbanpulse.core.vocabulary import Severity

# Namespace of the deterministic alert ids: the same episode always gets the same id, so a
# batch retried after a failed transaction opens the very alert it would have opened.
ALERT_NAMESPACE = uuid.UUID("5b0e7f0c-52a4-4c0e-9d55-7a1a6e0b2025")
SYSTEM = "system"
AREA_PREFIX = "area:"


class AlertState(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class EventType(StrEnum):
    OPENED = "opened"
    REOPENED = "reopened"  # triggered again within the cool-down: the same alert, open again
    UPDATED = "updated"  # still triggering: newest value and time (stored, not broadcast)
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


# Lifecycle changes an operator's screen needs; UPDATED only refreshes the stored row.
BROADCAST = frozenset(EventType) - {EventType.UPDATED}


def area_subject(area_id: str) -> str:
    return f"{AREA_PREFIX}{area_id}"


def alert_id_for(rule_id: str, subject: str, since: datetime) -> str:
    return str(uuid.uuid5(ALERT_NAMESPACE, f"{rule_id}|{subject}|{since.isoformat()}"))


def event_id_for(event: AlertEvent) -> str:
    """The event's identity, the same however often it is produced: consumers dedupe on it.

    An alert has one event of each type per trigger (its ``trigger_count``): one opening, then
    per re-opening at most one acknowledgement and one resolution.
    """
    a = event.alert
    return str(uuid.uuid5(ALERT_NAMESPACE, f"{a.alert_id}|{event.type.value}|{a.trigger_count}"))


@dataclass(frozen=True, slots=True)
class Observation:
    """One new reading as the rules see it: measured and derived values, window aggregates."""

    sensor_id: str
    kind: str
    ts: datetime  # event time
    received_at: datetime  # processing time: when the platform got it
    values: Mapping[str, float]
    area_id: str | None = None
    # (metric, hours) -> (mean of the hourly means over the hours ending at ``ts``, hours present)
    windows: Mapping[tuple[str, int], tuple[float, int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Alert:
    alert_id: str
    rule_id: str
    subject: str  # a sensor id, or "area:<area id>"
    kind: str
    severity: Severity
    state: AlertState
    opened_at: datetime
    last_triggered_at: datetime
    value: float | None
    threshold: float | None
    message_vi: str
    message_en: str
    sensor_id: str | None = None
    area_id: str | None = None
    metric: str | None = None
    trigger_count: int = 1
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    acknowledged_note: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    resolved_note: str | None = None
    incident_id: str | None = None  # the grouped incident this alert is a member of

    @property
    def active(self) -> bool:
        return self.state is not AlertState.RESOLVED

    def touched(self, ts: datetime, value: float | None) -> Alert:
        return replace(self, last_triggered_at=max(ts, self.last_triggered_at), value=value)

    def resolved(self, at: datetime, by: str = SYSTEM, note: str | None = None) -> Alert:
        return replace(
            self, state=AlertState.RESOLVED, resolved_at=at, resolved_by=by, resolved_note=note
        )

    def reopened(
        self, ts: datetime, value: float | None, message_vi: str, message_en: str
    ) -> Alert:
        return replace(
            self,
            state=AlertState.OPEN,
            last_triggered_at=ts,
            value=value,
            message_vi=message_vi,
            message_en=message_en,
            trigger_count=self.trigger_count + 1,
            resolved_at=None,
            resolved_by=None,
            resolved_note=None,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class AlertEvent:
    type: EventType
    alert: Alert
