"""Storms become incidents: the pure grouping step, with expected values counted by hand."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from urbanpulse.alerts.incidents import (
    Grouping,
    IncidentEventType,
    IncidentState,
    Outcome,
    Policy,
    group,
    incident_event_id,
    rebuild,
)
from urbanpulse.alerts.model import Alert, AlertEvent, AlertState, EventType
from urbanpulse.core.vocabulary import Severity

T0 = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
POLICY = Policy(min_members=10, window=timedelta(minutes=5))
TITLES = {"offline-air": ("Mất kết nối", "Offline")}


def alert(n: int, at: datetime, area: str | None = "w1", rule: str = "offline-air") -> Alert:
    return Alert(
        alert_id=f"{rule}-{area}-{n}",
        rule_id=rule,
        subject=f"s-{area}-{n}",
        kind="air",
        severity=Severity.WARNING,
        state=AlertState.OPEN,
        opened_at=at,
        last_triggered_at=at,
        value=None,
        threshold=None,
        message_vi="vi",
        message_en="en",
        sensor_id=f"s-{area}-{n}",
        area_id=area,
    )


def opened(alerts: list[Alert]) -> list[AlertEvent]:
    return [AlertEvent(EventType.OPENED, a) for a in alerts]


def resolved(alerts: list[Alert], at: datetime) -> list[AlertEvent]:
    return [AlertEvent(EventType.RESOLVED, a.resolved(at)) for a in alerts]


def run(state: Grouping, events: list[AlertEvent], now: datetime = T0) -> Outcome:
    return group(state, events, POLICY, now, TITLES)


def test_nine_alerts_in_one_area_stay_alerts() -> None:
    out = run(Grouping(), opened([alert(i, T0) for i in range(9)]))
    assert out.events == [] and out.joined == {} and out.state.open == {}
    assert len(out.state.candidates[("offline-air", "air", "area:w1")]) == 9


def test_the_tenth_alert_opens_one_incident_with_all_ten() -> None:
    nine = [alert(i, T0 + timedelta(seconds=i)) for i in range(9)]
    first = run(Grouping(), opened(nine))
    tenth = alert(9, T0 + timedelta(seconds=30))
    out = run(first.state, opened([tenth]), now=T0 + timedelta(seconds=31))
    [event] = out.events
    assert event.type is IncidentEventType.OPENED
    incident = event.incident
    assert (incident.member_count, incident.active_count, incident.revision) == (10, 10, 1)
    assert incident.opened_at == T0  # the storm began with its first member
    assert incident.area_id == "w1" and incident.group == "area:w1"
    assert (incident.title_vi, incident.title_en) == ("Mất kết nối", "Offline")
    assert incident.state is IncidentState.OPEN and incident.severity is Severity.WARNING
    # The nine stored earlier join too (their rows get the incident id), and the tenth.
    assert set(out.joined) == {a.alert_id for a in [*nine, tenth]}
    assert set(out.joined.values()) == {incident.incident_id}
    assert out.incident_of == {tenth.alert_id: incident.incident_id}
    assert out.state.candidates == {}
    # The step is pure: the state it was given is unchanged.
    assert first.state.open == {} and len(first.state.candidates[incident_key()]) == 9


def incident_key() -> tuple[str, str, str]:
    return ("offline-air", "air", "area:w1")


def test_window_edges_are_inclusive() -> None:
    policy = Policy(min_members=3, window=timedelta(minutes=5))
    edge = [alert(0, T0), alert(1, T0 + timedelta(minutes=5)), alert(2, T0 + timedelta(minutes=5))]
    out = group(Grouping(), opened(edge), policy, T0, TITLES)
    assert [e.incident.member_count for e in out.events] == [3]
    # One second more and the first is outside any window with the other two: no storm.
    late = [alert(0, T0), alert(1, T0 + timedelta(minutes=5, seconds=1))]
    late.append(alert(2, T0 + timedelta(minutes=5, seconds=1)))
    out = group(Grouping(), opened(late), policy, T0, TITLES)
    assert out.events == []
    # ... and the first, too old to share a window with anything newer, is forgotten.
    assert set(out.state.candidates[incident_key()]) == {late[1].alert_id, late[2].alert_id}


def test_members_from_the_first_storm_window_on() -> None:
    """Ten within 5 minutes, starting at T0+1; the alert at T0-10min stays on its own."""
    early = alert(99, T0 - timedelta(minutes=10))
    storm = [alert(i, T0 + timedelta(minutes=1, seconds=10 * i)) for i in range(10)]
    out = run(Grouping(), opened([early, *storm]))
    [event] = out.events
    assert event.incident.member_count == 10
    assert event.incident.opened_at == T0 + timedelta(minutes=1)
    assert early.alert_id not in out.joined


def test_later_alerts_join_and_the_last_resolution_resolves_it() -> None:
    ten = [alert(i, T0) for i in range(10)]
    state = run(Grouping(), opened(ten)).state
    late = alert(10, T0 + timedelta(minutes=20))  # outside the window: joins an open incident
    out = run(state, opened([late]), now=T0 + timedelta(minutes=20))
    [event] = out.events
    assert event.type is IncidentEventType.UPDATED
    assert (event.incident.member_count, event.incident.active_count) == (11, 11)
    assert event.incident.revision == 2
    # Ten resolve in one step: one update, not ten.
    out = run(out.state, resolved(ten, T0 + timedelta(minutes=30)), T0 + timedelta(minutes=30))
    [event] = out.events
    assert event.type is IncidentEventType.UPDATED
    assert (event.incident.member_count, event.incident.active_count) == (11, 1)
    assert out.incident_of == {a.alert_id: event.incident.incident_id for a in ten}
    # The last one resolves: so does the incident; its members are forgotten.
    end = T0 + timedelta(minutes=31)
    out = run(out.state, resolved([late], end), end)
    [event] = out.events
    assert event.type is IncidentEventType.RESOLVED
    assert event.incident.state is IncidentState.RESOLVED and event.incident.resolved_at == end
    assert (event.incident.member_count, event.incident.active_count) == (11, 0)
    assert out.state.open == {} and out.state.members == {}
    # A new alert there afterwards waits for a storm of its own.
    out = run(out.state, opened([alert(50, end)]), end)
    assert out.events == [] and len(out.state.candidates[incident_key()]) == 1


def test_two_areas_two_incidents_and_a_small_one_none() -> None:
    events = opened(
        [alert(i, T0, "w1") for i in range(12)]
        + [alert(i, T0, "w2") for i in range(10)]
        + [alert(i, T0, "w3") for i in range(4)]
    )
    out = run(Grouping(), events)
    counts = sorted((e.incident.area_id, e.incident.member_count) for e in out.events)
    assert counts == [("w1", 12), ("w2", 10)]
    assert len({e.incident.incident_id for e in out.events}) == 2


def test_rules_do_not_mix_and_alerts_without_an_area_never_group() -> None:
    mixed = [alert(i, T0, rule="offline-air") for i in range(5)]
    mixed += [alert(i, T0, rule="pm25-episode") for i in range(5)]
    mixed += [alert(i, T0, area=None) for i in range(20)]
    out = run(Grouping(), opened(mixed))
    assert out.events == [] and out.joined == {}


def test_a_member_resolved_then_reopened_counts_once() -> None:
    ten = [alert(i, T0) for i in range(10)]
    state = run(Grouping(), opened(ten)).state
    out = run(state, resolved(ten[:1], T0 + timedelta(minutes=1)))
    again = ten[0].reopened(T0 + timedelta(minutes=2), None, "vi", "en")
    out = run(out.state, [AlertEvent(EventType.REOPENED, again)])
    [event] = out.events
    assert (event.incident.member_count, event.incident.active_count) == (10, 10)


def test_event_ids_are_one_per_lifecycle_step_and_repeatable() -> None:
    ten = [alert(i, T0) for i in range(10)]
    first = run(Grouping(), opened(ten))
    retried = run(Grouping(), opened(ten), now=T0 + timedelta(seconds=5))
    assert incident_event_id(first.events[0]) == incident_event_id(retried.events[0])
    end = run(first.state, resolved(ten, T0 + timedelta(minutes=1)))
    ids = {incident_event_id(e) for e in first.events + end.events}
    assert len(ids) == 2


def test_rebuilt_state_resolves_with_its_last_member() -> None:
    ten = [alert(i, T0) for i in range(10)]
    out = run(Grouping(), opened(ten))
    # As stored: the first member resolved already.
    incident = replace(out.events[0].incident, active_count=9)
    members = [(a.alert_id, incident.incident_id, i > 0) for i, a in enumerate(ten)]
    waiting = [alert(i, T0, "w2") for i in range(9)]
    state = rebuild([incident], members, waiting)
    assert len(state.candidates[("offline-air", "air", "area:w2")]) == 9
    out = run(state, resolved(ten[1:], T0 + timedelta(minutes=3)))
    [event] = out.events
    assert event.type is IncidentEventType.RESOLVED and event.incident.revision == 2
    # The tenth alert of ward 2 after the restart still makes a storm there.
    out = run(out.state, opened([alert(9, T0 + timedelta(minutes=1), "w2")]))
    assert [(e.type, e.incident.member_count) for e in out.events] == [
        (IncidentEventType.OPENED, 10)
    ]
