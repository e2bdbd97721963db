"""Sensors that never report: the rule shape, the engine's timer, and incident events on the
live feed (decoded from the processor's own ``event_json`` output)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from urbanpulse.alerts import engine
from urbanpulse.alerts.incidents import Grouping, IncidentEventType, Policy, group
from urbanpulse.alerts.model import AlertEvent, EventType, Observation
from urbanpulse.alerts.rules import RulesError, parse_rules
from urbanpulse.api.live import Hub, IncidentEventRecord, Subscription, decode_alert_event
from urbanpulse.stream.alerting import event_json, outbox_rows

T0 = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
RULES = """
version: 1
rules:
  - id: never-reported
    kind: any
    never_reported_after: 30m
    severity: warning
    citation: "test"
  - id: offline-air
    kind: air
    offline_after: 15m
    severity: warning
    citation: "test"
"""


def test_the_rule_watches_every_kind_and_takes_no_threshold() -> None:
    rules = parse_rules(RULES)
    rule = rules.never_reported_rule("waste_bin")
    assert rule is not None and rule.never_reported_after == timedelta(minutes=30)
    assert rules.for_kind("air") == []  # neither a threshold rule nor staleness
    bad = RULES.replace("never_reported_after: 30m", "never_reported_after: 30m\n    above: 3")
    with pytest.raises(RulesError, match="never-reported rule takes no metric"):
        parse_rules(bad)
    with pytest.raises(RulesError, match="unknown kind 'any'"):
        parse_rules(RULES.replace("offline_after: 15m", "offline_after: 15m\n    kind: any", 1))


def unheard(minutes_ago: float, kind: str = "waste_bin") -> engine.Unheard:
    return engine.Unheard(kind, "w1", T0 - timedelta(minutes=minutes_ago))


def test_flagged_after_the_grace_period_and_cleared_by_its_first_reading() -> None:
    rules = parse_rules(RULES)
    sensors = {"bin-late": unheard(31), "bin-new": unheard(29), "cam-late": unheard(45, "air")}
    state, events = engine.tick(engine.EngineState(), rules, T0, unheard=sensors)
    assert sorted((e.type, e.alert.sensor_id, e.alert.kind) for e in events) == [
        (EventType.OPENED, "bin-late", "waste_bin"),
        (EventType.OPENED, "cam-late", "air"),
    ]
    alert = next(e.alert for e in events if e.alert.sensor_id == "bin-late")
    assert alert.rule_id == "never-reported" and alert.area_id == "w1"
    assert alert.value == 31.0 and alert.threshold == 30.0
    assert "chưa từng gửi dữ liệu" in alert.message_vi and "never reported" in alert.message_en
    # Still silent on the next tick: the same alert, nothing new.
    state, again = engine.tick(state, rules, T0 + timedelta(seconds=5), unheard=sensors)
    assert again == []
    # Its first reading resolves it.
    reading = Observation("cam-late", "air", T0, T0 + timedelta(minutes=1), {"pm25": 12.0}, "w1")
    state, events = engine.evaluate_batch(state, [reading], rules, T0 + timedelta(minutes=1))
    assert [(e.type, e.alert.sensor_id) for e in events] == [(EventType.RESOLVED, "cam-late")]
    # Reported through another processor: gone from the unheard list, the alert clears too.
    later = T0 + timedelta(minutes=2)
    _, events = engine.tick(state, rules, later, unheard={"bin-new": unheard(32)})
    assert sorted((e.type, e.alert.sensor_id) for e in events) == [
        (EventType.OPENED, "bin-new"),
        (EventType.RESOLVED, "bin-late"),
    ]


def test_the_live_feed_passes_the_processors_incident_events() -> None:
    rules = parse_rules(RULES)
    sensors = {f"bin-{i}": unheard(40) for i in range(3)}
    _, events = engine.tick(engine.EngineState(), rules, T0, unheard=sensors)
    grouped = group(Grouping(), events, Policy(3, timedelta(minutes=5)), T0, {})
    rows = outbox_rows(events, T0, grouped)
    assert len(rows) == 4  # three alerts, one incident
    [incident_row] = [r for r in rows if b'"incident"' in r.payload]
    body = orjson.loads(incident_row.payload)
    assert body["event"] == "incident_opened" and body["event_id"] == incident_row.event_id
    assert body["incident"]["member_count"] == 3 and body["incident"]["kind"] == "waste_bin"
    members = [orjson.loads(r.payload) for r in rows if r is not incident_row]
    assert {m["alert"]["incident_id"] for m in members} == {body["incident"]["incident_id"]}

    record = decode_alert_event(incident_row.payload)
    assert isinstance(record, IncidentEventRecord)
    assert record.event is IncidentEventType.OPENED
    hub = Hub()
    hub.directory.load([], {"w1": "city"})
    city = hub.connect(Subscription(areas=frozenset({"city"})))
    water = hub.connect(Subscription(kinds=frozenset({"water"})))
    hub.offer_record("alerts", True, incident_row.payload)
    assert hub.counters.rejected == 0
    [delivered] = city.outbox.alerts
    assert delivered["event_id"] == incident_row.event_id
    assert delivered["incident"]["active_count"] == 3 and len(water.outbox) == 0
    # Its members are said by the incident: not sent one by one.
    for row in rows:
        if row is not incident_row:
            hub.offer_record("alerts", True, row.payload)
    assert len(city.outbox.alerts) == 1 and hub.counters.rejected == 0
    # An alert event still decodes as before.
    alert_event = decode_alert_event(event_json(AlertEvent(EventType.OPENED, events[0].alert), T0))
    assert not isinstance(alert_event, IncidentEventRecord)
