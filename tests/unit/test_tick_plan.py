"""The alert timer's tick as a pure plan (``urbanpulse.stream.tick``): staleness, never-reported
sensors, area rules and operators' changes, per partition owned, without any server.

Expected values come from the rules below, by hand: offline after 10 minutes of silence (value
in minutes, one decimal), never reported 1 hour after registration, an area alert when more than
half of an area's fresh (within 1 h) air sensors read PM2.5 above 50, cleared at a quarter.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import count, islice

from urbanpulse.alerts import engine
from urbanpulse.alerts.engine import EngineState, SensorSeen
from urbanpulse.alerts.model import Alert, AlertEvent, AlertState, EventType
from urbanpulse.alerts.rules import parse_rules
from urbanpulse.stream.partition_state import partition_for
from urbanpulse.stream.tick import TickLoaded, area_query, owned_areas, plan_tick

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
RULES = parse_rules(
    """
version: 1
defaults: {cooldown: 0s}
rules:
  - {id: air-offline, kind: air, offline_after: 10m, severity: warning, citation: test}
  - {id: never, kind: any, never_reported_after: 1h, severity: info, citation: test}
  - {id: pm25-hi, kind: air, metric: pm25, above: 50, severity: warning, citation: test}
  - {id: area-pm25, kind: air, scope: area, metric: pm25, above: 50, severity: critical,
     area: {more_than: "1/2", clear_at_most: "1/4", min_sensors: 2, fresh_within: 1h},
     citation: test}
"""
)


def ago(minutes: float) -> datetime:
    return NOW - timedelta(minutes=minutes)


def air(area: str | None, minutes_ago: float, pm25: float = 10.0) -> SensorSeen:
    return SensorSeen("air", area, ago(minutes_ago), ago(minutes_ago), {"pm25": pm25})


def ids_in(partition: int, partitions: int, prefix: str, n: int) -> list[str]:
    """``n`` ids that Kafka's partitioner sends to ``partition``."""
    found = (f"{prefix}{i}" for i in count())
    return list(islice((k for k in found if partition_for(k, partitions) == partition), n))


def summary(events: list[AlertEvent]) -> list[tuple[str, str, str, float | None]]:
    return sorted((e.type.value, e.alert.rule_id, e.alert.subject, e.alert.value) for e in events)


# --- staleness ------------------------------------------------------------------------------


def test_a_sensor_silent_past_offline_after_opens_an_alert_and_one_within_it_does_not() -> None:
    state = EngineState(sensors={"a1": air("w1", 11), "a2": air("w1", 9), "a3": air("w1", 10)})
    plan = plan_tick({0: state}, TickLoaded(caught_up=True), RULES, 1, NOW)
    # 11 min > 10 min: offline; exactly 10 min is not "longer than" offline_after.
    assert summary(plan.raised) == [("opened", "air-offline", "a1", 11.0)]
    [event] = plan.raised
    assert event.alert.threshold == 10.0 and event.alert.opened_at == NOW
    assert plan.alerts[0].tracks[("air-offline", "a1")].alert == event.alert
    assert plan.by_operators == []


def test_nothing_is_stale_before_the_processor_has_caught_up() -> None:
    state = EngineState(sensors={"a1": air("w1", 30)})
    loaded = TickLoaded(
        caught_up=False,
        unheard={"n1": engine.Unheard("water", "w1", ago(120))},
        area_sensors={"x": air("w1", 1, 90), "y": air("w1", 1, 90)},
    )
    plan = plan_tick({0: state}, loaded, RULES, 1, NOW)
    assert plan.raised == [] and plan.alerts[0].tracks == {}


def test_a_sensor_heard_again_resolves_its_offline_alert() -> None:
    silent = EngineState(sensors={"a1": air("w1", 20)})
    opened = plan_tick({0: silent}, TickLoaded(caught_up=True), RULES, 1, NOW).alerts[0]
    heard = EngineState(opened.tracks, {"a1": air("w1", 0)})  # a batch saw it meanwhile
    plan = plan_tick({0: heard}, TickLoaded(caught_up=True), RULES, 1, NOW + timedelta(minutes=1))
    assert summary(plan.raised) == [("resolved", "air-offline", "a1", 1.0)]
    assert plan.raised[0].alert.state is AlertState.RESOLVED


def test_never_reported_after_an_hour_and_cleared_once_it_reports() -> None:
    unheard = {
        "bin-old": engine.Unheard("waste_bin", "w2", ago(61)),
        "bin-new": engine.Unheard("waste_bin", "w2", ago(59)),
    }
    first = plan_tick(
        {0: EngineState()}, TickLoaded(caught_up=True, unheard=unheard), RULES, 1, NOW
    )
    assert summary(first.raised) == [("opened", "never", "bin-old", 61.0)]
    assert first.raised[0].alert.kind == "waste_bin"  # the sensor's kind, the rule says "any"
    # bin-old has reported since (no longer among the unheard): its alert clears.
    later = TickLoaded(caught_up=True, unheard={"bin-new": unheard["bin-new"]})
    second = plan_tick(first.alerts, later, RULES, 1, NOW + timedelta(seconds=30))
    assert summary(second.raised) == [("resolved", "never", "bin-old", 0.0)]


# --- area rules -----------------------------------------------------------------------------


def test_an_area_opens_when_more_than_half_of_its_fresh_air_sensors_trigger() -> None:
    sensors = {
        # w1: 2 of 3 fresh air sensors above 50 -> 2/3 > 1/2: opens.
        "a": air("w1", 5, 80),
        "b": air("w1", 5, 60),
        "c": air("w1", 5, 20),
        "stale": air("w1", 61, 20),  # older than 1 h: not counted (else 2/4, no alert)
        # w2: 1 of 2 -> 1/2 is not more than half.
        "d": air("w2", 5, 90),
        "e": air("w2", 5, 10),
        # w3: one fresh sensor, fewer than min_sensors 2: no verdict.
        "f": air("w3", 5, 99),
    }
    loaded = TickLoaded(caught_up=True, area_sensors=sensors)
    plan = plan_tick({0: EngineState()}, loaded, RULES, 1, NOW)
    assert summary(plan.raised) == [("opened", "area-pm25", "area:w1", 0.6667)]
    alert = plan.raised[0].alert
    assert alert.area_id == "w1" and alert.threshold == 0.5 and alert.sensor_id is None
    # The area's sensors are the store's, not the partition's: its own sensors are unchanged.
    assert plan.alerts[0].sensors == {}


def test_an_area_alert_clears_at_a_quarter_and_holds_above_it() -> None:
    hot = {k: air("w1", 5, 80) for k in "abc"}
    opened = plan_tick(
        {0: EngineState()}, TickLoaded(caught_up=True, area_sensors=hot), RULES, 1, NOW
    ).alerts[0]
    # 1 of 3 above: 1/3 is above the clear share 1/4: the alert holds.
    third = {"a": air("w1", 5, 80), "b": air("w1", 5, 20), "c": air("w1", 5, 20)}
    held = plan_tick({0: opened}, TickLoaded(caught_up=True, area_sensors=third), RULES, 1, NOW)
    assert held.raised == []
    # 1 of 4: exactly a quarter, which clears ("at most").
    quarter = {**third, "d": air("w1", 5, 20)}
    plan = plan_tick({0: opened}, TickLoaded(caught_up=True, area_sensors=quarter), RULES, 1, NOW)
    assert summary(plan.raised) == [("resolved", "area-pm25", "area:w1", 0.25)]


def test_only_the_owner_of_an_areas_partition_evaluates_it() -> None:
    [mine] = ids_in(0, 2, "ward-", 1)
    [theirs] = ids_in(1, 2, "ward-", 1)
    sensors = {f"{area}-{i}": air(area, 5, 80) for area in (mine, theirs) for i in range(2)}
    loaded = TickLoaded(caught_up=True, area_sensors=sensors)
    plan = plan_tick({0: EngineState()}, loaded, RULES, 2, NOW)
    assert summary(plan.raised) == [("opened", "area-pm25", f"area:{mine}", 1.0)]
    # With both partitions, each area opens once, in its own partition's tracks.
    both = plan_tick({0: EngineState(), 1: EngineState()}, loaded, RULES, 2, NOW)
    assert len(both.raised) == 2
    assert set(both.alerts[0].tracks) == {("area-pm25", f"area:{mine}")}
    assert set(both.alerts[1].tracks) == {("area-pm25", f"area:{theirs}")}


def test_owned_areas_groups_the_stored_sensors_by_the_partition_of_their_area() -> None:
    [mine] = ids_in(0, 2, "ward-", 1)
    [theirs] = ids_in(1, 2, "ward-", 1)
    sensors = {"s1": air(mine, 1), "s2": air(theirs, 1), "s3": air(None, 1), "s4": air(mine, 2)}
    assert owned_areas(sensors, 2, {0}) == {0: {"s1": sensors["s1"], "s4": sensors["s4"]}}
    assert owned_areas(sensors, 2, {0, 1}) == {
        0: {"s1": sensors["s1"], "s4": sensors["s4"]},
        1: {"s2": sensors["s2"]},
    }


def test_the_area_query_asks_for_the_watched_kinds_as_fresh_as_the_longest_rule_counts() -> None:
    assert area_query(RULES, NOW) == (["air"], ago(60))
    assert area_query(RULES.per_sensor(), NOW) is None  # no area rule: nothing to load
    two = parse_rules(
        """
version: 1
rules:
  - {id: a, kind: water, scope: area, metric: do, below: 2, area: {more_than: 0.5,
     fresh_within: 30m}, severity: warning, citation: test}
  - {id: b, kind: air, scope: area, metric: pm25, above: 50, area: {more_than: 0.5,
     fresh_within: 3h}, severity: warning, citation: test}
"""
    )
    assert area_query(two, NOW) == (["air", "water"], ago(180))


# --- ownership of staleness, operators, purity ---------------------------------------------


def test_each_partition_checks_only_the_sensors_that_map_to_it() -> None:
    ours = ids_in(0, 2, "air-", 2)
    other = ids_in(1, 2, "air-", 1)
    bins = ids_in(0, 2, "bin-", 1) + ids_in(1, 2, "bin-", 1)
    # A state may still hold a sensor another partition owns (it came through this one once).
    state = EngineState(sensors={s: air("w1", 30) for s in [*ours, *other]})
    unheard = {b: engine.Unheard("waste_bin", None, ago(90)) for b in bins}
    loaded = TickLoaded(caught_up=True, unheard=unheard)
    plan = plan_tick({0: state}, loaded, RULES, 2, NOW)
    assert summary(plan.raised) == sorted(
        [("opened", "air-offline", s, 30.0) for s in ours] + [("opened", "never", bins[0], 90.0)]
    )
    # Both partitions owned: every unheard sensor is flagged exactly once.
    both = plan_tick({0: EngineState(), 1: EngineState()}, loaded, RULES, 2, NOW)
    assert sorted(e.alert.subject for e in both.raised) == sorted(bins)


def test_operators_changes_reach_every_partition_even_before_catching_up() -> None:
    silent = {"a1": air("w1", 20)}
    opened = plan_tick({0: EngineState(sensors=silent)}, TickLoaded(caught_up=True), RULES, 1, NOW)
    alert: Alert = opened.raised[0].alert
    by_operator = replace(
        alert, state=AlertState.RESOLVED, resolved_at=NOW, resolved_by="op", resolved_note="fixed"
    )
    states = {0: opened.alerts[0], 1: EngineState()}
    plan = plan_tick(states, TickLoaded(changed=[by_operator]), RULES, 2, NOW)
    assert [(e.type, e.alert.resolved_by) for e in plan.by_operators] == [
        (EventType.RESOLVED, "op")
    ]
    assert plan.raised == []
    track = plan.alerts[0].tracks[("air-offline", "a1")]
    assert track.suppressed and track.alert is not None and not track.alert.active
    # Still silent on the next tick: resolved by an operator, it does not re-open.
    later = plan_tick({0: plan.alerts[0]}, TickLoaded(caught_up=True), RULES, 1, NOW)
    assert later.raised == []


def test_the_plan_leaves_the_states_it_was_given_untouched() -> None:
    state = EngineState(sensors={"a1": air("w1", 30)})
    before = state.copy()
    loaded = TickLoaded(caught_up=True, area_sensors={k: air("w1", 1, 90) for k in "xy"})
    plan = plan_tick({0: state}, loaded, RULES, 1, NOW)
    assert len(plan.raised) == 2 and len(plan.alerts[0].tracks) == 2
    assert state == before and state.tracks == {}
