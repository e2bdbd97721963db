"""The alert engine at its exact edges, through its public functions.

Each case sits on a boundary that a `<` for `<=` (or a lost field) would move: the minimum
duration, the cool-down, staleness, an area's freshness and share, hysteresis, late readings,
and what an alert carries at each step of its life.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from urbanpulse.alerts import engine
from urbanpulse.alerts.engine import EngineState, SensorSeen, Track, evaluate
from urbanpulse.alerts.model import SYSTEM, Alert, AlertState, EventType, Observation
from urbanpulse.alerts.rules import RuleSet, parse_rules

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
RULES = parse_rules(
    """
version: 1
defaults: {cooldown: 30m}
rules:
  - {id: pm25-hi, kind: air, metric: pm25, above: 50, clear_below: 40, severity: warning,
     citation: test}
  - {id: occ, kind: traffic_camera, metric: occupancy, above: 85, for: 5m, severity: warning,
     citation: test}
  - {id: do-low, kind: water, metric: do, below: 4, clear_above: 5, severity: warning,
     citation: test}
  - {id: pm25-24h, kind: air, metric: pm25, window: 24h, min_hours: 2, above: 45,
     severity: warning, citation: QCVN}
  - {id: no2-1h, kind: air, metric: no2, window: 1h, above: 200, severity: warning,
     citation: QCVN}
  - {id: offline-air, kind: air, offline_after: 15m, severity: warning, citation: test}
  - {id: area-aqi, kind: air, scope: area, metric: vn_aqi, at_least: 151,
     area: {more_than: "1/3", clear_at_most: "1/4", min_sensors: 3, fresh_within: 1h},
     severity: critical, citation: test}
"""
)
BY_ID = {r.id: r for r in RULES}
ONLY_PM25 = RuleSet((BY_ID["pm25-hi"],))


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def obs(
    minutes: float, kind: str = "air", sensor: str = "s1", area: str | None = "w1", **values: float
) -> Observation:
    return Observation(sensor, kind, at(minutes), at(minutes), values, area_id=area)


def feed(rule_id: str, series: list[tuple[float, float]], kind: str = "air") -> list[tuple]:
    """(minute, event type, alert id) of every event of one rule fed (minute, value) pairs."""
    rule = BY_ID[rule_id]
    track, seen = Track(), []
    for minute, value in series:
        track, events = evaluate(track, obs(minute, kind, **{rule.metric or "": value}), rule)
        seen += [(minute, e.type, e.alert.alert_id) for e in events]
    return seen


# --- thresholds and hysteresis ------------------------------------------------------------


def test_above_is_strict_and_clear_below_is_strict() -> None:
    # 50 is not above 50; 50.01 is.  40 does not clear (clear_below 40); 39.99 does.
    events = feed("pm25-hi", [(0, 50), (1, 50.01), (2, 40), (3, 39.99)])
    assert [(m, t) for m, t, _ in events] == [(1, EventType.OPENED), (3, EventType.RESOLVED)]


def test_below_with_clear_above_mirrors_it() -> None:
    # DO 4 is not below 4; 3.99 opens; 3.5 still triggers (touched); 4.5 and 5 hold between
    # the limits (clear_above 5 is strict); 5.01 clears.
    series = [(0, 4), (1, 3.99), (2, 3.5), (3, 4.5), (4, 5), (5, 5.01)]
    events = feed("do-low", series, "water")
    assert [(m, t) for m, t, _ in events] == [
        (1, EventType.OPENED),
        (2, EventType.UPDATED),
        (5, EventType.RESOLVED),
    ]


def test_an_active_alert_records_each_newer_value_and_the_resolution_its_own() -> None:
    rule = BY_ID["pm25-hi"]
    track, [opened] = evaluate(Track(), obs(0, pm25=60), rule)
    assert (opened.alert.opened_at, opened.alert.last_triggered_at) == (at(0), at(0))
    track, [updated] = evaluate(track, obs(1, pm25=70), rule)
    assert updated.type is EventType.UPDATED
    assert (updated.alert.value, updated.alert.last_triggered_at) == (70, at(1))
    assert updated.alert.opened_at == at(0) and updated.alert.trigger_count == 1
    track, events = evaluate(track, obs(2, pm25=45), rule)  # between the limits: nothing
    assert events == [] and track.alert is not None and track.alert.value == 70
    track, [resolved] = evaluate(track, obs(3, pm25=12.5), rule)
    assert resolved.alert.state is AlertState.RESOLVED
    assert (resolved.alert.resolved_at, resolved.alert.resolved_by) == (at(3), SYSTEM)
    assert resolved.alert.value == 12.5  # the value that cleared it
    assert resolved.alert.alert_id == opened.alert.alert_id


# --- minimum duration ----------------------------------------------------------------------


def test_minimum_duration_is_met_at_exactly_its_length() -> None:
    events = feed("occ", [(0, 90), (4.99, 90), (5, 90)], "traffic_camera")
    assert [(m, t) for m, t, _ in events] == [(5, EventType.OPENED)]


def test_the_held_since_time_is_kept_while_waiting_and_dropped_on_a_dip() -> None:
    rule = BY_ID["occ"]
    track, _ = evaluate(Track(), obs(0, "traffic_camera", occupancy=90), rule)
    assert track.since == at(0)
    track, _ = evaluate(track, obs(3, "traffic_camera", occupancy=90), rule)
    assert track.since == at(0)  # still pending, from the first trigger
    track, _ = evaluate(track, obs(4, "traffic_camera", occupancy=10), rule)
    assert track.since is None and track.last_ts == at(4)


# --- cool-down -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("after_resolution", "expected"),
    [
        (timedelta(minutes=30), EventType.REOPENED),  # within the 30 min cool-down (inclusive)
        (timedelta(minutes=30) + SECOND, EventType.OPENED),  # just after it: a new alert
    ],
)
def test_cooldown_boundary(after_resolution: timedelta, expected: EventType) -> None:
    rule = BY_ID["pm25-hi"]
    track, [opened] = evaluate(Track(), obs(0, pm25=60), rule)
    track, _ = evaluate(track, obs(5, pm25=30), rule)
    again = at(5) + after_resolution
    observation = Observation("s1", "air", again, again, {"pm25": 80}, area_id="w1")
    track, [event] = evaluate(track, observation, rule)
    assert event.type is expected
    assert (event.alert.alert_id == opened.alert.alert_id) is (expected is EventType.REOPENED)
    assert event.alert.state is AlertState.OPEN and event.alert.value == 80
    assert event.alert.last_triggered_at == again
    if expected is EventType.REOPENED:
        assert event.alert.opened_at == at(0) and event.alert.trigger_count == 2
        assert event.alert.resolved_at is None and event.alert.resolved_by is None
    else:
        assert event.alert.opened_at == again and event.alert.trigger_count == 1


# --- late and repeated readings ---------------------------------------------------------------


def test_a_reading_at_the_same_event_time_is_a_replay() -> None:
    rule = BY_ID["pm25-hi"]
    track, _ = evaluate(Track(), obs(10, pm25=10), rule)
    assert track.last_ts == at(10)
    same, events = evaluate(track, obs(10, pm25=99), rule)
    assert (same, events) == (track, [])
    newer, events = evaluate(track, obs(10.01, pm25=99), rule)
    assert [e.type for e in events] == [EventType.OPENED] and newer.last_ts == at(10.01)


# --- window rules ------------------------------------------------------------------------------


def test_a_window_rule_needs_its_minimum_hours_exactly() -> None:
    rule = BY_ID["pm25-24h"]

    def windowed(present: int) -> Observation:
        return Observation(
            "s1", "air", T0, T0, {"pm25": 1}, windows={("pm25", 24): (50.0, present)}
        )

    assert evaluate(Track(), windowed(1), rule) == (Track(), [])
    _, [event] = evaluate(Track(), windowed(2), rule)
    assert event.alert.value == 50.0 and event.alert.threshold == 45.0


def test_a_window_rule_without_min_hours_needs_one_hour_with_data() -> None:
    rule = BY_ID["no2-1h"]
    empty = Observation("s1", "air", T0, T0, {"no2": 999}, windows={("no2", 1): (300.0, 0)})
    assert evaluate(Track(), empty, rule) == (Track(), [])
    missing = Observation("s1", "air", T0, T0, {"no2": 999})
    assert evaluate(Track(), missing, rule) == (Track(), [])
    one = Observation("s1", "air", T0, T0, {"no2": 1}, windows={("no2", 1): (300.0, 1)})
    _, [event] = evaluate(Track(), one, rule)
    assert event.alert.value == 300.0


# --- staleness ---------------------------------------------------------------------------------


def seen_at(
    minutes: float, kind: str = "air", area: str | None = "w1", **values: float
) -> SensorSeen:
    return SensorSeen(kind, area, last_seen=at(minutes), ts=at(minutes), values=values)


def test_offline_needs_strictly_more_than_offline_after() -> None:
    state = EngineState(sensors={"s1": seen_at(0, pm25=10)})
    quiet, events = engine.tick(state, RULES, at(15))  # exactly 15 min: not yet
    assert events == []
    _, [event] = engine.tick(quiet, RULES, at(15) + SECOND)
    alert = event.alert
    assert (event.type, alert.rule_id, alert.subject) == (EventType.OPENED, "offline-air", "s1")
    assert (alert.value, alert.threshold) == (15.0, 15.0)  # minutes, to one decimal
    assert (alert.sensor_id, alert.area_id, alert.opened_at) == ("s1", "w1", at(15) + SECOND)
    assert "no data for 15 min" in alert.message_en


def test_offline_figures_keep_a_decimal_and_name_the_sensor() -> None:
    state = EngineState(sensors={"s1": seen_at(0, pm25=10)})
    _, [event] = engine.tick(state, RULES, at(16.5))
    assert event.alert.value == 16.5  # minutes silent, one decimal
    assert "Air sensor s1 offline: no data for 16 min" in event.alert.message_en


def test_a_reading_processed_at_the_tick_instant_still_clears_offline() -> None:
    # Staleness runs on processing time and is not ordered like event time: a reading handled
    # at the same instant as the tick that opened the alert clears it.
    state = EngineState(sensors={"s1": seen_at(0, pm25=10)})
    state, [opened] = engine.tick(state, RULES, at(16))
    back = Observation("s1", "air", at(16), at(16), {"pm25": 10}, area_id="w1")
    _, events = engine.evaluate_batch(state, [back], RULES, at(16))
    assert [(e.type, e.alert.alert_id) for e in events] == [
        (EventType.RESOLVED, opened.alert.alert_id)
    ]


def test_a_first_reading_without_an_area_has_none() -> None:
    state, _ = engine.evaluate_batch(EngineState(), [obs(0, area=None, pm25=10)], RULES, at(0))
    assert state.sensors["s1"].area_id is None


def test_an_offline_alert_keeps_its_opening_figures_while_ticking() -> None:
    state = EngineState(sensors={"s1": seen_at(0, pm25=10)})
    state, [opened] = engine.tick(state, RULES, at(16))
    state, events = engine.tick(state, RULES, at(40))
    assert events == []
    track = state.tracks[("offline-air", "s1")]
    assert track.alert is not None and track.alert.value == opened.alert.value == 16.0


def test_a_sensor_without_an_offline_rule_for_its_kind_is_not_watched() -> None:
    state = EngineState(sensors={"w": seen_at(0, kind="water", area=None, ph=7)})
    _, events = engine.tick(state, RULES, at(600))
    assert events == []


def test_a_reading_only_checks_staleness_of_a_track_that_exists() -> None:
    # A first reading of a sensor that was never offline starts no offline track.
    state, events = engine.evaluate_batch(EngineState(), [obs(0, pm25=10)], RULES, at(0))
    assert events == [] and ("offline-air", "s1") not in state.tracks


# --- the batch: sensors seen, late readings, areas -----------------------------------------


def test_a_late_reading_is_a_sign_of_life_but_not_the_latest_state() -> None:
    state, _ = engine.evaluate_batch(EngineState(), [obs(10, pm25=20)], RULES, at(10))
    late = Observation("s1", "air", at(5), at(12), {"pm25": 30}, area_id=None)
    state, _ = engine.evaluate_batch(state, [late], RULES, at(12))
    seen = state.sensors["s1"]
    assert (seen.ts, seen.values, seen.last_seen, seen.area_id) == (
        at(10),
        {"pm25": 20},
        at(12),
        "w1",
    )
    # An older receipt time never moves last_seen back.
    older = Observation("s1", "air", at(4), at(11), {"pm25": 30}, area_id=None)
    state, _ = engine.evaluate_batch(state, [older], RULES, at(12))
    assert state.sensors["s1"].last_seen == at(12)


def test_a_newer_reading_without_an_area_keeps_the_known_area() -> None:
    state, _ = engine.evaluate_batch(EngineState(), [obs(0, pm25=20)], RULES, at(0))
    state, _ = engine.evaluate_batch(state, [obs(1, area=None, pm25=25)], RULES, at(1))
    assert state.sensors["s1"] == SensorSeen("air", "w1", at(1), at(1), {"pm25": 25})


def test_a_reading_at_the_same_event_time_replaces_the_seen_state() -> None:
    state, _ = engine.evaluate_batch(EngineState(), [obs(0, pm25=20)], RULES, at(0))
    again = Observation("s1", "air", at(0), at(2), {"pm25": 21}, area_id="w1")
    state, _ = engine.evaluate_batch(state, [again], RULES, at(2))
    assert state.sensors["s1"].values == {"pm25": 21} and state.sensors["s1"].last_seen == at(2)


def test_a_batch_is_evaluated_in_event_time_order_per_sensor() -> None:
    # Given newest first, the batch is still evaluated oldest first: 10 (quiet), 60 (opens),
    # 30 (clears).  Newest first, the two older readings would be ignored as late.
    batch = [obs(2, pm25=30), obs(1, pm25=60), obs(0, pm25=10)]
    _, events = engine.evaluate_batch(EngineState(), batch, ONLY_PM25, at(2))
    assert [(e.type, e.alert.opened_at, e.alert.resolved_at) for e in events] == [
        (EventType.OPENED, at(1), None),
        (EventType.RESOLVED, at(1), at(2)),
    ]


def area_batch(aqis: list[float], minutes: float = 0) -> list[Observation]:
    return [obs(minutes, sensor=f"a{i}", vn_aqi=v) for i, v in enumerate(aqis)]


def area_events(events: list) -> list[EventType]:  # type: ignore[type-arg]
    return [e.type for e in events if e.alert.rule_id == "area-aqi"]


def test_area_share_must_exceed_the_limit_and_clears_at_or_below_its_own() -> None:
    # 1 of 3 at or above 151 is exactly a third: not more.  2 of 3: opens.
    state, events = engine.evaluate_batch(EngineState(), area_batch([151, 150, 80]), RULES, T0)
    assert area_events(events) == []
    state, events = engine.evaluate_batch(state, area_batch([151, 151, 80], 1), RULES, T0)
    [opened] = [e for e in events if e.alert.rule_id == "area-aqi"]
    assert opened.type is EventType.OPENED
    assert (opened.alert.value, opened.alert.threshold) == (0.6667, 0.3333)
    assert (opened.alert.subject, opened.alert.area_id, opened.alert.opened_at) == (
        "area:w1",
        "w1",
        T0,
    )
    assert "Area w1: 2 of 3 air sensors" in opened.alert.message_en
    # A fourth sensor: 1 of 4 = 1/4 is at most clear_at_most (1/4): clears.
    four = [*area_batch([151, 100, 80], 2), obs(2, sensor="a3", vn_aqi=90)]
    state, events = engine.evaluate_batch(state, four, RULES, T0)
    assert area_events(events) == [EventType.RESOLVED]


def test_area_share_between_the_limits_holds() -> None:
    state, _ = engine.evaluate_batch(EngineState(), area_batch([151, 151, 80]), RULES, T0)
    # 1 of 3 = 0.333: not above 1/3 (no new trigger) and above 1/4 (no clear).
    state, events = engine.evaluate_batch(state, area_batch([151, 100, 80], 1), RULES, T0)
    assert area_events(events) == []
    assert state.tracks[("area-aqi", "area:w1")].alert.state is AlertState.OPEN  # type: ignore[union-attr]


def test_area_needs_min_sensors_fresh_within_the_window() -> None:
    # Three sensors, but one was last seen 1 h + 1 s before now: only two count, no verdict.
    sensors = {
        "a0": seen_at(0, vn_aqi=200),
        "a1": seen_at(0, vn_aqi=200),
        "a2": SensorSeen("air", "w1", at(0) - SECOND, at(0), {"vn_aqi": 200}),
    }
    _, events = engine.tick(EngineState(sensors=sensors), RULES, at(60))
    assert area_events(events) == []
    # Exactly 1 h old still counts: three fresh sensors, all meeting: opens.
    sensors["a2"] = seen_at(0, vn_aqi=200)
    _, events = engine.tick(EngineState(sensors=sensors), RULES, at(60))
    assert area_events(events) == [EventType.OPENED]


def test_area_counts_only_its_kind_area_and_metric() -> None:
    sensors = {
        "a0": seen_at(0, vn_aqi=200),
        "a1": seen_at(0, vn_aqi=200),
        "other-area": seen_at(0, area="w2", vn_aqi=200),
        "other-kind": seen_at(0, kind="water", vn_aqi=200),
        "no-aqi": seen_at(0, pm25=10),
    }
    _, events = engine.tick(EngineState(sensors=sensors), RULES, at(1))
    assert area_events(events) == []  # two that count: fewer than min_sensors 3
    sensors["a2"] = seen_at(0, vn_aqi=100)
    _, events = engine.tick(EngineState(sensors=sensors), RULES, at(1))
    assert area_events(events) == [EventType.OPENED]  # 2 of 3 (a0, a1 of a0..a2)


def test_tick_only_watches_owned_sensors_but_areas_regardless() -> None:
    sensors = {f"a{i}": seen_at(0, vn_aqi=200) for i in range(3)}
    state, events = engine.tick(
        EngineState(sensors=sensors), RULES, at(16), owns=lambda s: s == "a1"
    )
    offline = sorted(e.alert.subject for e in events if e.alert.rule_id == "offline-air")
    assert offline == ["a1"]
    # The area rule is not per sensor: 3 of 3 fresh (16 min < 1 h) sensors meet it.
    assert area_events(events) == [EventType.OPENED]
    assert ("offline-air", "a0") not in state.tracks


# --- operators and restarts ---------------------------------------------------------------


def open_alert(minutes: float = 0, value: float = 80) -> tuple[EngineState, Alert]:
    state, [opened] = engine.evaluate_batch(
        EngineState(), [obs(minutes, pm25=value)], ONLY_PM25, at(minutes)
    )
    return state, opened.alert


def stored(alert: Alert, **changes: object) -> Alert:
    return Alert(**{**alert.to_dict(), **changes})  # type: ignore[arg-type]


def test_an_acknowledgement_is_merged_with_who_and_why() -> None:
    state, alert = open_alert()
    acked = stored(
        alert,
        state=AlertState.ACKNOWLEDGED,
        acknowledged_at=at(1),
        acknowledged_by="op",
        acknowledged_note="on it",
    )
    state, [event] = engine.merge_operator_changes(state, [acked])
    assert event.type is EventType.ACKNOWLEDGED
    merged = state.tracks[("pm25-hi", "s1")].alert
    assert merged is not None and merged == event.alert
    assert (
        merged.state,
        merged.acknowledged_at,
        merged.acknowledged_by,
        merged.acknowledged_note,
    ) == (
        AlertState.ACKNOWLEDGED,
        at(1),
        "op",
        "on it",
    )
    # The engine's own figures stay: the value it last saw.
    assert merged.value == 80 and merged.last_triggered_at == at(0)


def test_a_resolution_by_an_operator_is_merged_and_silences_the_track() -> None:
    state, alert = open_alert()
    done = stored(
        alert,
        state=AlertState.RESOLVED,
        resolved_at=at(2),
        resolved_by="op",
        resolved_note="fixed",
        acknowledged_at=at(1),
        acknowledged_by="op2",
        acknowledged_note="seen",
    )
    state, [event] = engine.merge_operator_changes(state, [done])
    track = state.tracks[("pm25-hi", "s1")]
    assert event.type is EventType.RESOLVED and track.suppressed and track.since is None
    assert event.alert == track.alert
    assert track.last_ts == at(0)
    merged = track.alert
    assert merged is not None
    assert (merged.resolved_at, merged.resolved_by, merged.resolved_note) == (at(2), "op", "fixed")
    assert (merged.acknowledged_at, merged.acknowledged_by, merged.acknowledged_note) == (
        at(1),
        "op2",
        "seen",
    )


def test_operator_changes_for_other_alerts_are_ignored() -> None:
    state, alert = open_alert()
    unknown_track = stored(alert, rule_id="other", state=AlertState.RESOLVED, resolved_by="op")
    other_id = stored(alert, alert_id="x", state=AlertState.RESOLVED, resolved_by="op")
    still_open = stored(alert)
    new, events = engine.merge_operator_changes(state, [unknown_track, other_id, still_open])
    assert events == [] and new.tracks == state.tracks
    # A track that never alerted: nothing to merge into.  Ignored ones do not stop the rest.
    quiet, _ = engine.evaluate_batch(state, [obs(1, sensor="s2", pm25=10)], ONLY_PM25, at(1))
    for_quiet = stored(alert, subject="s2", state=AlertState.RESOLVED, resolved_by="op")
    acked = stored(alert, state=AlertState.ACKNOWLEDGED, acknowledged_by="op")
    _, events = engine.merge_operator_changes(quiet, [for_quiet, other_id, acked])
    assert [e.type for e in events] == [EventType.ACKNOWLEDGED]


def test_an_acknowledged_alert_is_not_acknowledged_again_but_can_be_resolved() -> None:
    state, alert = open_alert()
    acked = stored(alert, state=AlertState.ACKNOWLEDGED, acknowledged_by="op")
    state, _ = engine.merge_operator_changes(state, [acked])
    state, events = engine.merge_operator_changes(state, [acked])
    assert events == []
    done = stored(acked, state=AlertState.RESOLVED, resolved_at=at(3), resolved_by="op")
    _, [event] = engine.merge_operator_changes(state, [done])
    assert event.type is EventType.RESOLVED


def test_a_silenced_track_wakes_only_after_a_clear() -> None:
    state, alert = open_alert()
    done = stored(alert, state=AlertState.RESOLVED, resolved_at=at(1), resolved_by="op")
    state, _ = engine.merge_operator_changes(state, [done])
    state, events = engine.evaluate_batch(state, [obs(2, pm25=45)], ONLY_PM25, at(2))
    assert events == [] and state.tracks[("pm25-hi", "s1")].suppressed  # between the limits
    state, events = engine.evaluate_batch(state, [obs(3, pm25=30)], ONLY_PM25, at(3))
    assert events == [] and not state.tracks[("pm25-hi", "s1")].suppressed
    state, events = engine.evaluate_batch(state, [obs(4, pm25=90)], ONLY_PM25, at(4))
    assert [e.type for e in events] == [EventType.REOPENED]


def test_rebuild_keeps_the_newest_alert_per_track_and_the_active_one_first() -> None:
    _, first = open_alert(0)
    old = first.resolved(at(2))
    newer = stored(first, alert_id="second", opened_at=at(50), last_triggered_at=at(50))
    state = engine.rebuild([newer, old], {})
    track = state.tracks[("pm25-hi", "s1")]
    assert track.alert == newer and track.last_ts == at(50) and not track.suppressed
    # A resolved alert newer than an active one does not displace it.
    later_resolved = stored(old, alert_id="third", last_triggered_at=at(90)).resolved(at(91))
    state = engine.rebuild([newer, later_resolved], {})
    assert state.tracks[("pm25-hi", "s1")].alert == newer


def test_rebuild_after_a_system_resolution_starts_from_the_resolution_time() -> None:
    _, alert = open_alert(0)
    resolved = alert.resolved(at(7))
    state = engine.rebuild([resolved], {"s1": seen_at(7, pm25=10)})
    track = state.tracks[("pm25-hi", "s1")]
    assert track.last_ts == at(7) and not track.suppressed
    assert state.sensors == {"s1": seen_at(7, pm25=10)}
    # A reading at the resolution's time is not newer: nothing happens.
    _, events = engine.evaluate_batch(state, [obs(7, pm25=90)], ONLY_PM25, at(7))
    assert events == []
    # Within the cool-down it re-opens the same alert.
    _, [event] = engine.evaluate_batch(state, [obs(8, pm25=90)], ONLY_PM25, at(8))
    assert event.type is EventType.REOPENED and event.alert.alert_id == alert.alert_id


def test_rebuild_after_an_operator_resolution_stays_silenced() -> None:
    _, alert = open_alert(0)
    by_op = alert.resolved(at(30), by="op")
    track = engine.rebuild([by_op], {}).tracks[("pm25-hi", "s1")]
    # The operator's wall-clock time is not an event time: the track resumes from the alert's.
    assert track.suppressed and track.last_ts == at(0)


def test_a_late_reading_after_a_resolution_changes_nothing() -> None:
    rule = BY_ID["pm25-hi"]
    track, _ = evaluate(Track(), obs(0, pm25=60), rule)
    track, [_resolved] = evaluate(track, obs(5, pm25=30), rule)
    assert track.last_ts == at(5)
    late, events = evaluate(track, obs(3, pm25=99), rule)  # older than the resolution
    assert (late, events) == (track, [])


def test_a_lagging_batch_can_find_a_sensor_offline_and_names_it() -> None:
    # The processor catches up on a backlog: the sensor was last heard of at 17, the batch is
    # handled at 60 (43 min later, past the 30 min cool-down of the alert resolved at 17).
    state = EngineState(sensors={"s1": seen_at(0, pm25=10)})
    state, _ = engine.tick(state, RULES, at(16))
    state, [resolved] = engine.evaluate_batch(state, [obs(17, pm25=10)], RULES, at(17))
    assert resolved.type is EventType.RESOLVED
    backlog = Observation("s1", "air", at(10), at(10), {"pm25": 10}, area_id="w1")
    _, events = engine.evaluate_batch(state, [backlog], RULES, at(60))
    [opened] = [e for e in events if e.alert.rule_id == "offline-air"]
    assert opened.type is EventType.OPENED and opened.alert.sensor_id == "s1"
    assert "sensor s1 offline: no data for 43 min" in opened.alert.message_en


# --- what a track remembers after each step ------------------------------------------------


def test_a_track_keeps_its_event_time_and_since_through_every_step() -> None:
    rule = BY_ID["pm25-hi"]
    track, [opened] = evaluate(Track(), obs(0, pm25=60), rule)
    alert = opened.alert
    assert (alert.kind, alert.severity.value, alert.metric) == ("air", "warning", "pm25")
    assert (track.last_ts, track.since) == (at(0), at(0))
    track, _ = evaluate(track, obs(1, pm25=70), rule)  # touched
    assert (track.last_ts, track.since) == (at(1), at(0))
    track, _ = evaluate(track, obs(2, pm25=45), rule)  # held between the limits
    assert (track.last_ts, track.since) == (at(2), at(0))
    track, _ = evaluate(track, obs(3, pm25=30), rule)  # resolved
    assert (track.last_ts, track.since) == (at(3), None)
    track, _ = evaluate(track, obs(4, pm25=10), rule)  # quiet: the resolved alert is kept
    assert (track.last_ts, track.since, track.alert) == (at(4), None, _resolved(track))
    track, [again] = evaluate(track, obs(5, pm25=80), rule)  # within the cool-down
    assert again.type is EventType.REOPENED and again.alert.alert_id == alert.alert_id
    assert (track.last_ts, track.since) == (at(5), at(5))
    assert "80 µg/m³ above the limit 50" in again.alert.message_en
    assert "80 µg/m³ vượt ngưỡng 50" in again.alert.message_vi


def _resolved(track: Track) -> Alert:
    assert track.alert is not None and track.alert.state is AlertState.RESOLVED
    return track.alert


def test_a_pending_retrigger_reopens_within_the_cooldown() -> None:
    rule = BY_ID["occ"]

    def occ(minute: float, value: float) -> Observation:
        return obs(minute, "traffic_camera", occupancy=value)

    track = Track()
    for minute in (0, 5):
        track, events = evaluate(track, occ(minute, 90), rule)
    [opened] = events
    track, _ = evaluate(track, occ(6, 50), rule)  # resolved at 6
    track, events = evaluate(track, occ(7, 90), rule)  # pending again
    assert events == [] and (track.last_ts, track.since) == (at(7), at(7))
    assert track.alert is not None and track.alert.alert_id == opened.alert.alert_id
    track, [again] = evaluate(track, occ(12, 90), rule)  # 5 min held, 6 min after resolution
    assert again.type is EventType.REOPENED and again.alert.alert_id == opened.alert.alert_id


def test_a_zero_cooldown_opens_a_new_alert_each_time() -> None:
    rules = parse_rules(
        "version: 1\nrules:\n  - {id: z, kind: air, metric: pm25, above: 50, severity: info,\n"
        "     citation: c, cooldown: 0}\n"
    )
    [rule] = rules
    track, [first] = evaluate(Track(), obs(0, pm25=60), rule)
    track, _ = evaluate(track, obs(1, pm25=10), rule)
    track, [second] = evaluate(track, obs(2, pm25=60), rule)
    assert second.type is EventType.OPENED and second.alert.alert_id != first.alert.alert_id


def test_a_silenced_track_still_advances_its_event_time() -> None:
    state, alert = open_alert()
    done = stored(alert, state=AlertState.RESOLVED, resolved_at=at(1), resolved_by="op")
    state, _ = engine.merge_operator_changes(state, [done])
    state, _ = engine.evaluate_batch(state, [obs(2, pm25=90)], ONLY_PM25, at(2))
    assert state.tracks[("pm25-hi", "s1")].last_ts == at(2)
    _, events = engine.evaluate_batch(state, [obs(2, pm25=10)], ONLY_PM25, at(2))  # a replay
    assert events == [] and state.tracks[("pm25-hi", "s1")].suppressed


def test_alert_ids_differ_by_rule_and_by_subject() -> None:
    rules = RuleSet((BY_ID["pm25-hi"], BY_ID["pm25-24h"]))
    windowed = {("pm25", 24): (60.0, 24)}
    batch = [
        Observation(s, "air", T0, T0, {"pm25": 80}, area_id="w1", windows=windowed)
        for s in ("s1", "s2")
    ]
    _, events = engine.evaluate_batch(EngineState(), batch, rules, T0)
    ids = {(e.alert.rule_id, e.alert.subject): e.alert.alert_id for e in events}
    assert len(ids) == 4 and len(set(ids.values())) == 4
