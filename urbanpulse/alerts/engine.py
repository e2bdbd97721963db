"""The pure alert engine: (state, observation or time) -> (new state, events).

State is one ``Track`` per (rule, subject): the newest event time seen, since when the condition
has held (for a minimum duration), and the current alert (or the last resolved one, which a new
trigger within the rule's cool-down re-opens instead of creating another).  Nothing here does
I/O or reads a clock: the processor passes ``now`` and applies the events to the database.

Lifecycle per track:

    quiet --trigger (held for 'for')--> open --clear (hysteresis)--> resolved
      ^                                   |                            |
      |                    operator: acknowledged / resolved           |
      +------------- trigger again after the cool-down: a new alert <--+ (within it: re-opened)

An operator who resolves an alert while its condition still holds silences the track until the
condition clears: it does not re-open on the next reading.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from fractions import Fraction

from urbanpulse.alerts import messages
from urbanpulse.alerts.model import (
    SYSTEM,
    Alert,
    AlertEvent,
    AlertState,
    EventType,
    Observation,
    alert_id_for,
    area_subject,
)
from urbanpulse.alerts.rules import Rule, RuleSet

TrackKey = tuple[str, str]  # (rule id, subject)
Texts = tuple[str, str]  # (vi, en)


@dataclass(frozen=True, slots=True)
class Track:
    last_ts: datetime | None = None  # newest time evaluated; older observations change nothing
    since: datetime | None = None  # the condition has held since (minimum duration pending)
    alert: Alert | None = None  # the active alert, or the last resolved one (cool-down)
    suppressed: bool = False  # resolved by an operator while triggering: wait for a clear


QUIET = Track()  # a track never evaluated (immutable: one serves them all)


@dataclass(frozen=True, slots=True)
class SensorSeen:
    """What the engine remembers of a sensor: for staleness and for area rules."""

    kind: str
    area_id: str | None
    last_seen: datetime  # processing time of the newest reading received
    ts: datetime | None = None  # event time of the newest reading
    values: Mapping[str, float] = field(default_factory=dict)


@dataclass
class EngineState:
    tracks: dict[TrackKey, Track] = field(default_factory=dict)
    sensors: dict[str, SensorSeen] = field(default_factory=dict)

    def copy(self) -> EngineState:
        return EngineState(dict(self.tracks), dict(self.sensors))


@dataclass(slots=True)  # not frozen: made per rule per reading, a frozen __init__ costs 4x
class Condition:
    """One evaluation of a rule for one subject, whatever the rule's shape."""

    ts: datetime
    value: float | None
    threshold: float | None
    triggered: bool
    cleared: bool
    texts: Callable[[], Texts]
    sensor_id: str | None = None
    area_id: str | None = None
    kind: str | None = None  # the sensor's kind, for rules of any kind (default: the rule's)


@dataclass(frozen=True, slots=True)
class Unheard:
    """A registered, active sensor that has never sent a reading."""

    kind: str
    area_id: str | None
    registered_at: datetime


def step(
    track: Track,
    rule: Rule,
    subject: str,
    c: Condition,
    *,
    ordered: bool = True,
    touch: bool = True,
) -> tuple[Track, list[AlertEvent]]:
    """Advance one track by one evaluation: hysteresis, minimum duration, cool-down.

    ``ordered``: ignore evaluations older than the newest seen (event-time rules).
    ``touch``: an active alert that still triggers records the newest value (UPDATED).
    """
    if ordered and track.last_ts is not None and c.ts <= track.last_ts:
        return track, []  # late or repeated: the newest state already decided
    last_ts = c.ts if track.last_ts is None else max(c.ts, track.last_ts)
    current = track.alert
    if current is not None and current.active:
        if c.cleared:
            done = replace(current, value=c.value).resolved(c.ts)
            return Track(last_ts, None, done), [AlertEvent(EventType.RESOLVED, done)]
        if not (touch and c.triggered):
            return Track(last_ts, track.since, current), []
        touched = current.touched(c.ts, c.value)
        events = [AlertEvent(EventType.UPDATED, touched)]
        return Track(last_ts, track.since, touched), events
    if track.suppressed:
        return Track(last_ts, None, current, suppressed=not c.cleared), []
    if not c.triggered:
        return Track(last_ts, None, current), []
    since = track.since or c.ts
    if c.ts - since < rule.min_duration:
        return Track(last_ts, since, current), []
    vi, en = c.texts()
    cooldown = rule.cooldown or timedelta(0)
    resolved_at = current.resolved_at if current is not None else None
    if current is not None and resolved_at is not None and c.ts - resolved_at <= cooldown:
        again = current.reopened(c.ts, c.value, vi, en)
        return Track(last_ts, since, again), [AlertEvent(EventType.REOPENED, again)]
    alert = Alert(
        alert_id=alert_id_for(rule.id, subject, c.ts),
        rule_id=rule.id,
        subject=subject,
        kind=c.kind or rule.kind,
        severity=rule.severity,
        state=AlertState.OPEN,
        opened_at=c.ts,
        last_triggered_at=c.ts,
        value=c.value,
        threshold=c.threshold,
        message_vi=vi,
        message_en=en,
        sensor_id=c.sensor_id,
        area_id=c.area_id,
        metric=rule.metric,
    )
    return Track(last_ts, since, alert), [AlertEvent(EventType.OPENED, alert)]


def rule_value(rule: Rule, observation: Observation) -> float | None:
    if rule.metric is None:
        return None
    hours = rule.window_hours
    if hours is None:
        return observation.values.get(rule.metric)
    mean, present = observation.windows.get((rule.metric, hours), (None, 0))
    return mean if present >= (rule.min_hours or 1) else None


def evaluate(track: Track, observation: Observation, rule: Rule) -> tuple[Track, list[AlertEvent]]:
    """A threshold rule on one sensor's new reading (event time)."""
    value = rule_value(rule, observation)
    if value is None:
        return track, []
    sensor = observation.sensor_id
    condition = Condition(
        ts=observation.ts,
        value=value,
        threshold=rule.threshold,
        triggered=rule.triggers(value),
        cleared=rule.clears(value),
        texts=lambda: messages.threshold_message(rule, sensor, value),
        sensor_id=sensor,
        area_id=observation.area_id,
    )
    return step(track, rule, sensor, condition)


def check_offline(
    track: Track, rule: Rule, sensor_id: str, seen: SensorSeen, now: datetime
) -> tuple[Track, list[AlertEvent]]:
    """Staleness on processing time: silent longer than ``offline_after`` -> offline."""
    assert rule.offline_after is not None
    silent = now - seen.last_seen
    offline = silent > rule.offline_after
    condition = Condition(
        ts=now,
        value=round(silent.total_seconds() / 60, 1),
        threshold=rule.offline_after.total_seconds() / 60,
        triggered=offline,
        cleared=not offline,
        texts=lambda: messages.offline_message(rule, sensor_id, silent),
        sensor_id=sensor_id,
        area_id=seen.area_id,
    )
    # Staleness is re-checked on every tick: the stored alert keeps its opening figures.
    return step(track, rule, sensor_id, condition, ordered=False, touch=False)


def check_never_reported(
    track: Track, rule: Rule, sensor_id: str, unheard: Unheard | None, now: datetime
) -> tuple[Track, list[AlertEvent]]:
    """No reading ``never_reported_after`` past registration -> never reported; ``unheard``
    None means the sensor has reported since: the condition clears."""
    assert rule.never_reported_after is not None
    grace = rule.never_reported_after
    since = now - unheard.registered_at if unheard is not None else timedelta(0)
    triggered = unheard is not None and since > grace
    kind = unheard.kind if unheard is not None else None
    condition = Condition(
        ts=now,
        value=round(since.total_seconds() / 60, 1),
        threshold=grace.total_seconds() / 60,
        triggered=triggered,
        cleared=unheard is None,
        texts=lambda: messages.never_reported_message(rule, kind or rule.kind, sensor_id, since),
        sensor_id=sensor_id,
        area_id=unheard.area_id if unheard is not None else None,
        kind=kind,
    )
    return step(track, rule, sensor_id, condition, ordered=False, touch=False)


def evaluate_area(
    track: Track, rule: Rule, area_id: str, sensors: Iterable[SensorSeen], now: datetime
) -> tuple[Track, list[AlertEvent]]:
    """Share of an area's fresh sensors that meet the rule's threshold."""
    assert rule.area is not None and rule.metric is not None
    values = [
        s.values[rule.metric]
        for s in sensors
        if s.kind == rule.kind
        and s.area_id == area_id
        and now - s.last_seen <= rule.area.fresh_within
        and rule.metric in s.values
    ]
    if len(values) < rule.area.min_sensors:
        return track, []  # no verdict: too few sensors report
    meeting = sum(1 for v in values if rule.triggers(v))
    share = Fraction(meeting, len(values))
    condition = Condition(
        ts=now,
        value=round(float(share), 4),
        threshold=round(float(rule.area.more_than), 4),
        triggered=share > rule.area.more_than,
        cleared=share <= rule.area.clear_share,
        texts=lambda: messages.area_message(rule, area_id, meeting, len(values), share),
        area_id=area_id,
    )
    return step(track, rule, area_subject(area_id), condition, ordered=False)


# --- whole batches and timers, as the processor runs them ----------------------------------


def evaluate_batch(
    state: EngineState, observations: Sequence[Observation], rules: RuleSet, now: datetime
) -> tuple[EngineState, list[AlertEvent]]:
    """New readings (not replays) -> events; ``state`` itself is left untouched."""
    new = state.copy()
    events: list[AlertEvent] = []
    areas: set[str] = set()
    for obs in sorted(observations, key=lambda o: (o.sensor_id, o.ts)):
        before = new.sensors.get(obs.sensor_id)
        area_id = obs.area_id or (before.area_id if before else None)
        if before is None or before.ts is None or obs.ts >= before.ts:
            seen = SensorSeen(obs.kind, area_id, obs.received_at, obs.ts, obs.values)
        else:  # a late reading: still a sign of life, but not the latest state
            seen = replace(before, last_seen=max(before.last_seen, obs.received_at))
        new.sensors[obs.sensor_id] = seen
        if area_id:
            areas.add(area_id)
        kind = rules.of_kind(obs.kind)
        for rule in kind.thresholds:
            _apply(new, events, (rule.id, obs.sensor_id), evaluate, obs, rule)
        offline = kind.offline
        if offline is not None and (offline.id, obs.sensor_id) in new.tracks:
            key = (offline.id, obs.sensor_id)
            _apply(new, events, key, check_offline, offline, obs.sensor_id, seen, now)
        never = kind.never_reported
        if never is not None and (never.id, obs.sensor_id) in new.tracks:
            key = (never.id, obs.sensor_id)  # it reports: no longer "never reported"
            _apply(new, events, key, check_never_reported, never, obs.sensor_id, None, now)
    _evaluate_areas(new, events, rules, areas, now)
    return new, events


def tick(
    state: EngineState,
    rules: RuleSet,
    now: datetime,
    owns: Callable[[str], bool] = lambda _: True,
    unheard: Mapping[str, Unheard] | None = None,
) -> tuple[EngineState, list[AlertEvent]]:
    """The processing-time timer: staleness of the sensors this processor owns, area rules.

    ``unheard``: the registered, active sensors without any reading (None: not checked now).
    """
    new = state.copy()
    events: list[AlertEvent] = []
    for sensor_id, seen in state.sensors.items():
        rule = rules.of_kind(seen.kind).offline
        if rule is not None and owns(sensor_id):
            _apply(new, events, (rule.id, sensor_id), check_offline, rule, sensor_id, seen, now)
    if unheard is not None:
        _check_unheard(new, events, rules, now, owns, unheard)
    areas = {s.area_id for s in state.sensors.values() if s.area_id}
    _evaluate_areas(new, events, rules, areas, now)
    return new, events


def evaluate_areas(
    state: EngineState, rules: RuleSet, now: datetime
) -> tuple[EngineState, list[AlertEvent]]:
    """The area rules, alone, over the areas of ``state``'s sensors: what an area's one owner
    runs on its timer, with the sensors of its areas as stored (the engine of a partition sees
    only that partition's sensors)."""
    new = state.copy()
    events: list[AlertEvent] = []
    areas = {s.area_id for s in state.sensors.values() if s.area_id}
    _evaluate_areas(new, events, RuleSet(tuple(rules.area_rules), rules.source), areas, now)
    return new, events


def forget_silent(state: EngineState, max_sensors: int) -> tuple[EngineState, int]:
    """Bound the state: beyond ``max_sensors``, forget the longest-silent sensors.

    A sensor with an active alert is never forgotten (its alert must still resolve); a forgotten
    sensor loses its quiet tracks and is not checked for staleness until it reports again.
    Returns the new state and how many sensors were forgotten.
    """
    excess = len(state.sensors) - max_sensors
    if excess <= 0:
        return state, 0
    alerting = {
        subject
        for (_, subject), t in state.tracks.items()
        if t.alert is not None and t.alert.active
    }
    silent = sorted(
        (seen.last_seen, sensor_id)
        for sensor_id, seen in state.sensors.items()
        if sensor_id not in alerting
    )
    gone = {sensor_id for _, sensor_id in silent[:excess]}
    sensors = {k: v for k, v in state.sensors.items() if k not in gone}
    tracks = {k: t for k, t in state.tracks.items() if k[1] not in gone}
    return EngineState(tracks, sensors), len(gone)


def merge_operator_changes(
    state: EngineState, stored: Iterable[Alert]
) -> tuple[EngineState, list[AlertEvent]]:
    """Take acknowledgements and resolutions made through the API into the tracks."""
    new = state.copy()
    events: list[AlertEvent] = []
    for alert in stored:
        key = (alert.rule_id, alert.subject)
        track = new.tracks.get(key)
        mine = track.alert if track is not None else None
        if track is None or mine is None or mine.alert_id != alert.alert_id or not mine.active:
            continue
        if alert.state is AlertState.RESOLVED:
            merged = replace(
                mine,
                state=AlertState.RESOLVED,
                resolved_at=alert.resolved_at,
                resolved_by=alert.resolved_by,
                resolved_note=alert.resolved_note,
                acknowledged_at=alert.acknowledged_at,
                acknowledged_by=alert.acknowledged_by,
                acknowledged_note=alert.acknowledged_note,
            )
            new.tracks[key] = Track(track.last_ts, None, merged, suppressed=True)
            events.append(AlertEvent(EventType.RESOLVED, merged))
        elif alert.state is AlertState.ACKNOWLEDGED and mine.state is AlertState.OPEN:
            merged = replace(
                mine,
                state=AlertState.ACKNOWLEDGED,
                acknowledged_at=alert.acknowledged_at,
                acknowledged_by=alert.acknowledged_by,
                acknowledged_note=alert.acknowledged_note,
            )
            new.tracks[key] = replace(track, alert=merged)
            events.append(AlertEvent(EventType.ACKNOWLEDGED, merged))
    return new, events


def rebuild(alerts: Iterable[Alert], sensors: Mapping[str, SensorSeen]) -> EngineState:
    """State after a restart: the stored active alerts, and the last resolved ones (cool-down).

    An active alert resumes as it was; a track whose last alert an operator resolved stays
    silenced until its condition clears, exactly as before the restart.
    """
    tracks: dict[TrackKey, Track] = {}
    for alert in sorted(alerts, key=lambda a: (a.active, a.last_triggered_at)):
        key = (alert.rule_id, alert.subject)
        current = tracks.get(key)
        if current is not None and current.alert is not None and current.alert.active:
            continue
        by_operator = not alert.active and alert.resolved_by not in (None, SYSTEM)
        # Event time of the newest evaluation; an operator's resolution is on the wall clock.
        last_ts = alert.last_triggered_at
        if alert.resolved_by == SYSTEM and alert.resolved_at is not None:
            last_ts = max(last_ts, alert.resolved_at)
        tracks[key] = Track(last_ts, None, alert, suppressed=by_operator)
    return EngineState(tracks, dict(sensors))


def _apply(
    state: EngineState,
    events: list[AlertEvent],
    key: TrackKey,
    fn: Callable[..., tuple[Track, list[AlertEvent]]],
    *args: object,
) -> None:
    track = state.tracks.get(key, QUIET)
    updated, produced = fn(track, *args)
    if updated != track:
        state.tracks[key] = updated
    events.extend(produced)


def _check_unheard(
    state: EngineState,
    events: list[AlertEvent],
    rules: RuleSet,
    now: datetime,
    owns: Callable[[str], bool],
    unheard: Mapping[str, Unheard],
) -> None:
    for sensor_id, sensor in unheard.items():
        rule = rules.of_kind(sensor.kind).never_reported
        if rule is not None and owns(sensor_id):
            key = (rule.id, sensor_id)
            _apply(state, events, key, check_never_reported, rule, sensor_id, sensor, now)
    # Reported meanwhile (perhaps through another processor's partition): the alert clears.
    never = {r.id: r for r in rules if r.is_never_reported}
    for (rule_id, sensor_id), track in list(state.tracks.items()):
        reported = rule_id in never and sensor_id not in unheard and owns(sensor_id)
        if reported and track.alert is not None and track.alert.active:
            key = (rule_id, sensor_id)
            _apply(state, events, key, check_never_reported, never[rule_id], sensor_id, None, now)


def _evaluate_areas(
    state: EngineState, events: list[AlertEvent], rules: RuleSet, areas: set[str], now: datetime
) -> None:
    if not areas or not rules.area_rules:
        return
    by_area: dict[str, list[SensorSeen]] = {}
    for seen in state.sensors.values():
        if seen.area_id in areas:
            by_area.setdefault(seen.area_id, []).append(seen)
    for rule in rules.area_rules:
        for area_id in sorted(areas):
            key = (rule.id, area_subject(area_id))
            _apply(state, events, key, evaluate_area, rule, area_id, by_area.get(area_id, []), now)
