"""State under hostile senders: windows and alert tracks stay bounded; pending sensors are
never observed by the rules; alert events carry a stable id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from urbanpulse.alerts import engine
from urbanpulse.alerts.model import AlertEvent, EventType, Observation, event_id_for
from urbanpulse.alerts.rules import parse_rules
from urbanpulse.core.envelope import Reading
from urbanpulse.storage.registry import RegisteredSensor
from urbanpulse.stream.alerting import event_json, observations, outbox_rows
from urbanpulse.stream.windows import HourlyMeans, HourlySeed

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
RULES = parse_rules(
    """
version: 1
rules:
  - {id: pm25-hi, kind: air, metric: pm25, above: 50, clear_below: 40, severity: warning,
     citation: test}
  - {id: offline-air, kind: air, offline_after: 15m, severity: warning, citation: test}
"""
)


def test_the_hourly_window_keeps_at_most_its_cap_and_evicts_the_least_recently_used() -> None:
    hours = HourlyMeans(["pm25"], max_sensors=3)
    for sensor in ("a", "b", "c"):
        hours.add(sensor, T0, {"pm25": 10.0})
    hours.add("a", T0, {"pm25": 20.0})  # a is used again: b is now the oldest
    hours.add("d", T0, {"pm25": 30.0})
    assert len(hours) == 3 and hours.evicted == 1
    assert not hours.knows("b") and all(hours.knows(s) for s in "acd")
    assert hours.series("a", T0, 1) == {"pm25": [15.0]}  # (10 + 20) / 2, kept whole


def test_seeding_beyond_the_cap_evicts_too() -> None:
    hours = HourlyMeans(["pm25"], max_sensors=2)
    hours.seed(["a", "b", "c"], [HourlySeed("c", T0, "pm25", 50.0, 2)])
    assert len(hours) == 2 and hours.evicted == 1
    assert hours.series("c", T0, 1) == {"pm25": [25.0]}


def test_ten_thousand_invented_sensors_leave_a_capped_window() -> None:
    hours = HourlyMeans(["pm25"], max_sensors=1000)
    for i in range(10_000):
        hours.add(f"x{i}", T0, {"pm25": 1.0})
    assert len(hours) == 1000 and hours.evicted == 9000


def reading(sensor: str, pm25: float) -> Reading:
    return Reading(sensor, "air", T0, {"pm25": pm25}, T0, "t")


def test_pending_and_unregistered_sensors_are_not_observed_by_the_rules() -> None:
    known = {
        "active": RegisteredSensor("air", "active", "w1"),
        "pending": RegisteredSensor("air", "pending", "w1"),
    }
    readings = [reading("active", 80.0), reading("pending", 80.0), reading("new", 80.0)]
    seen = observations(readings, {}, known, HourlyMeans(["pm25"]), RULES)
    assert [(o.sensor_id, o.area_id) for o in seen] == [("active", "w1")]
    state, events = engine.evaluate_batch(engine.EngineState(), seen, RULES, T0)
    assert [(e.type, e.alert.subject) for e in events] == [(EventType.OPENED, "active")]
    # Only the observed sensor can ever go "offline".
    _, later = engine.tick(state, RULES, T0 + timedelta(hours=1))
    assert {e.alert.subject for e in later} == {"active"}


def seen_at(minutes: int) -> engine.SensorSeen:
    return engine.SensorSeen("air", "w1", T0 + timedelta(minutes=minutes))


def test_beyond_its_cap_the_engine_forgets_the_longest_silent_not_the_alerting() -> None:
    alerting = Observation("loud", "air", T0, T0, {"pm25": 90.0}, "w1")
    state, _ = engine.evaluate_batch(engine.EngineState(), [alerting], RULES, T0)
    state.sensors["loud"] = seen_at(0)  # the oldest of all, but its alert must still resolve
    for i in range(1, 6):
        state.sensors[f"s{i}"] = seen_at(i)
        state.tracks[("pm25-hi", f"s{i}")] = engine.Track(last_ts=T0)
    bounded, forgotten = engine.forget_silent(state, max_sensors=4)
    assert forgotten == 2
    assert sorted(bounded.sensors) == ["loud", "s3", "s4", "s5"]
    assert ("pm25-hi", "s1") not in bounded.tracks and ("pm25-hi", "loud") in bounded.tracks
    assert engine.forget_silent(bounded, max_sensors=4) == (bounded, 0)


def opened_event() -> AlertEvent:
    obs = Observation("s1", "air", T0, T0, {"pm25": 90.0}, "w1")
    _, [event] = engine.evaluate_batch(engine.EngineState(), [obs], RULES, T0)
    return event


def test_an_event_id_is_stable_and_differs_per_type_and_trigger() -> None:
    event = opened_event()
    again = opened_event()  # the same episode evaluated again (a replay)
    assert event_id_for(event) == event_id_for(again)
    resolved = AlertEvent(EventType.RESOLVED, event.alert.resolved(T0))
    reopened = AlertEvent(EventType.REOPENED, event.alert.reopened(T0, 1.0, "vi", "en"))
    ids = {event_id_for(e) for e in (event, resolved, reopened)}
    assert len(ids) == 3


def test_the_announcement_keeps_its_shape_and_carries_the_event_id() -> None:
    event = opened_event()
    body = orjson.loads(event_json(event, T0))
    assert set(body) == {"event", "event_id", "at", "alert"}
    assert body["event"] == "opened" and body["event_id"] == event_id_for(event)
    assert body["alert"]["alert_id"] == event.alert.alert_id
    updated = AlertEvent(EventType.UPDATED, event.alert)
    [row] = outbox_rows([event, updated], T0)  # "updated" only refreshes the stored row
    assert row.event_id == event_id_for(event) and row.key == event.alert.alert_id.encode()
