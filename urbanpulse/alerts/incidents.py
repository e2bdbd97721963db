"""Storms become incidents: many alerts of one rule in one place at once are one incident.

When ``min_members`` alerts of one rule and kind open in one group (an area today; a gateway once
gateways are data: see :func:`group_of`) within ``window`` of each other, they form one incident,
opened and resolved as one: it resolves when its last active member resolves.  Alerts of that
rule and group that open while it is open join it.  The member alerts stay what they are; the
incident only names them (``Alert.incident_id``).

A pure step, like the engine: (grouping state, the engine's applied events of one batch or tick)
-> (new state, incident lifecycle events, which alerts joined which incident).  At most one
event per incident per step, so a storm of 10,000 alerts is a handful of announcements.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from urbanpulse.alerts.model import ALERT_NAMESPACE, Alert, AlertEvent, EventType
from urbanpulse.core.vocabulary import Severity

GroupKey = tuple[str, str, str]  # (rule id, kind, group)
Texts = tuple[str, str]  # (vi, en)


class IncidentState(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class IncidentEventType(StrEnum):
    OPENED = "incident_opened"
    UPDATED = "incident_updated"  # members joined or resolved
    RESOLVED = "incident_resolved"


@dataclass(frozen=True, slots=True)
class Policy:
    min_members: int = 10
    window: timedelta = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Incident:
    incident_id: str
    rule_id: str
    kind: str
    group: str  # "area:<area id>" (later also "gateway:<gateway id>")
    area_id: str | None
    severity: Severity
    state: IncidentState
    opened_at: datetime  # when its first member opened
    updated_at: datetime
    member_count: int  # alerts that joined it
    active_count: int  # members not resolved yet
    revision: int  # one per lifecycle event: the events' ids are deterministic
    title_vi: str
    title_en: str
    resolved_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class IncidentEvent:
    type: IncidentEventType
    incident: Incident


def incident_id_for(key: GroupKey, opened_at: datetime) -> str:
    return str(uuid.uuid5(ALERT_NAMESPACE, f"incident|{'|'.join(key)}|{opened_at.isoformat()}"))


def incident_event_id(event: IncidentEvent) -> str:
    i = event.incident
    return str(uuid.uuid5(ALERT_NAMESPACE, f"{i.incident_id}|{event.type.value}|{i.revision}"))


def group_of(alert: Alert) -> str | None:
    """Where an alert's storm gathers: its area.  A gateway key ("gateway:<id>") goes first here
    once sensors name their gateway; alerts without a place are never grouped."""
    return f"area:{alert.area_id}" if alert.area_id else None


def key_of(alert: Alert) -> GroupKey | None:
    group = group_of(alert)
    return None if group is None else (alert.rule_id, alert.kind, group)


@dataclass
class Grouping:
    open: dict[GroupKey, Incident] = field(default_factory=dict)
    # Every member of an open incident -> (its incident's key, still active).
    members: dict[str, tuple[GroupKey, bool]] = field(default_factory=dict)
    # Active alerts in no incident, by key: alert id -> (when it opened, its severity).
    candidates: dict[GroupKey, dict[str, tuple[datetime, Severity]]] = field(default_factory=dict)

    def copy(self) -> Grouping:
        return Grouping(
            dict(self.open), dict(self.members), {k: dict(v) for k, v in self.candidates.items()}
        )


@dataclass(frozen=True)
class Outcome:
    state: Grouping
    events: list[IncidentEvent]
    joined: dict[str, str]  # alert id -> the incident it joined in this step
    incident_of: dict[str, str]  # alert id (of the step's events) -> its incident


def group(
    state: Grouping,
    events: Sequence[AlertEvent],
    policy: Policy,
    now: datetime,
    titles: Mapping[str, Texts],
) -> Outcome:
    """Apply one step's alert events; ``state`` itself is left untouched.

    ``titles``: rule id -> (vi, en) name of what the rule watches, for the incident's row.
    """
    new = state.copy()
    before = dict(state.open)
    joined: dict[str, str] = {}
    incident_of: dict[str, str] = {}
    waiting: set[GroupKey] = set()
    for event in events:
        alert, key = event.alert, key_of(event.alert)
        if key is None:
            continue
        if event.type in (EventType.OPENED, EventType.REOPENED):
            member = new.members.get(alert.alert_id)
            incident = new.open.get(key)
            if incident is not None:
                first_time = member is None
                if member is None or not member[1]:
                    new.open[key] = replace(
                        incident,
                        member_count=incident.member_count + first_time,
                        active_count=incident.active_count + 1,
                    )
                    new.members[alert.alert_id] = (key, True)
                joined[alert.alert_id] = incident_of[alert.alert_id] = incident.incident_id
            else:
                again = event.type is EventType.REOPENED  # a new trigger of an old alert
                opened = alert.last_triggered_at if again else alert.opened_at
                new.candidates.setdefault(key, {})[alert.alert_id] = (opened, alert.severity)
                waiting.add(key)
        elif event.type is EventType.RESOLVED:
            member = new.members.get(alert.alert_id)
            if member is not None and member[1]:
                incident = new.open[member[0]]
                new.open[member[0]] = replace(incident, active_count=incident.active_count - 1)
                new.members[alert.alert_id] = (member[0], False)
                incident_of[alert.alert_id] = incident.incident_id
            elif key in new.candidates:
                new.candidates[key].pop(alert.alert_id, None)
        elif alert.alert_id in new.members:  # acknowledged: announced with its incident
            incident_of[alert.alert_id] = new.open[new.members[alert.alert_id][0]].incident_id
    formed = [_form(new, key, policy, now, titles, joined) for key in sorted(waiting)]
    for event in events:  # the step's own alerts that formed an incident are announced in it
        if event.alert.alert_id in joined:
            incident_of[event.alert.alert_id] = joined[event.alert.alert_id]
    events_out = _lifecycle(new, before, [i for i in formed if i is not None], now)
    return Outcome(new, events_out, joined, incident_of)


def _form(
    state: Grouping,
    key: GroupKey,
    policy: Policy,
    now: datetime,
    titles: Mapping[str, Texts],
    joined: dict[str, str],
) -> Incident | None:
    """Open an incident for ``key`` if ``min_members`` of its waiting alerts opened within
    ``window`` of each other; members: those from the first such alert on."""
    waiting = state.candidates.get(key, {})
    if not waiting or key in state.open:
        return None
    newest = max(t for t, _ in waiting.values())
    for alert_id in [a for a, (t, _) in waiting.items() if t < newest - policy.window]:
        del waiting[alert_id]  # too old to share a window with anything newer
    start = _first_storm(sorted(t for t, _ in waiting.values()), policy)
    if start is None:
        return None
    members = [a for a, (t, _) in waiting.items() if t >= start]
    ranks = list(Severity)  # info < warning < critical
    rule_id, kind, group_key = key
    vi, en = titles.get(rule_id, (rule_id, rule_id))
    incident = Incident(
        incident_id=incident_id_for(key, start),
        rule_id=rule_id,
        kind=kind,
        group=group_key,
        area_id=group_key.removeprefix("area:") if group_key.startswith("area:") else None,
        severity=max((waiting[a][1] for a in members), key=ranks.index),
        state=IncidentState.OPEN,
        opened_at=start,
        updated_at=now,
        member_count=len(members),
        active_count=len(members),
        revision=0,
        title_vi=vi,
        title_en=en,
    )
    for alert_id in members:
        del waiting[alert_id]
        state.members[alert_id] = (key, True)
        joined[alert_id] = incident.incident_id
    if not waiting:
        del state.candidates[key]
    state.open[key] = incident
    return incident


def _first_storm(times: Sequence[datetime], policy: Policy) -> datetime | None:
    """The first time from which ``min_members`` of ``times`` (sorted) lie within the window."""
    first = 0
    for last, t in enumerate(times):
        while t - times[first] > policy.window:
            first += 1
        if last - first + 1 >= policy.min_members:
            return times[first]
    return None


def _lifecycle(
    state: Grouping, before: Mapping[GroupKey, Incident], opened: list[Incident], now: datetime
) -> list[IncidentEvent]:
    """One event per incident that changed in this step, its revision counted up."""
    events: list[IncidentEvent] = []
    new_keys = {(i.rule_id, i.kind, i.group) for i in opened}
    for key, incident in sorted(state.open.items()):
        old = before.get(key)
        if key in new_keys:
            kind = IncidentEventType.OPENED
        elif incident.active_count == 0:
            kind = IncidentEventType.RESOLVED
        elif old is not None and (old.member_count, old.active_count) != (
            incident.member_count,
            incident.active_count,
        ):
            kind = IncidentEventType.UPDATED
        else:
            continue
        changed = replace(incident, revision=incident.revision + 1, updated_at=now)
        if kind is IncidentEventType.RESOLVED:
            changed = replace(changed, state=IncidentState.RESOLVED, resolved_at=now)
            del state.open[key]
            for alert_id in [a for a, (k, _) in state.members.items() if k == key]:
                del state.members[alert_id]
        else:
            state.open[key] = changed
        events.append(IncidentEvent(kind, changed))
    return events


def rebuild(
    incidents: Iterable[Incident],
    members: Iterable[tuple[str, str, bool]],
    waiting: Iterable[Alert],
) -> Grouping:
    """State after a restart: the open incidents with their members (alert id, incident id,
    active), and the active alerts in no incident that may still form one."""
    state = Grouping()
    by_id: dict[str, GroupKey] = {}
    for incident in incidents:
        key = (incident.rule_id, incident.kind, incident.group)
        state.open[key] = incident
        by_id[incident.incident_id] = key
    for alert_id, incident_id, active in members:
        if incident_id in by_id:
            state.members[alert_id] = (by_id[incident_id], active)
    for alert in waiting:
        where = key_of(alert)
        if where is not None and alert.active:
            state.candidates.setdefault(where, {})[alert.alert_id] = (
                alert.opened_at,
                alert.severity,
            )
    return state
