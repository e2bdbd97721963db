"""A whole processor batch planned without servers (``urbanpulse.stream.batch``): records as the
bridge writes them (a message's readings in one ``readings/2`` record), what the database said
written by hand, and the plan's every decision checked against expectations worked out by hand."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from urbanpulse.alerts import engine
from urbanpulse.alerts.model import AlertState, EventType
from urbanpulse.alerts.rules import parse_rules
from urbanpulse.core.envelope import READING_SCHEMA, READINGS_SCHEMA, Reading, readings_records
from urbanpulse.indices.vn_aqi import POLLUTANTS
from urbanpulse.indices.vn_wqi import Combination
from urbanpulse.storage.registry import RegisteredSensor
from urbanpulse.stream import batch
from urbanpulse.stream.admission import PendingBudget
from urbanpulse.stream.alerting import observations
from urbanpulse.stream.partition_state import PartitionState, partition_for
from urbanpulse.stream.steps import ConsumedRecord
from urbanpulse.stream.validate import RecordLimits
from urbanpulse.stream.windows import HourlyMeans

NOW = datetime(2026, 11, 29, 8, 30, tzinfo=UTC)
LIMITS = RecordLimits(64 * 1024, timedelta(minutes=5), timedelta(days=30))
TOPIC = "t.readings"
PARTITIONS = 12  # the bridge keys by sensor id: air-1 -> 0, air-2 -> 1 (Kafka's murmur2)
RULES = parse_rules(
    """
version: 1
defaults: {cooldown: 30m}
rules:
  - {id: pm25-hi, kind: air, metric: pm25, above: 50, clear_below: 40, severity: warning,
     citation: test}
  - {id: area-pm25, kind: air, scope: area, metric: pm25, above: 50,
     area: {more_than: "1/2", min_sensors: 2, fresh_within: 1h}, severity: critical,
     citation: test}
"""
)
SETTINGS = batch.PlanSettings(RULES.per_sensor(), "pending", Combination.GEOMETRIC_SQRT)
KNOWN = {
    "air-1": RegisteredSensor("air", "active", "w1"),
    "air-2": RegisteredSensor("air", "active", "w1"),
    "stack-1": RegisteredSensor("incinerator", "active", "w2"),
    "water-1": RegisteredSensor("water", "active", "w3"),
}


def record(partition: int, offset: int, *readings: Reading) -> ConsumedRecord:
    """One MQTT message's readings (one sensor's) as the bridge writes them."""
    [value] = readings_records(readings, LIMITS.max_bytes)
    return ConsumedRecord(TOPIC, partition, offset, value, (("schema", READINGS_SCHEMA),))


def air(sensor: str, minute: int, pm25: float) -> Reading:
    ts = NOW - timedelta(minutes=minute)
    return Reading(sensor, "air", ts, {"pm25": pm25}, NOW, f"urbanpulse/v1/air/{sensor}/data")


def states(*partitions: int) -> dict[int, PartitionState]:
    return {p: PartitionState(p, HourlyMeans(POLLUTANTS), seeded=True) for p in partitions}


def loaded(**changes: object) -> batch.Loaded:
    base = batch.Loaded(KNOWN, frozenset(), PendingBudget(10, ""))
    return replace(base, **changes)  # type: ignore[arg-type]


def run(
    records: list[ConsumedRecord], load: batch.Loaded, owned: dict[int, PartitionState]
) -> batch.Plan:
    decoded = batch.decode(records, NOW, LIMITS, PARTITIONS, owned)
    return batch.plan(decoded, load, owned, SETTINGS, NOW)


def test_a_mixed_batch_is_stored_derived_dead_lettered_and_alerted_as_worked_out() -> None:
    stack = Reading(
        "stack-1", "incinerator", NOW, {"dust": 30.0, "o2": 16.0}, NOW, "urbanpulse/v1/x/data"
    )
    newcomer = air("air-9", 1, 12.0)  # unknown: registered as pending, stored, not observed
    replayed = air("air-2", 5, 99.0)  # stored before: neither stored nor observed again
    records = [
        record(0, 10, air("air-1", 2, 80.0)),
        record(0, 11, replayed),
        record(0, 12, newcomer),
        record(1, 40, stack),
        record(1, 41, air("water-1", 1, 10.0)),  # contradicts the registry's kind
        ConsumedRecord(TOPIC, 1, 42, b"not json"),
    ]
    plan = run(records, loaded(stored=frozenset({("air-2", replayed.ts)})), states(0, 1))

    assert sorted((r.sensor_id, r.ts) for r in plan.readings) == sorted(
        [("air-1", NOW - timedelta(minutes=2)), ("air-9", newcomer.ts), ("stack-1", NOW)]
    )
    assert plan.duplicates == 1
    assert [(s.sensor_id, s.status) for s in plan.to_register] == [("air-9", "pending")]
    # (21 - 11) / (21 - 16) = 2: 30 mg/Nm3 of dust at 16 % O2 is 60 at the reference 11 %.
    assert plan.derived[("stack-1", NOW)]["dust_ref"] == 60.0
    [undecodable] = plan.undecodable
    assert undecodable.source == f"kafka:{TOPIC}/1@42"
    [refused] = plan.refused
    assert "registered as kind 'water', but sent a 'air' reading" in refused.reason
    # 80 > 50 opens air-1's alert; the pending newcomer raises none (it is not active).
    assert [(e.type, e.alert.subject) for e in plan.raised] == [(EventType.OPENED, "air-1")]
    assert set(plan.alerts) == {0, 1}
    assert ("pm25-hi", "air-1") in plan.alerts[0].tracks


def test_each_partition_keeps_its_own_windows_and_alert_tracks() -> None:
    owned = states(0, 1)
    plan = run([record(0, 0, air("air-1", 3, 80.0)), record(1, 0, air("air-2", 3, 10.0))],
               loaded(), owned)  # fmt: skip
    assert owned[0].windows.knows("air-1") and not owned[0].windows.knows("air-2")
    assert owned[1].windows.knows("air-2") and not owned[1].windows.knows("air-1")
    assert set(plan.alerts[0].sensors) == {"air-1"} and set(plan.alerts[1].sensors) == {"air-2"}
    # The plan returns new alert states and leaves the kept ones alone until stored.
    assert owned[0].alerts.tracks == {} and owned[0].alerts.sensors == {}


def test_area_rules_are_left_to_the_area_owner() -> None:
    # Both sensors of w1 above 50: a share of 1 > 1/2, yet the batch raises only sensor alerts.
    plan = run([record(0, 0, air("air-1", 1, 90.0)), record(0, 1, air("air-2", 1, 95.0))],
               loaded(), states(0))  # fmt: skip
    assert sorted(e.alert.subject for e in plan.raised) == ["air-1", "air-2"]
    assert RULES.per_sensor().area_rules == [] and len(RULES.area_rules) == 1


def test_a_reading_repeated_within_the_batch_is_planned_once() -> None:
    twice = air("air-1", 4, 20.0)
    plan = run([record(0, 0, twice), record(0, 1, twice)], loaded(), states(0))
    assert [(r.sensor_id, r.ts) for r in plan.readings] == [("air-1", twice.ts)]
    assert plan.duplicates == 1


def test_an_operators_acknowledgement_reaches_a_partition_without_records() -> None:
    owned = states(0, 1)
    opened, [event] = engine.evaluate_batch(
        engine.EngineState(),
        observations([air("air-2", 9, 70.0)], {}, KNOWN, owned[1].windows, RULES),
        RULES.per_sensor(),
        NOW,
    )
    owned[1].alerts = opened
    acked = replace(event.alert, state=AlertState.ACKNOWLEDGED, acknowledged_by="op")
    plan = run([record(0, 0, air("air-1", 1, 10.0))], loaded(changed=[acked]), owned)
    assert [(e.type, e.alert.subject) for e in plan.by_operators] == [
        (EventType.ACKNOWLEDGED, "air-2")
    ]
    track = plan.alerts[1].tracks[("pm25-hi", "air-2")]
    assert track.alert is not None and track.alert.state is AlertState.ACKNOWLEDGED
    assert plan.raised == []


def test_reject_mode_dead_letters_unknown_sensors() -> None:
    reject = replace(SETTINGS, provisioning="reject")
    decoded = batch.decode([record(3, 7, air("ghost", 1, 5.0))], NOW, LIMITS, PARTITIONS, {3})
    plan = batch.plan(decoded, loaded(), states(3), reject, NOW)
    assert plan.readings == [] and plan.to_register == []
    [refused] = plan.refused
    assert "unknown sensor 'ghost'" in refused.reason


def test_a_reading_that_came_through_another_partition_is_kept_with_its_sensor() -> None:
    # Another producer wrote air-1 to partition 5; its home (where the bridge writes it, and
    # where staleness and rebalances look for it) is partition 0, owned here too.
    assert partition_for("air-1", PARTITIONS) == 0
    owned = states(0, 5)
    plan = run([record(5, 0, air("air-1", 1, 80.0))], loaded(), owned)
    assert owned[0].windows.knows("air-1") and not owned[5].windows.knows("air-1")
    assert "air-1" in plan.alerts[0].sensors and plan.alerts[5].sensors == {}
    # Not owned here: it stays with the partition it came through.
    alone = states(5)
    plan = run([record(5, 1, air("air-1", 1, 80.0))], loaded(), alone)
    assert "air-1" in plan.alerts[5].sensors


def test_the_pending_budget_goes_to_the_first_unknown_sensors_to_arrive() -> None:
    arrivals = [record(3, 0, air("new-a", 1, 5.0)), record(0, 0, air("new-b", 1, 5.0)),
                record(3, 1, air("new-c", 1, 5.0))]  # fmt: skip
    plan = run(arrivals, loaded(budget=PendingBudget(2, "the cap of 2 is reached")), states(0, 3))
    assert [s.sensor_id for s in plan.to_register] == ["new-a", "new-b"]
    [refused] = plan.refused
    assert "'new-c'" in refused.reason and "the cap of 2 is reached" in refused.reason


def test_a_bad_reading_of_a_record_is_dead_lettered_and_its_siblings_stored() -> None:
    good = [air("air-1", 3, 20.0), air("air-1", 1, 22.0)]
    beyond = air("air-1", 2, 2500.0)  # above the catalogue's 2,000 µg/m³
    plan = run([record(0, 5, good[0], beyond, good[1])], loaded(), states(0))
    assert [(r.sensor_id, r.ts) for r in plan.readings] == [(r.sensor_id, r.ts) for r in good]
    [dead] = plan.undecodable
    assert dead.reason.startswith("reading [1] of the record: values.pm25=2500.0 outside")
    assert dead.source == f"kafka:{TOPIC}/0@5"


def test_an_older_bridges_one_reading_records_are_planned_alike() -> None:
    older = ConsumedRecord(
        TOPIC, 1, 0, air("air-2", 2, 30.0).to_json(), (("schema", READING_SCHEMA),)
    )
    plan = run([older, record(0, 0, air("air-1", 2, 30.0))], loaded(), states(0, 1))
    assert sorted(r.sensor_id for r in plan.readings) == ["air-1", "air-2"]
    assert plan.dead_letters == []
