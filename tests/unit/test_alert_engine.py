"""The pure alert engine: hysteresis, minimum duration, staleness, cool-down, areas, restarts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from urbanpulse.alerts import engine
from urbanpulse.alerts.engine import EngineState, SensorSeen, Track, evaluate
from urbanpulse.alerts.model import AlertState, EventType, Observation
from urbanpulse.alerts.rules import RuleSet, parse_rules

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
RULES = parse_rules(
    """
version: 1
defaults: {cooldown: 30m}
rules:
  - {id: pm25-hi, kind: air, metric: pm25, above: 50, clear_below: 40, severity: warning,
     citation: test}
  - {id: pm25-24h, kind: air, metric: pm25, window: 24h, min_hours: 2, above: 45,
     severity: warning, citation: QCVN}
  - {id: occ, kind: traffic_camera, metric: occupancy, above: 85, for: 5m, severity: warning,
     citation: test}
  - {id: incident, kind: traffic_camera, metric: incident, not_equal: 0, severity: critical,
     citation: test}
  - {id: offline-air, kind: air, offline_after: 15m, severity: warning, citation: test}
  - {id: area-aqi, kind: air, scope: area, metric: vn_aqi, at_least: 151,
     area: {more_than: "1/3", min_sensors: 3, fresh_within: 1h}, severity: critical,
     citation: test}
"""
)
BY_ID = {r.id: r for r in RULES}


def obs(minutes: float, kind: str = "air", sensor: str = "s1", **values: float) -> Observation:
    ts = T0 + timedelta(minutes=minutes)
    return Observation(sensor, kind, ts, ts, values, area_id="w1")


def run(rule_id: str, series: list[tuple[float, float]], kind: str = "air") -> list[str]:
    """Feed (minute, value) pairs through one rule; the event types in order."""
    rule = BY_ID[rule_id]
    track, seen = Track(), []
    for minute, value in series:
        track, events = evaluate(track, obs(minute, kind, **{rule.metric or "": value}), rule)
        seen += [e.type.value for e in events if e.type is not EventType.UPDATED]
    return seen


def test_opens_once_stays_open_and_resolves_with_hysteresis() -> None:
    # 49.9 below; 55 opens; 45 and 50 are between the limits (hold); 39 clears.
    assert run("pm25-hi", [(0, 49.9), (1, 55), (2, 60), (3, 45), (4, 50.1), (5, 39)]) == [
        "opened",
        "resolved",
    ]


def test_a_value_hovering_at_the_limit_does_not_flap() -> None:
    hovering = [(i, 50.5 if i % 2 else 49.5) for i in range(60)]
    assert run("pm25-hi", hovering) == ["opened"]


def test_open_alert_carries_what_the_operator_needs() -> None:
    rule = BY_ID["pm25-hi"]
    _, [event] = evaluate(Track(), obs(1, pm25=62.34), rule)
    alert = event.alert
    assert (alert.rule_id, alert.subject, alert.sensor_id, alert.area_id) == (
        "pm25-hi",
        "s1",
        "s1",
        "w1",
    )
    assert (alert.value, alert.threshold, alert.state) == (62.34, 50.0, AlertState.OPEN)
    assert "62.3 µg/m³ above the limit 50 µg/m³ at sensor s1" in alert.message_en
    assert "62,3 µg/m³ vượt ngưỡng 50 µg/m³ tại cảm biến s1" in alert.message_vi


def test_minimum_duration_on_event_time() -> None:
    # 86 % for 4 minutes then a dip at 4.5: nothing.  The dip restarts the clock: from 6 the
    # condition holds 5 minutes at 11, so the alert opens at 11 (kept across the dip, it would
    # have opened at 6, 6 minutes after 0).
    series = [(0, 86), (2, 90), (4, 88), (4.5, 80), (6, 86), (8, 90), (10, 87), (11, 95)]
    rule = BY_ID["occ"]
    track, opened = Track(), []
    for minute, value in series:
        track, events = evaluate(track, obs(minute, "traffic_camera", occupancy=value), rule)
        opened += [(minute, e.alert.opened_at) for e in events if e.type is EventType.OPENED]
    assert opened == [(11, T0 + timedelta(minutes=11))]
    # Exactly the minimum duration suffices: 6 -> 11 is 5 minutes, not more.
    track = Track()
    for minute in (6, 8, 10.99):
        track, events = evaluate(track, obs(minute, "traffic_camera", occupancy=90), rule)
        assert events == []
    track, events = evaluate(track, obs(11, "traffic_camera", occupancy=90), rule)
    assert [e.type for e in events] == [EventType.OPENED]
    assert events[0].alert.opened_at == T0 + timedelta(minutes=11)


def test_late_and_replayed_readings_change_nothing() -> None:
    rule = BY_ID["pm25-hi"]
    track, _ = evaluate(Track(), obs(10, pm25=10), rule)
    same, events = evaluate(track, obs(5, pm25=99), rule)  # late
    assert (same, events) == (track, [])
    opened, events = evaluate(track, obs(11, pm25=99), rule)
    again, events2 = evaluate(opened, obs(11, pm25=99), rule)  # replay
    assert len(events) == 1 and events2 == [] and again == opened


def test_retriggering_within_the_cooldown_reopens_the_same_alert() -> None:
    rule = BY_ID["pm25-hi"]
    track, [opened] = evaluate(Track(), obs(0, pm25=60), rule)
    track, [_resolved] = evaluate(track, obs(5, pm25=30), rule)
    track, [reopened] = evaluate(track, obs(20, pm25=70), rule)
    assert reopened.type is EventType.REOPENED
    assert reopened.alert.alert_id == opened.alert.alert_id
    assert (reopened.alert.trigger_count, reopened.alert.resolved_at) == (2, None)
    track, [_resolved] = evaluate(track, obs(25, pm25=30), rule)
    track, [fresh] = evaluate(track, obs(25 + 31, pm25=70), rule)  # after the cool-down
    assert fresh.type is EventType.OPENED and fresh.alert.alert_id != opened.alert.alert_id


def test_incident_code_other_than_zero() -> None:
    assert run("incident", [(0, 0), (1, 3), (2, 3), (3, 0)], "traffic_camera") == [
        "opened",
        "resolved",
    ]


def test_window_rule_reads_the_window_and_needs_enough_hours() -> None:
    rule = BY_ID["pm25-24h"]
    thin = Observation("s1", "air", T0, T0, {"pm25": 90}, windows={("pm25", 24): (60.0, 1)})
    assert evaluate(Track(), thin, rule) == (Track(), [])
    full = Observation("s1", "air", T0, T0, {"pm25": 9}, windows={("pm25", 24): (60.0, 20)})
    _, [event] = evaluate(Track(), full, rule)
    assert event.alert.value == 60.0
    assert "PM2.5 24-hour mean 60" in event.alert.message_en


def test_staleness_on_processing_time_opens_and_clears() -> None:
    seen = SensorSeen("air", "w1", last_seen=T0, ts=T0, values={"pm25": 10})
    state = EngineState(sensors={"s1": seen})
    quiet, events = engine.tick(state, RULES, T0 + timedelta(minutes=14))
    assert events == []
    offline, [event] = engine.tick(quiet, RULES, T0 + timedelta(minutes=16))
    assert event.type is EventType.OPENED and event.alert.rule_id == "offline-air"
    assert "offline: no data for 16 min" in event.alert.message_en
    still, events = engine.tick(offline, RULES, T0 + timedelta(minutes=20))
    assert [e.type for e in events] == []  # one alert, not one per tick
    # Data returns: the reading itself clears it.
    back = obs(21, pm25=10)
    _, events = engine.evaluate_batch(still, [back], RULES, T0 + timedelta(minutes=21))
    assert [e.type for e in events] == [EventType.RESOLVED]
    # Only sensors this processor owns are watched.
    _, events = engine.tick(quiet, RULES, T0 + timedelta(hours=2), owns=lambda _: False)
    assert events == []


def test_evaluate_batch_leaves_the_given_state_untouched() -> None:
    state = EngineState()
    new, events = engine.evaluate_batch(state, [obs(0, pm25=80)], RULES, T0)
    assert state.tracks == {} and state.sensors == {}
    assert [e.type for e in events] == [EventType.OPENED]
    assert ("pm25-hi", "s1") in new.tracks and "s1" in new.sensors


def test_area_rule_counts_more_than_a_third_of_fresh_sensors() -> None:
    def batch(aqis: list[float], minute: float) -> list[Observation]:
        return [obs(minute, sensor=f"a{i}", vn_aqi=v) for i, v in enumerate(aqis)]

    now = T0
    state, events = engine.evaluate_batch(EngineState(), batch([160, 90, 80], 0), RULES, now)
    assert not [e for e in events if e.alert.rule_id == "area-aqi"]  # exactly a third
    state, events = engine.evaluate_batch(state, batch([160, 170, 80], 1), RULES, now)
    [area] = [e for e in events if e.alert.rule_id == "area-aqi"]
    assert area.type is EventType.OPENED and area.alert.subject == "area:w1"
    assert area.alert.area_id == "w1" and area.alert.sensor_id is None
    assert "2 of 3 air sensors" in area.alert.message_en
    state, events = engine.evaluate_batch(state, batch([100, 90, 80], 2), RULES, now)
    assert [e.type for e in events if e.alert.rule_id == "area-aqi"] == [EventType.RESOLVED]


def test_operator_actions_are_merged_and_resolution_silences_until_clear() -> None:
    rule = BY_ID["pm25-hi"]
    state, [opened] = engine.evaluate_batch(EngineState(), [obs(0, pm25=80)], RuleSet((rule,)), T0)
    acked = opened.alert.__class__(**{**opened.alert.to_dict(), "state": AlertState.ACKNOWLEDGED,
                                      "acknowledged_by": "op"})  # fmt: skip
    state, [event] = engine.merge_operator_changes(state, [acked])
    assert event.type is EventType.ACKNOWLEDGED
    assert engine.merge_operator_changes(state, [acked])[1] == []  # idempotent
    closed = acked.resolved(T0 + timedelta(minutes=1), by="op")
    state, [event] = engine.merge_operator_changes(state, [closed])
    assert event.type is EventType.RESOLVED
    # Still above: no new alert; after a clear and a new trigger it re-opens (cool-down).
    rules = RuleSet((rule,))
    state, events = engine.evaluate_batch(state, [obs(2, pm25=90)], rules, T0)
    assert events == []
    state, events = engine.evaluate_batch(state, [obs(3, pm25=20)], rules, T0)
    state, events = engine.evaluate_batch(state, [obs(4, pm25=90)], rules, T0)
    assert [e.type for e in events] == [EventType.REOPENED]


def test_rebuild_from_stored_alerts_resumes_without_a_second_alert() -> None:
    rule = BY_ID["pm25-hi"]
    rules = RuleSet((rule,))
    state, [opened] = engine.evaluate_batch(EngineState(), [obs(0, pm25=80)], rules, T0)
    restarted = engine.rebuild([opened.alert], state.sensors)
    _, events = engine.evaluate_batch(restarted, [obs(1, pm25=85)], rules, T0)
    assert [e.type for e in events] == [EventType.UPDATED]
    _, events = engine.evaluate_batch(restarted, [obs(0, pm25=80)], rules, T0)  # a replay
    assert events == []
    _, events = engine.evaluate_batch(restarted, [obs(2, pm25=10)], rules, T0)
    assert [e.type for e in events] == [EventType.RESOLVED]
    assert events[0].alert.alert_id == opened.alert.alert_id


def test_window_mean_over_hours_and_the_observations_built_from_it() -> None:
    from urbanpulse.core.envelope import Reading
    from urbanpulse.storage.registry import RegisteredSensor
    from urbanpulse.stream.alerting import observations
    from urbanpulse.stream.windows import HourlyMeans

    hours = HourlyMeans(["pm25"])
    for minute, value in [(5, 40.0), (65, 60.0), (70, 80.0), (185, 10.0)]:
        hours.add("s1", T0 + timedelta(minutes=minute), {"pm25": value})
    latest = T0 + timedelta(minutes=185)
    assert hours.mean_over("s1", latest, 24, "pm25") == ((40.0 + 70.0 + 10.0) / 3, 3)
    assert hours.mean_over("s1", latest, 1, "pm25") == (10.0, 1)
    assert hours.mean_over("s1", latest, 24, "no2") is None
    reading = Reading("s1", "air", latest, {"pm25": 10.0}, latest, "t")
    derived = {("s1", latest): {"vn_aqi": 57, "vn_aqi_pollutant": "pm25"}}
    [seen] = observations(
        [reading], derived, {"s1": RegisteredSensor("air", "active", "w9")}, hours, RULES
    )
    assert seen.values == {"pm25": 10.0, "vn_aqi": 57.0}
    assert seen.windows == {("pm25", 24): ((40.0 + 70.0 + 10.0) / 3, 3)}
    assert seen.area_id == "w9"
