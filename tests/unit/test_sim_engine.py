"""The scenario engine: a pure function of (scenario, seed, time); faults do what they say."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest

from urbanpulse.core.catalogue import KINDS
from urbanpulse.ingest.decode import DecodeRules, decode_message
from urbanpulse.simulators import engine as engine_module
from urbanpulse.simulators import noise
from urbanpulse.simulators.air import AirSensorModel
from urbanpulse.simulators.conditions import Conditions
from urbanpulse.simulators.engine import (
    DeviceModel,
    Outgoing,
    ScenarioEngine,
    _SensorPlan,
    _Window,
)
from urbanpulse.simulators.fleet import SimulatedSensor, areas_of_city, locate
from urbanpulse.simulators.incinerator import IncineratorModel
from urbanpulse.simulators.landfill import LandfillModel
from urbanpulse.simulators.recorder import Recorded, read_recording, retarget
from urbanpulse.simulators.runner import future_warning
from urbanpulse.simulators.scenario import Scenario, parse_scenario
from urbanpulse.simulators.traffic import TrafficCameraModel
from urbanpulse.simulators.waste import BinModel, TruckModel
from urbanpulse.simulators.water import WaterSensorModel
from urbanpulse.storage.registry import SensorRecord

START = datetime(2026, 11, 22, 23, 0, tzinfo=UTC)  # 06:00 in Vietnam
ROOT = "test/v1"

BASE = """
description: engine test
city: hcmc
start: "2026-11-23T06:00:00+07:00"
duration: 1h
seed: 9
fleet:
  - {kind: air, area: vn-hcm-ward-ben-thanh, count: 4}
  - {kind: water, area: vn-hcm-ward-nhieu-loc, count: 2}
  - {kind: waste_bin, area: vn-hcm, count: 3}
  - {kind: waste_truck, area: vn-hcm-ward-sai-gon, count: 1}
  - {kind: traffic_camera, road: dien-bien-phu, count: 2}
"""


def scenario(extra: str = "") -> Scenario:
    return parse_scenario(BASE + extra, "test.yaml", default_name="engine-test")


def engine(extra: str = "", seed: int | None = None) -> ScenarioEngine:
    return ScenarioEngine(scenario(extra), START, ROOT, prefix="e", seed=seed)


def decode(topic: str, payload: bytes) -> int:
    received = START + timedelta(hours=2)
    decoded = decode_message(ROOT, topic, payload, received, DecodeRules())
    assert decoded is not None
    return len(decoded.readings)


def test_the_fleet_stands_in_its_areas_and_becomes_registry_records() -> None:
    e = engine()
    wards = areas_of_city("hcmc")
    assert [s.area_id for s in e.sensors[:4]] == ["vn-hcm-ward-ben-thanh"] * 4
    assert all(s.area_id in wards for s in e.sensors)
    records = e.records()
    assert [r.sensor_id for r in records][:2] == ["e-air-0000", "e-air-0001"]
    assert Counter(r.kind for r in records) == {
        "air": 4,
        "water": 2,
        "waste_bin": 3,
        "waste_truck": 1,
        "traffic_camera": 2,
    }
    assert all(r.metadata["simulated"] for r in records)
    assert {r.metadata.get("road") for r in records if r.kind == "traffic_camera"} == {
        "dien-bien-phu"
    }


def test_a_window_is_computed_from_the_readings_that_can_be_published_in_it() -> None:
    # The runner asks for a few seconds at a time, hours into a run: the engine must look only
    # at the groups of readings that can be published in the window, i.e. taken at most 15 min
    # before it (no late fault here: 3 intervals of the 5-minute sensors), not from the epoch.
    t0, t1 = START + timedelta(minutes=30), START + timedelta(minutes=31)
    slack = 3  # groups either side: the scan is a safe over-estimate, filtered afterwards
    scanned: Counter[str] = Counter()

    class Watched(ScenarioEngine):
        def _ticks(self, plan: _SensorPlan, group: int) -> list[tuple[int, datetime]]:
            span = timedelta(seconds=plan.interval_s * self.batch)
            first_reading = (
                datetime.fromtimestamp(0, UTC) + group * span + timedelta(seconds=plan.phase_s)
            )
            if not t0 - timedelta(minutes=15) - slack * span <= first_reading <= t1 + slack * span:
                raise AssertionError(f"{plan.name} scanned group {group} ({first_reading})")
            scanned[plan.name] += 1
            return super()._ticks(plan, group)

    watched = Watched(scenario(), START, ROOT, prefix="e")
    found = watched.messages_between(t0, t1)
    assert found == engine().messages_between(t0, t1)
    per_kind = Counter(m.kind for m in found)
    # One reading a minute for air and cameras, two for the truck (30 s); the 5-minute
    # sensors report in this minute or not, depending on their phase.
    assert (per_kind["air"], per_kind["traffic_camera"], per_kind["waste_truck"]) == (4, 2, 2)
    assert set(scanned) == {p.name for p in watched._plans}


def test_the_engine_is_a_pure_function_of_scenario_seed_and_time() -> None:
    whole = engine().all_messages()
    assert whole == engine().all_messages()
    assert whole != engine(seed=10).all_messages()
    # Any split of the run into windows gives the same messages.
    e = engine()
    pieces = []
    t = e.start
    for step in (7, 61, 300, 13, 900, 2000, 1000):
        pieces += e.messages_between(t, t + timedelta(seconds=step))
        t += timedelta(seconds=step)
    pieces += e.messages_between(t, e.end + timedelta(seconds=1))
    assert sorted(pieces, key=repr) == sorted(whole, key=repr)


def test_every_message_is_what_the_platform_accepts() -> None:
    messages = engine().all_messages()
    per_kind = Counter(m.kind for m in messages)
    assert per_kind["air"] == 4 * 60 and per_kind["traffic_camera"] == 2 * 60
    assert per_kind["water"] == 2 * 12 and per_kind["waste_truck"] == 120
    for m in messages:
        assert m.topic == f"{ROOT}/{m.kind}/{m.sensor_id}/data"
        assert decode(m.topic, m.payload) == len(m.keys) == 1
        document = orjson.loads(m.payload)
        assert set(document["values"]) == set(KINDS[m.kind].by_name)
        assert e_start() <= datetime.fromisoformat(document["ts"]) < e_start() + timedelta(hours=1)


def e_start() -> datetime:
    return START


def test_batching_puts_several_readings_in_one_message() -> None:
    messages = engine("gateway: {batch: 3}\n").all_messages()
    air = [m for m in messages if m.kind == "air"]
    assert len(air) == 4 * 20
    assert all(isinstance(orjson.loads(m.payload), list) for m in air)
    assert sum(len(m.keys) for m in air) == 4 * 60
    assert all(decode(m.topic, m.payload) == len(m.keys) for m in air)


def test_faults_duplicate_reorder_delay_skew_and_garble() -> None:
    extra = """gateway:
  faults: {duplicate: 0.2, out_of_order: 0.2, late: 0.1, late_by: 10m, malformed: 0.1,
           clock_skew: {sensors: [air-0001], offset: 2m}, silent: [air-0003]}
"""
    messages = engine(extra).all_messages()
    faults = Counter(m.fault for m in messages)
    assert {"duplicate", "out_of_order", "late", "malformed", "clock_skew"} <= set(faults)
    # Duplicates repeat a message exactly.
    payloads = Counter((m.topic, m.payload) for m in messages if m.fault != "malformed")
    assert sum(n - 1 for n in payloads.values()) == faults["duplicate"]
    # Out-of-order and late messages are published well after their readings were taken, so
    # the platform receives newer readings first.
    for m in messages:
        if m.sensor_id == "e-air-0001":  # its clock is skewed
            continue
        if m.fault == "late" and m.at < START + timedelta(minutes=50):
            assert m.at - m.keys[-1][1] == timedelta(minutes=10)
        if m.fault == "out_of_order" and m.at < START + timedelta(minutes=50):
            assert m.at - m.keys[-1][1] >= timedelta(seconds=60)
    reordered = 0
    for sensor_id in {m.sensor_id for m in messages}:
        stamps = [k[1] for m in messages if m.sensor_id == sensor_id for k in m.keys]
        reordered += stamps != sorted(stamps)
    assert reordered >= 5
    # Malformed messages carry no storable reading.
    for m in messages:
        if m.fault == "malformed":
            assert m.keys == ()
            assert decode(m.topic, m.payload) == 0

    # A skewed clock (offset 2m, behind by default) stamps every reading of that sensor exactly
    # two minutes early, and no other sensor's; a silent sensor sends nothing.
    def stamps(run: list[Outgoing], sensor_id: str) -> dict[int, datetime]:
        by_seq = {}
        for m in run:
            if m.sensor_id == sensor_id and m.keys:
                document = orjson.loads(m.payload)
                by_seq[document["seq"]] = datetime.fromisoformat(document["ts"])
        return by_seq

    clean_run = engine().all_messages()
    skewed, clean = stamps(messages, "e-air-0001"), stamps(clean_run, "e-air-0001")
    assert len(skewed) >= 50
    assert {clean[seq] - ts for seq, ts in skewed.items()} == {timedelta(minutes=2)}
    other, other_clean = stamps(messages, "e-air-0002"), stamps(clean_run, "e-air-0002")
    assert other and all(other_clean[seq] == ts for seq, ts in other.items())
    assert any(m.fault == "clock_skew" for m in messages if m.sensor_id == "e-air-0001")
    assert not [m for m in messages if m.sensor_id == "e-air-0003"]


def test_events_shape_the_readings() -> None:
    extra = """events:
  - {type: pollution_episode, at: "06:20", duration: 30m, area: vn-hcm-ward-ben-thanh,
     factor: 5, ramp: 1m}
  - {type: sensor_outage, at: "06:10", duration: 10m, sensors: [water-0000, air-0002]}
  - {type: traffic_incident, at: "06:30", duration: 10m, road: dien-bien-phu, code: 3}
  - {type: malformed_burst, at: "06:40", count: 25}
  - {type: burst, at: "06:45", sensor: air-0000, count: 30, every: 1s}
  - {type: bin_fire, at: "06:00", duration: 1h, sensor: waste_bin-0001}
"""
    calm = engine().all_messages()
    stormy = engine(extra).all_messages()

    def pm25(messages: list, lo: int, hi: int) -> float:  # type: ignore[type-arg]
        values = [
            orjson.loads(m.payload)["values"]["pm25"]
            for m in messages
            if m.kind == "air"
            and m.sensor_id != "e-air-0002"
            and START + timedelta(minutes=lo) <= m.at < START + timedelta(minutes=hi)
            and m.fault is None
        ]
        return sum(values) / len(values)

    assert pm25(stormy, 25, 45) > 3 * pm25(calm, 25, 45)
    assert pm25(stormy, 0, 15) == pm25(calm, 0, 15)
    silent = [
        m
        for m in stormy
        if m.sensor_id in ("e-water-0000", "e-air-0002")
        and m.keys
        and START + timedelta(minutes=10) <= m.keys[0][1] < START + timedelta(minutes=20)
    ]
    assert silent == []
    incidents = {
        orjson.loads(m.payload)["values"]["incident"]
        for m in stormy
        if m.kind == "traffic_camera"
        and m.fault is None
        and START + timedelta(minutes=31) <= m.at < START + timedelta(minutes=39)
    }
    assert incidents == {3.0}
    faults = Counter(m.fault for m in stormy)
    assert faults["malformed"] == 25 and faults["burst"] == 30
    fire = [
        orjson.loads(m.payload)["values"]["temperature"]
        for m in stormy
        if m.sensor_id == "e-waste_bin-0001"
        and m.keys
        and START + timedelta(minutes=10) < m.at < START + timedelta(minutes=50)
    ]
    assert min(fire) > 200


def test_status_messages_are_retained_per_sensor() -> None:
    e = engine()
    online = e.status_messages("online", START)
    assert len(online) == len(e.sensors) and all(m.retain for m in online)
    assert decode_message(ROOT, online[0].topic, online[0].payload, START, DecodeRules()) is None


def test_the_runner_warns_when_a_run_would_pass_the_real_clock() -> None:
    e = engine()
    assert future_warning(e, 60.0, START + timedelta(hours=2), 300) is None
    assert future_warning(e, 60.0, START + timedelta(minutes=10), 300) is not None
    # Real time (speed 1) from now is fine: simulated time never gets ahead of the clock.
    assert future_warning(e, 1.0, START, 300) is None


def test_recordings_round_trip_and_retarget(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    lines = [
        orjson.dumps({"recording": 1, "topic_root": "a/v1", "started_at": "x"}),
        orjson.dumps(
            {
                "offset_ms": 5,
                "topic": "a/v1/air/p-air-0001/data",
                "qos": 1,
                "retain": False,
                "text": "{}",
            }
        ),
        orjson.dumps(
            {
                "offset_ms": 9,
                "topic": "a/v1/air/p-air-0002/data",
                "qos": 1,
                "retain": False,
                "b64": "/w==",
            }
        ),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    header, messages = read_recording(path)
    assert header["topic_root"] == "a/v1"
    assert messages[1] == Recorded(9.0, "a/v1/air/p-air-0002/data", b"\xff", 1, False)
    assert retarget(messages[0].topic, "a/v1", "b/v1", ("p-", "q-")) == "b/v1/air/q-air-0001/data"
    assert retarget(messages[0].topic, "a/v1", "b/v1") == "b/v1/air/p-air-0001/data"


# --------------------------------------------------------------------------- by hand
# A one-second grid has phase 0 (the phase is a whole number of seconds below the interval), so
# readings fall on every whole second of the run: times and sequence numbers follow by hand.
# START is 2026-11-22T23:00:00Z = 1795388400 s since the epoch (a multiple of 3 and of 60).

S = 1795388400
SECOND = timedelta(seconds=1)


def grid(
    duration: str = "10s",
    count: int = 1,
    gateway: str = "",
    events: str = "",
    kind: str = "air",
    area: str = "vn-hcm-ward-ben-thanh",
) -> ScenarioEngine:
    text = (
        "description: grid\ncity: hcmc\nstart: '2026-11-23T06:00:00+07:00'\n"
        f"duration: {duration}\nseed: 9\n"
        f"fleet:\n  - {{kind: {kind}, area: {area}, count: {count}, interval: 1s}}\n"
        + (f"gateway: {gateway}\n" if gateway else "")
        + (f"events:\n{events}" if events else "")
    )
    return ScenarioEngine(
        parse_scenario(text, "grid.yaml", default_name="grid"), START, ROOT, prefix="g"
    )


def at_s(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


def test_a_one_second_grid_reads_every_second_of_the_run() -> None:
    e = grid()
    messages = e.all_messages()
    assert [m.at for m in messages] == [at_s(i) for i in range(10)]
    for i, m in enumerate(messages):
        assert (m.topic, m.kind, m.sensor_id) == (
            f"{ROOT}/air/g-air-0000/data",
            "air",
            "g-air-0000",
        )
        assert (m.fault, m.retain) == (None, False)
        assert m.keys == (("g-air-0000", at_s(i)),)
        document = orjson.loads(m.payload)
        assert set(document) == {"ts", "values", "seq"}
        assert document["ts"] == (START + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert document["seq"] == S + i
    # A window [t0, t1) holds exactly the readings taken in it.
    assert [m.at for m in e.messages_between(at_s(3), at_s(5))] == [at_s(3), at_s(4)]
    assert e.messages_between(at_s(3), at_s(3)) == []
    assert e.messages_between(at_s(10), at_s(20)) == []  # nothing after the end


def test_the_engine_settles_its_start_end_seed_prefix_and_root() -> None:
    text = BASE.replace("seed: 9", "seed: 9\nsensor_prefix: px")
    plain = ScenarioEngine(parse_scenario(text, "t.yaml", default_name="t"), START, "cityX/")
    assert plain.topic_root == "cityX"  # only slashes are trimmed
    assert plain.prefix == "px" and plain.seed == 9
    assert plain.sensors[0].sensor_id == "px-air-0000"
    assert plain.topic("air", "px-air-0000") == "cityX/air/px-air-0000/data"
    assert plain.topic("air", "px-air-0000", "status") == "cityX/air/px-air-0000/status"
    # Another time zone and a fraction of a second: the run starts on the whole UTC second.
    local = datetime(2026, 11, 23, 6, 0, 0, 750_000, tzinfo=timezone(timedelta(hours=7)))
    e = ScenarioEngine(scenario(), local, ROOT, prefix="e", seed=0)
    assert e.start == START and e.start.tzinfo == UTC
    assert e.end == START + timedelta(hours=1)
    assert e.seed == 0  # an explicit seed, even 0, wins over the scenario's
    assert ScenarioEngine(scenario(), START, ROOT).prefix == "hcm"  # the city's default


def test_batches_group_readings_on_the_grid_and_publish_with_the_last() -> None:
    messages = grid(gateway="{batch: 3}").all_messages()
    # Groups of three seconds from S (a multiple of 3); the last group has only S+9.
    assert [m.at for m in messages] == [at_s(2), at_s(5), at_s(8), at_s(9)]
    assert [[k[1] for k in m.keys] for m in messages] == [
        [at_s(0), at_s(1), at_s(2)],
        [at_s(3), at_s(4), at_s(5)],
        [at_s(6), at_s(7), at_s(8)],
        [at_s(9)],
    ]
    last = orjson.loads(messages[-1].payload)
    assert isinstance(last, list) and [item["seq"] for item in last] == [S + 9]
    assert [item["seq"] for item in orjson.loads(messages[0].payload)] == [S, S + 1, S + 2]


def test_late_messages_come_late_by_exactly_late_by_and_at_the_end_at_the_latest() -> None:
    e = grid("20s", gateway="{faults: {late: 1.0, late_by: 5s}}")
    messages = e.all_messages()
    assert {m.fault for m in messages} == {"late"}
    by_reading = {m.keys[0][1]: m.at for m in messages}
    assert by_reading == {at_s(i): at_s(min(i + 5, 20)) for i in range(20)}
    # A window long after a reading still finds it (the engine looks back by late_by).
    [found] = e.messages_between(at_s(12), at_s(13))
    assert found.keys == (("g-air-0000", at_s(7)),)
    assert len(e.messages_between(at_s(20), at_s(21))) == 5  # readings of 15..19 s


def test_out_of_order_messages_wait_two_and_a_half_spans() -> None:
    e = grid("20s", gateway="{batch: 2, faults: {out_of_order: 1.0}}")
    messages = e.all_messages()
    assert {m.fault for m in messages} == {"out_of_order"}
    # Span = 1 s x 2 readings; the group of (0, 1) s would go at 1 s, goes at 1 + 5 = 6 s.
    by_first = {m.keys[0][1]: m.at for m in messages}
    assert by_first == {at_s(i): at_s(min(i + 1 + 5, 20)) for i in range(0, 20, 2)}
    [found] = e.messages_between(at_s(6), at_s(7))
    assert found.keys == (("g-air-0000", at_s(0)), ("g-air-0000", at_s(1)))
    assert [item["seq"] for item in orjson.loads(found.payload)] == [S, S + 1]  # a batch of 2


def test_a_duplicate_follows_its_original_a_second_later_within_the_run() -> None:
    messages = grid("5s", gateway="{faults: {duplicate: 1.0}}").all_messages()
    originals = [m for m in messages if m.fault is None]
    copies = [m for m in messages if m.fault == "duplicate"]
    assert [m.at for m in originals] == [at_s(i) for i in range(5)]
    assert [m.at for m in copies] == [at_s(1), at_s(2), at_s(3), at_s(4), at_s(5)]
    assert [m.payload for m in copies] == [m.payload for m in originals]
    assert [m.keys for m in copies] == [m.keys for m in originals]
    # A late original at the end: its copy is clipped to the end as well.
    late = grid("5s", gateway="{faults: {duplicate: 1.0, late: 1.0, late_by: 10s}}")
    assert {m.at for m in late.all_messages()} == {at_s(5)}
    # Sorted by time, then sensor, then fault ("" before "duplicate").
    assert [(m.at, m.fault) for m in messages[:3]] == [
        (at_s(0), None),
        (at_s(1), None),
        (at_s(1), "duplicate"),
    ]
    assert grid("5s", gateway="{faults: {duplicate: 1.0}}").messages_between(at_s(1), at_s(2)) == [
        originals[1],
        copies[0],
    ]


def test_a_malformed_message_carries_no_reading_and_strikes_alone() -> None:
    # faults.decide: a garbled message gets no other fault (no copy, no delay).
    faults = "{faults: {malformed: 1.0, duplicate: 1.0, late: 1.0}}"
    messages = grid("3s", gateway=faults).all_messages()
    assert [(m.at, m.fault, m.keys) for m in messages] == [
        (at_s(0), "malformed", ()),
        (at_s(1), "malformed", ()),
        (at_s(2), "malformed", ()),
    ]
    for m in messages:
        assert decode(m.topic, m.payload) == 0


@pytest.mark.parametrize(("ahead", "shift"), [("false", -2), ("true", 2)])
def test_a_skewed_clock_shifts_the_stamps_not_the_publishing(ahead: str, shift: int) -> None:
    skew = f"{{faults: {{clock_skew: {{sensors: [air-0000], offset: 2s, ahead: {ahead}}}}}}}"
    messages = grid("4s", count=2, gateway=skew).all_messages()
    skewed = [m for m in messages if m.sensor_id == "g-air-0000"]
    assert [m.at for m in skewed] == [at_s(i) for i in range(4)]
    assert {m.fault for m in skewed} == {"clock_skew"}
    assert [m.keys[0][1] for m in skewed] == [at_s(i + shift) for i in range(4)]
    stamps = [orjson.loads(m.payload)["ts"] for m in skewed]
    assert stamps == [at_s(i + shift).strftime("%Y-%m-%dT%H:%M:%SZ") for i in range(4)]
    assert [orjson.loads(m.payload)["seq"] for m in skewed] == [S + i for i in range(4)]
    other = [m for m in messages if m.sensor_id == "g-air-0001"]
    assert {m.fault for m in other} == {None}
    assert [m.keys[0][1] for m in other] == [at_s(i) for i in range(4)]
    # A skewed message that is also late says "late": one label per message.
    late = grid("4s", gateway=skew[:-2] + ", late: 1.0, late_by: 1s}}").all_messages()
    assert {m.fault for m in late} == {"late"}


def test_a_silent_sensor_and_an_outage_send_nothing() -> None:
    silent = grid("3s", count=2, gateway="{faults: {silent: [air-0001]}}").all_messages()
    assert {m.sensor_id for m in silent} == {"g-air-0000"} and len(silent) == 3
    outage = "  - {type: sensor_outage, at: '+2s', duration: 3s, sensors: [air-0000]}\n"
    out = grid("8s", count=2, events=outage).all_messages()
    first = [m.keys[0][1] for m in out if m.sensor_id == "g-air-0000"]
    assert first == [at_s(0), at_s(1), at_s(5), at_s(6), at_s(7)]  # [2 s, 5 s) is down
    assert len([m for m in out if m.sensor_id == "g-air-0001"]) == 8


def test_a_burst_sends_count_readings_every_step_within_the_run() -> None:
    events = (
        "  - {type: burst, at: '+3s', sensor: air-0000, count: 3, every: 1s}\n"
        "  - {type: burst, at: '+6s', sensor: air-0000, count: 3, every: 0.5s}\n"
        "  - {type: burst, at: '+9s', sensor: air-0000, count: 3, every: 2s}\n"
    )
    e = grid(events=events)
    bursts = [m for m in e.all_messages() if m.fault == "burst"]
    half = timedelta(milliseconds=500)
    expected = [at_s(3), at_s(4), at_s(5), at_s(6), at_s(6) + half, at_s(7), at_s(9)]
    assert [m.at for m in bursts] == expected  # the one at 11 s is after the end
    for m, ts in zip(bursts, expected, strict=True):
        assert m.keys == (("g-air-0000", ts),)
        assert (m.topic, m.kind, m.sensor_id) == (
            f"{ROOT}/air/g-air-0000/data",
            "air",
            "g-air-0000",
        )
        document = orjson.loads(m.payload)
        assert set(document) == {"ts", "values"}
        assert datetime.fromisoformat(document["ts"]) == ts
        assert decode(m.topic, m.payload) == 1
    # Each burst reading sorts after the regular reading of the same second.
    same_second = [m.fault for m in e.all_messages() if m.at == at_s(3)]
    assert same_second == [None, "burst"]
    # A window sees only its own part of a burst.
    assert [m.at for m in e.messages_between(at_s(4), at_s(6)) if m.fault] == [at_s(4), at_s(5)]


def test_a_burst_without_a_step_is_a_millisecond_apart() -> None:
    events = "  - {type: burst, at: '+1s', sensor: air-0000, count: 3, every: 0s}\n"
    bursts = [m for m in grid(events=events).all_messages() if m.fault == "burst"]
    ms = timedelta(milliseconds=1)
    assert [m.at for m in bursts] == [at_s(1), at_s(1) + ms, at_s(1) + 2 * ms]


def test_a_malformed_burst_garbles_messages_of_its_kind_5_ms_apart() -> None:
    events = "  - {type: malformed_burst, at: '+9s', count: 300, kind: air}\n"
    e = grid(count=2, events=events)
    garbage = [m for m in e.all_messages() if m.fault == "malformed"]
    ms5 = timedelta(milliseconds=5)
    assert [m.at for m in garbage] == [at_s(9) + i * ms5 for i in range(200)]  # until the end
    assert {m.sensor_id for m in garbage} == {"g-air-0000", "g-air-0001"}
    for m in garbage:
        assert m.keys == () and m.kind == "air"
        assert m.topic == f"{ROOT}/air/{m.sensor_id}/data"
        assert decode(m.topic, m.payload) == 0
    window = [m for m in e.messages_between(at_s(9) + 10 * ms5, at_s(9) + 12 * ms5) if m.fault]
    assert [m.at for m in window] == [at_s(9) + 10 * ms5, at_s(9) + 11 * ms5]
    other_kind = "  - {type: malformed_burst, at: '+1s', count: 5, kind: water}\n"
    assert not [m for m in grid(events=other_kind).all_messages() if m.fault]
    # Without a kind, any sensor of the fleet.
    any_kind = "  - {type: malformed_burst, at: '+1s', count: 5}\n"
    assert len([m for m in grid(events=any_kind).all_messages() if m.fault]) == 5


def test_status_messages_name_state_and_time_on_the_status_channel() -> None:
    e = grid(count=2)
    at = START + timedelta(minutes=1)
    assert e.status_messages("offline", at) == [
        Outgoing(
            at,
            f"{ROOT}/air/{sid}/status",
            b'{"state":"offline","ts":"2026-11-22T23:01:00Z"}',
            "air",
            sid,
            retain=True,
        )
        for sid in ("g-air-0000", "g-air-0001")
    ]


# --------------------------------------------------------------------------- events and plans

T = START + timedelta(hours=1)
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)


def test_an_event_window_ramps_up_and_down_linearly() -> None:
    w = _Window(T, T + HOUR)
    ramp = 10 * MINUTE
    assert w.strength(T - SECOND, ramp) == 0.0
    assert w.strength(T, ramp) == 0.0
    assert w.strength(T + 5 * MINUTE, ramp) == 0.5
    assert w.strength(T + 10 * MINUTE, ramp) == 1.0
    assert w.strength(T + 30 * MINUTE, ramp) == 1.0
    assert w.strength(T + 55 * MINUTE, ramp) == 0.5
    assert w.strength(T + HOUR - SECOND, ramp) == 1 / 600
    assert w.strength(T + HOUR, ramp) == 0.0  # the end is outside
    assert w.strength(T + 5 * MINUTE) == 0.5  # the default ramp is 10 minutes
    # No ramp: full strength one second in (the ramp is at least a second).
    assert w.strength(T + SECOND / 2, timedelta(0)) == 0.5
    assert w.strength(T + SECOND, timedelta(0)) == 1.0


def plan_with(**lists: object) -> _SensorPlan:
    plan = grid()._plans[0]
    return dataclasses.replace(plan, **lists)  # type: ignore[arg-type]


def test_conditions_combine_the_events_at_an_instant() -> None:
    w = _Window(T, T + HOUR)  # at T + 5 min: 0.5 with a 10-minute ramp, 0.25 with 20
    around = _Window(T - HOUR, T + 2 * HOUR)  # at T + 5 min: fully on
    at = T + 5 * MINUTE
    assert plan_with().conditions(at) == Conditions()
    episodes = plan_with(episodes=[(w, 5.0, 20 * MINUTE), (around, 3.0, 10 * MINUTE)])
    assert episodes.conditions(at).pollution == (1 + 4 * 0.25) * (1 + 2 * 1.0)  # its own ramp
    assert plan_with(rains=[(w, 0.8), (around, 0.5)]).conditions(at).rain == 0.5
    assert plan_with(rains=[(w, 0.8), (around, 0.3)]).conditions(at).rain == 0.4
    assert plan_with(plumes=[(w, 0.6), (around, 0.1)]).conditions(at).plume == 0.25 * 0.6
    fires = plan_with(fires=[w])
    assert fires.conditions(T + 150 * SECOND).fire == 0.5  # a 5-minute ramp
    assert fires.conditions(at).fire == 1.0
    incidents = plan_with(incidents=[(w, 3), (around, 7)])
    assert incidents.conditions(at).incident == 3  # the first window that holds the instant
    assert incidents.conditions(T - 30 * MINUTE).incident == 7
    assert incidents.conditions(T + 3 * HOUR).incident == 0
    upsets = plan_with(upsets=[(w, 0.8, 20 * MINUTE), (around, 0.1, MINUTE)])
    assert upsets.conditions(at).upset == 0.25 * 0.8
    surge = (T, T + HOUR, 100.0)
    assert plan_with(surges=[surge]).conditions(at).fill_surges == (surge,)


def test_a_plan_is_down_while_silent_or_in_an_outage() -> None:
    out = plan_with(outages=[_Window(T, T + HOUR)])
    assert [out.down(ts) for ts in (T - SECOND, T, T + HOUR - SECOND, T + HOUR)] == [
        False,
        True,
        True,
        False,
    ]
    assert plan_with(silent=True).down(T - HOUR)
    assert not plan_with().down(T)


FACILITIES = """
description: facilities
city: hcmc
start: "2026-11-23T06:00:00+07:00"
duration: 1h
fleet:
  - {kind: landfill, area: vn-hcm-ward-sai-gon, count: 2}
  - {kind: incinerator, area: vn-hcm-ward-ben-thanh, count: 1}
  - {kind: air, area: vn-hcm-ward-ben-thanh, count: 1}
"""


def test_events_reach_exactly_the_sensors_they_name() -> None:
    extra = """gateway:
  faults: {silent: [air-0003], clock_skew: {sensors: [air-0001], offset: 2m, ahead: true}}
events:
  - {type: pollution_episode, at: "06:10", duration: 20m, area: vn-hcm, factor: 5, ramp: 1m}
  - {type: rain, at: "06:00", duration: 10m}
  - {type: water_plume, at: "06:05", duration: 10m, area: vn-hcm, strength: 0.5}
  - {type: bin_overflow_wave, at: "06:05", duration: 10m, area: vn-hcm, rate: 100}
  - {type: bin_fire, at: "06:30", sensor: waste_bin-0001}
  - {type: traffic_incident, at: "06:30", duration: 10m, road: dien-bien-phu, code: 3}
  - {type: sensor_outage, at: "+5m", duration: 5m, sensors: [water-0000]}
  - {type: sensor_outage, at: "+20m", duration: 5m, area: vn-hcm, kind: water}
  - {type: sensor_outage, at: "+40m", duration: 1m, area: vn-hcm-ward-ben-thanh}
"""
    e = engine(extra)
    plans = {p.name: p for p in e._plans}
    at = START + 10 * MINUTE
    kinds = {name: p.sensor.kind for name, p in plans.items()}
    for name, plan in plans.items():
        kind = kinds[name]
        assert plan.episodes == (
            [(_Window(at, at + 20 * MINUTE), 5.0, MINUTE)] if kind == "air" else []
        )
        assert plan.rains == [(_Window(START, START + 10 * MINUTE), 0.8)]
        plume = _Window(START + 5 * MINUTE, START + 15 * MINUTE)
        assert plan.plumes == ([(plume, 0.5)] if kind == "water" else [])
        wave = (START + 5 * MINUTE, START + 15 * MINUTE, 100.0)
        assert plan.surges == ([wave] if kind == "waste_bin" else [])
        fire = _Window(START + 30 * MINUTE, START + 60 * MINUTE)  # 30 minutes by default
        assert plan.fires == ([fire] if name == "waste_bin-0001" else [])
        incident = (_Window(START + 30 * MINUTE, START + 40 * MINUTE), 3)
        assert plan.incidents == ([incident] if kind == "traffic_camera" else [])
        outages = []
        if plan.sensor.area_id == "vn-hcm-ward-ben-thanh":  # every kind there
            outages.append(_Window(START + 40 * MINUTE, START + 41 * MINUTE))
        if kind == "water":
            outages.insert(0, _Window(START + 20 * MINUTE, START + 25 * MINUTE))
        if name == "water-0000":
            outages.insert(0, _Window(START + 5 * MINUTE, START + 10 * MINUTE))
        assert plan.outages == outages, name
        assert plan.upsets == []
        assert plan.silent == (name == "air-0003")
        assert plan.skew == (2 * MINUTE if name == "air-0001" else timedelta(0))
    behind = engine("gateway: {faults: {clock_skew: {sensors: [air-0002], offset: 90s}}}\n")
    assert {p.name: p.skew for p in behind._plans if p.skew} == {"air-0002": -90 * SECOND}


def test_a_facility_upset_strikes_one_named_sensor_or_the_facilities_of_an_area() -> None:
    events = """events:
  - {type: facility_upset, at: "+10m", duration: 20m, sensor: landfill-0001, strength: 0.5}
  - {type: facility_upset, at: "+30m", duration: 5m, area: vn-hcm, ramp: 2m}
  - {type: facility_upset, at: "+40m", duration: 5m, area: vn-hcm-ward-ben-thanh}
"""
    s = parse_scenario(FACILITIES + events, "f.yaml", default_name="facilities")
    plans = {p.name: p for p in ScenarioEngine(s, START, ROOT, prefix="f")._plans}
    named = (_Window(START + 10 * MINUTE, START + 30 * MINUTE), 0.5, 10 * MINUTE)
    city = (_Window(START + 30 * MINUTE, START + 35 * MINUTE), 1.0, 2 * MINUTE)
    ward = (_Window(START + 40 * MINUTE, START + 45 * MINUTE), 1.0, 10 * MINUTE)
    assert plans["landfill-0000"].upsets == [city]
    assert plans["landfill-0001"].upsets == [named, city]
    assert plans["incinerator-0000"].upsets == [city, ward]
    assert plans["air-0000"].upsets == []  # not a facility, though in the area


def test_sensors_are_numbered_per_kind_across_fleet_entries_with_their_own_interval() -> None:
    text = """
description: intervals
city: hcmc
start: "2026-11-23T06:00:00+07:00"
duration: 2m
fleet:
  - {kind: air, area: vn-hcm-ward-ben-thanh, count: 1}
  - {kind: water, area: vn-hcm-ward-nhieu-loc, count: 1, interval: 1s}
  - {kind: air, area: vn-hcm-ward-sai-gon, count: 2, interval: 2s}
  - {kind: air, area: vn-hcm-ward-sai-gon, count: 1, interval: 1.6s}
  - {kind: air, area: vn-hcm-ward-sai-gon, count: 1, interval: 0.4s}
  - {kind: traffic_camera, road: dien-bien-phu, count: 1}
"""
    e = ScenarioEngine(parse_scenario(text, "i.yaml", default_name="i"), START, ROOT, prefix="i")
    ids = [s.sensor_id for s in e.sensors]
    assert ids == [
        "i-air-0000",
        "i-water-0000",
        "i-air-0001",
        "i-air-0002",
        "i-air-0003",
        "i-air-0004",
        "i-traffic_camera-0000",
    ]
    assert [s.index for s in e.sensors] == [0, 0, 1, 2, 3, 4, 0]
    assert [s.road for s in e.sensors] == [None] * 6 + ["dien-bien-phu"]
    assert [s.area_id for s in e.sensors[2:6]] == ["vn-hcm-ward-sai-gon"] * 4
    per_sensor = Counter(m.sensor_id for m in e.all_messages())
    # 2 minutes: the default minute (air), 1 s, 2 s, 1.6 s rounded to 2 s, 0.4 s raised to 1 s.
    assert per_sensor == {
        "i-air-0000": 2,
        "i-water-0000": 120,
        "i-air-0001": 60,
        "i-air-0002": 60,
        "i-air-0003": 60,
        "i-air-0004": 120,
        "i-traffic_camera-0000": 2,
    }
    assert e.sensor_id("air-0003") == "i-air-0003"
    assert e.at("+90s") == START + 90 * SECOND
    assert e.at("06:30") == START + 30 * MINUTE


def test_sensors_in_an_area_and_of_a_kind() -> None:
    e = engine()
    everyone = [s.sensor_id for s in e.sensors]
    assert e.sensors_in(None) == everyone == e.sensors_in("vn-hcm")  # the province: all
    airs = ["e-air-0000", "e-air-0001", "e-air-0002", "e-air-0003"]
    assert e.sensors_in("vn-hcm-ward-ben-thanh", "air") == airs
    assert e.sensors_in(None, "water") == ["e-water-0000", "e-water-0001"]
    assert e.sensors_in("vn-hcm", "water") == ["e-water-0000", "e-water-0001"]
    assert e.sensors_in("vn-hcm-ward-ben-thanh", "water") == []


def test_registry_records_name_each_sensor() -> None:
    e = engine()
    records = {r.sensor_id: r for r in e.records()}
    first = e.sensors[0]
    assert records["e-air-0000"] == SensorRecord(
        "e-air-0000",
        "air",
        first.lat,
        first.lon,
        "Simulated air sensor 0",
        metadata={"simulated": True, "scenario": "engine-test"},
    )
    assert records["e-water-0001"].name == "Simulated water sensor 1"
    assert records["e-waste_bin-0002"].name == "Simulated waste bin sensor 2"
    assert records["e-waste_truck-0000"].name == "Simulated waste truck sensor 0"
    camera = records["e-traffic_camera-0001"]
    assert camera.name == "Simulated traffic camera sensor 1"
    assert camera.metadata == {
        "simulated": True,
        "scenario": "engine-test",
        "road": "dien-bien-phu",
    }


def test_each_kind_gets_its_device_model() -> None:
    e = engine()
    s = parse_scenario(FACILITIES, "f.yaml", default_name="facilities")
    plans = [*e._plans, *ScenarioEngine(s, START, ROOT)._plans]
    expected = {
        "air": AirSensorModel,
        "water": WaterSensorModel,
        "waste_bin": BinModel,
        "waste_truck": TruckModel,
        "traffic_camera": TrafficCameraModel,
        "landfill": LandfillModel,
        "incinerator": IncineratorModel,
    }
    for plan in plans:
        assert type(plan.model) is expected[plan.sensor.kind]
        assert plan.model.sensor == plan.sensor
        assert 0 <= plan.phase_s < plan.interval_s


def test_a_truck_serves_at_most_twelve_bins_and_empties_them_on_its_round() -> None:
    text = """
description: trucks
city: hcmc
start: "2026-11-23T06:00:00+07:00"
duration: 1h
fleet:
  - {kind: waste_bin, area: vn-hcm-ward-ben-thanh, count: 14}
  - {kind: waste_truck, area: vn-hcm-ward-ben-thanh, count: 1}
"""
    e = ScenarioEngine(parse_scenario(text, "t.yaml", default_name="t"), START, ROOT)
    models = {p.sensor.sensor_id: p.model for p in e._plans}
    truck = models["hcm-waste_truck-0000"]
    assert isinstance(truck, TruckModel)
    assert len(truck.stops) == 12
    served = {stop.bin_model.sensor.sensor_id for stop in truck.stops if stop.bin_model}
    assert len(served) == 12
    bins = {sid: m for sid, m in models.items() if isinstance(m, BinModel)}
    arrivals = truck.arrival_hours()
    for index, stop in enumerate(truck.stops):
        model = stop.bin_model
        assert model is not None and model is bins[model.sensor.sensor_id]
        assert (stop.lat, stop.lon) == (model.sensor.lat, model.sensor.lon)
        assert model.collections == tuple(sorted(arrivals[index]))  # emptied when it passes
    # The two bins no truck has room for are emptied once a day between 18:00 and 23:00.
    for sid in set(bins) - served:
        [hour] = bins[sid].collections
        assert 18.0 <= hour < 23.0
    for model in bins.values():
        assert 1.5 * 0.8 <= model.fill_rate_per_h <= 6.0 * 1.2
    # A truck without bins drives eight stops in its own ward; another truck, other stops.
    lone, other = (p.model for p in grid(kind="waste_truck", count=2)._plans)
    assert isinstance(lone, TruckModel) and isinstance(other, TruckModel)
    assert len(lone.stops) == 8 and all(stop.bin_model is None for stop in lone.stops)
    wards = locate([(stop.lat, stop.lon) for stop in lone.stops])
    assert wards == ["vn-hcm-ward-ben-thanh"] * 8
    assert {(s.lat, s.lon) for s in lone.stops}.isdisjoint((s.lat, s.lon) for s in other.stops)


def test_messages_of_one_instant_are_ordered_by_sensor_then_fault() -> None:
    events = "  - {type: burst, at: '+3s', sensor: air-0001, count: 1}\n"
    e = grid("5s", count=2, events=events)
    third_second = [(m.sensor_id, m.fault) for m in e.all_messages() if m.at == at_s(3)]
    assert third_second == [("g-air-0000", None), ("g-air-0001", None), ("g-air-0001", "burst")]
    events = "  - {type: burst, at: '+3s', sensor: air-0000, count: 1}\n"
    e = grid("5s", count=2, events=events)
    third_second = [(m.sensor_id, m.fault) for m in e.all_messages() if m.at == at_s(3)]
    assert third_second == [("g-air-0000", None), ("g-air-0000", "burst"), ("g-air-0001", None)]


def test_a_burst_a_second_or_more_apart_is_stamped_on_whole_seconds() -> None:
    events = (
        "  - {type: burst, at: '+2.5s', sensor: air-0000, count: 2, every: 1s}\n"
        "  - {type: burst, at: '+6.25s', sensor: air-0000, count: 2, every: 0.5s}\n"
    )
    bursts = [m.at for m in grid(events=events).all_messages() if m.fault == "burst"]
    quarter = timedelta(milliseconds=250)
    assert bursts == [at_s(2), at_s(3), at_s(6) + quarter, at_s(6) + 3 * quarter]


def test_a_malformed_burst_with_no_sensor_of_its_kind_leaves_the_next_burst_alone() -> None:
    events = (
        "  - {type: malformed_burst, at: '+1s', count: 5, kind: water}\n"
        "  - {type: malformed_burst, at: '+2s', count: 4, kind: air}\n"
    )
    garbage = [m.at for m in grid(events=events).all_messages() if m.fault == "malformed"]
    ms5 = timedelta(milliseconds=5)
    assert garbage == [at_s(2) + i * ms5 for i in range(4)]


def test_sensors_of_a_kind_do_not_all_report_on_the_same_second() -> None:
    text = """
description: phases
city: hcmc
start: "2026-11-23T06:00:00+07:00"
duration: 1m
fleet:
  - {kind: air, area: vn-hcm-ward-ben-thanh, count: 20}
"""
    e = ScenarioEngine(parse_scenario(text, "p.yaml", default_name="p"), START, ROOT)
    first = {m.sensor_id: m.at for m in e.all_messages()}
    assert len(first) == 20  # one reading each within its first minute
    assert all(START <= at < START + MINUTE for at in first.values())
    assert len(set(first.values())) > 10  # a per-sensor phase spreads them over the minute


def test_each_bin_goes_to_the_nearest_truck() -> None:
    text = """
description: two depots
city: hcmc
start: "2026-11-23T06:00:00+07:00"
duration: 1h
fleet:
  - {kind: waste_bin, area: vn-hcm-ward-ben-thanh, count: 3}
  - {kind: waste_bin, area: vn-hcm-ward-tan-dinh, count: 2}
  - {kind: waste_truck, area: vn-hcm-ward-tan-dinh, count: 1}
  - {kind: waste_truck, area: vn-hcm-ward-ben-thanh, count: 1}
"""
    e = ScenarioEngine(parse_scenario(text, "d.yaml", default_name="d"), START, ROOT)
    models = {p.sensor.sensor_id: p.model for p in e._plans}
    rounds = {}
    for sid in ("hcm-waste_truck-0000", "hcm-waste_truck-0001"):
        truck = models[sid]
        assert isinstance(truck, TruckModel)
        rounds[sid] = sorted(s.bin_model.sensor.sensor_id for s in truck.stops if s.bin_model)
    assert rounds == {
        "hcm-waste_truck-0000": ["hcm-waste_bin-0003", "hcm-waste_bin-0004"],  # Tan Dinh
        "hcm-waste_truck-0001": ["hcm-waste_bin-0000", "hcm-waste_bin-0001", "hcm-waste_bin-0002"],
    }


def test_no_model_for_a_kind_the_engine_builds_elsewhere() -> None:
    e = grid()
    bin_sensor = dataclasses.replace(e.sensors[0], kind="waste_bin")
    with pytest.raises(ValueError, match=r"^no model for kind 'waste_bin'$"):
        e._model(bin_sensor)


def test_malformed_bursts_vary_their_garbage_and_victims_by_burst_and_seed() -> None:
    events = (
        "  - {type: malformed_burst, at: '+1s', count: 60, kind: air}\n"
        "  - {type: malformed_burst, at: '+5s', count: 60, kind: air}\n"
    )
    stamp = re.compile(rb"\d{4}-\d\d-\d\dT[0-9:.+]*")

    def bursts(e: ScenarioEngine) -> list[list[tuple[str, bytes]]]:
        garbage = [m for m in e.all_messages() if m.fault == "malformed"]
        seen = [(m.sensor_id, stamp.sub(b"T", m.payload)) for m in garbage]  # without the time
        return [seen[:60], seen[60:]]

    text = grid(count=3, events=events).scenario
    first, second = bursts(ScenarioEngine(text, START, ROOT, prefix="g"))
    assert len({payload for _, payload in first}) > 1  # several kinds of garbage in a burst
    assert len({sensor for sensor, _ in first}) == 3
    assert [p for _, p in first] != [p for _, p in second]  # each burst its own garbage
    assert [s for s, _ in first] != [s for s, _ in second]  # and its own victims
    other_seed, _ = bursts(ScenarioEngine(text, START, ROOT, prefix="g", seed=10))
    assert [p for _, p in first] != [p for _, p in other_seed]
    assert [s for s, _ in first] != [s for s, _ in other_seed]


# --------------------------------------------------------------------------- issue 15 survivors


def test_an_incident_holds_from_its_first_instant_to_just_before_its_end() -> None:
    incident = plan_with(incidents=[(_Window(T, T + HOUR), 3)])
    assert [incident.conditions(ts).incident for ts in (T - SECOND, T, T + HOUR - SECOND)] == [
        0,
        3,
        3,
    ]
    assert incident.conditions(T + HOUR).incident == 0  # the end is outside


def test_windows_find_out_of_order_messages_of_a_slower_grid() -> None:
    text = (
        "description: slow grid\ncity: hcmc\nstart: '2026-11-23T06:00:00+07:00'\n"
        "duration: 60s\nseed: 9\n"
        "fleet:\n  - {kind: air, area: vn-hcm-ward-ben-thanh, count: 1, interval: 4s}\n"
        "gateway: {faults: {out_of_order: 1.0}}\n"
    )
    e = ScenarioEngine(parse_scenario(text, "s.yaml", default_name="s"), START, ROOT, prefix="s")
    whole = e.all_messages()
    # 60 s on a 4 s grid: 15 readings, each sent 2.5 spans (10 s) late, at the end at the latest.
    assert len(whole) == 15
    for m in whole:
        [(_, taken)] = m.keys
        assert m.at == min(taken + 10 * SECOND, e.end)
    # One-second windows look back far enough to find every one of them.
    pieces = [m for i in range(61) for m in e.messages_between(at_s(i), at_s(i + 1))]
    assert pieces == whole


def test_a_burst_stops_before_the_end_of_the_run() -> None:
    events = "  - {type: burst, at: '+8s', sensor: air-0000, count: 3, every: 1s}\n"
    bursts = [m.at for m in grid(events=events).all_messages() if m.fault == "burst"]
    assert bursts == [at_s(8), at_s(9)]  # not at 10 s, the end


def test_a_burst_reading_sees_the_events_and_is_stamped_in_utc() -> None:
    episode = (
        "  - {type: pollution_episode, at: '+0s', duration: 10s, area: vn-hcm,\n"
        "     factor: 5, ramp: 1s}\n"
    )
    burst = "  - {type: burst, at: '+3s', sensor: air-0000, count: 1}\n"
    polluted = grid(events=episode + burst).all_messages()
    [regular] = [m for m in polluted if m.at == at_s(3) and m.fault is None]
    [extra] = [m for m in polluted if m.fault == "burst"]
    # The same sensor at the same instant reads the same values, episode included.
    assert orjson.loads(extra.payload)["values"] == orjson.loads(regular.payload)["values"]
    [calm] = [m for m in grid(events=burst).all_messages() if m.fault == "burst"]
    polluted_pm25 = orjson.loads(extra.payload)["values"]["pm25"]
    assert polluted_pm25 > 4 * orjson.loads(calm.payload)["values"]["pm25"]  # factor 5
    assert orjson.loads(extra.payload)["ts"] == "2026-11-22T23:00:03Z"


def test_garbage_that_carries_a_time_carries_when_it_was_sent() -> None:
    # faults.malformed_payload writes the given time in isoformat into two of its variants.
    events = "  - {type: malformed_burst, at: '+9s', count: 200}\n"
    burst = [m for m in grid(events=events).all_messages() if m.fault == "malformed"]
    stamped = [m for m in burst if b"2026-" in m.payload]
    assert stamped
    for m in stamped:
        assert m.at.isoformat().encode() in m.payload
    gateway = grid("20s", gateway="{faults: {malformed: 1.0}}").all_messages()
    stamped = [m for m in gateway if b"2026-" in m.payload]
    assert stamped
    for m in stamped:
        # A garbled gateway message is sent when its (only) reading is taken.
        assert m.at.isoformat().encode() in m.payload


def test_gateway_faults_differ_by_sensor_by_message_and_by_seed() -> None:
    def duplicated(e: ScenarioEngine, sensor_id: str) -> list[datetime]:
        return [
            m.at for m in e.all_messages() if m.fault == "duplicate" and m.sensor_id == sensor_id
        ]

    e = grid("60s", count=2, gateway="{faults: {duplicate: 0.5}}")
    other_seed = ScenarioEngine(e.scenario, START, ROOT, prefix="g", seed=10)
    first = duplicated(e, "g-air-0000")
    assert 0 < len(first) < 60
    assert first != duplicated(e, "g-air-0001")
    assert first != duplicated(other_seed, "g-air-0000")

    stamp = re.compile(rb"\d{4}-\d\d-\d\dT[0-9:.+]*")

    def garbage(e: ScenarioEngine, sensor_id: str) -> list[bytes]:
        return [stamp.sub(b"T", m.payload) for m in e.all_messages() if m.sensor_id == sensor_id]

    g = grid("60s", count=2, gateway="{faults: {malformed: 1.0}}")
    g_other_seed = ScenarioEngine(g.scenario, START, ROOT, prefix="g", seed=10)
    one = garbage(g, "g-air-0000")
    assert len(one) == 60 and len(set(one)) > 1  # the garbage varies from message to message
    assert one != garbage(g, "g-air-0001")
    assert one != garbage(g_other_seed, "g-air-0000")


def model_of(sensor: SimulatedSensor, seed: int, camera_s: float) -> DeviceModel | None:
    """The device model a sensor of these kinds should get (bins and trucks: see below)."""
    if sensor.kind == "traffic_camera":
        return TrafficCameraModel(sensor, seed, camera_s)
    simple: dict[str, type[AirSensorModel | WaterSensorModel | LandfillModel | IncineratorModel]]
    simple = {
        "air": AirSensorModel,
        "water": WaterSensorModel,
        "landfill": LandfillModel,
        "incinerator": IncineratorModel,
    }
    return simple[sensor.kind](sensor, seed) if sensor.kind in simple else None


def test_each_model_draws_from_the_run_seed_and_a_camera_from_its_interval() -> None:
    cameras = "  - {kind: traffic_camera, road: dien-bien-phu, count: 1, interval: 30s}\n"
    facilities = parse_scenario(FACILITIES + cameras, "f.yaml", default_name="facilities")
    ts = START + 17 * MINUTE
    for seed in (9, 10):
        # The base fleet's cameras read every minute (the default), the facilities' one 30 s.
        runs = (
            (engine(seed=seed), 60.0),
            (ScenarioEngine(facilities, START, ROOT, seed=seed), 30.0),
        )
        for e, camera_s in runs:
            for plan in e._plans:
                expected = model_of(plan.sensor, seed, camera_s)
                if expected is not None:
                    assert plan.model.values_at(ts) == expected.values_at(ts), plan.sensor


def test_bins_fill_at_their_area_rate_give_or_take_a_fifth_and_wait_for_the_evening() -> None:
    text = """
description: bins
city: hcmc
start: "2026-11-23T06:00:00+07:00"
duration: 1h
fleet:
  - {kind: waste_bin, area: vn-hcm-ward-ben-thanh, count: 3}
  - {kind: waste_bin, area: vn-hcm, count: 60}
"""

    def bins(seed: int) -> list[BinModel]:
        s = parse_scenario(text, "b.yaml", default_name="b")
        models = [p.model for p in ScenarioEngine(s, START, ROOT, seed=seed)._plans]
        assert all(isinstance(m, BinModel) for m in models)
        return [m for m in models if isinstance(m, BinModel)]

    nine, ten = bins(9), bins(10)
    rates = [m.fill_rate_per_h for m in nine]
    # An area's rate is between 1.5 and 6 per hour, each bin's within +-20 % of it.
    assert all(1.5 * 0.8 <= rate <= 6.0 * 1.2 for rate in rates)
    assert len(set(rates[:3])) == 3  # bins of one ward: one area rate, their own factors
    assert max(rates) / min(rates) > 1.2 / 0.8  # areas differ by more than a bin's factor
    assert all(a.fill_rate_per_h != b.fill_rate_per_h for a, b in zip(nine, ten, strict=True))
    # With no truck, each bin is emptied once a day, spread between 18:00 and 23:00.
    hours = [hour for m in nine for hour in m.collections]
    assert len(hours) == 63 and all(18.0 <= hour < 23.0 for hour in hours)
    assert min(hours) < 19.0 and max(hours) > 22.0
    assert [m.collections for m in nine] != [m.collections for m in ten]


def test_a_bins_fill_rate_is_its_wards_rate_times_its_own_factor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The recipe: a ward's rate drawn from 1.5..6 %/h, times the bin's factor drawn from
    # 0.8..1.2.  With every draw of the engine's at 3/4 of its range, each bin fills at
    # (1.5 + 0.75 * 4.5) * (0.8 + 0.75 * 0.4) = 4.875 * 1.1 = 5.3625 % per hour.
    at_three_quarters = SimpleNamespace(
        between=lambda low, high, *key: low + 0.75 * (high - low), uniform=noise.uniform
    )
    monkeypatch.setattr(engine_module, "noise", at_three_quarters)
    bins = [p.model for p in engine()._plans if p.sensor.kind == "waste_bin"]
    assert len(bins) == 3
    for model in bins:
        assert isinstance(model, BinModel)
        assert model.fill_rate_per_h == pytest.approx(5.3625)


def test_bins_trucks_and_phases_draw_from_the_run_seed() -> None:
    day = [START + i * 5 * MINUTE for i in range(24 * 12)]
    for seed in (9, 10):
        for plan in engine(seed=seed)._plans:
            model = plan.model
            if isinstance(model, BinModel):
                rate, hours = model.fill_rate_per_h, model.collections
                same: DeviceModel = BinModel(plan.sensor, seed, rate, hours)
            elif isinstance(model, TruckModel):
                same = TruckModel(plan.sensor, seed, model.stops)
            else:
                continue
            assert [model.values_at(ts) for ts in day] == [same.values_at(ts) for ts in day]
    # Another seed, other reporting seconds.
    assert [p.phase_s for p in engine(seed=9)._plans] != [p.phase_s for p in engine(seed=10)._plans]


def test_two_fleet_entries_on_one_road_stand_apart() -> None:
    extra = "  - {kind: traffic_camera, road: dien-bien-phu, count: 2, interval: 30s}\n"
    cameras = [s for s in engine(extra).sensors if s.kind == "traffic_camera"]
    assert len(cameras) == 4
    assert len({(s.lat, s.lon) for s in cameras}) == 4
