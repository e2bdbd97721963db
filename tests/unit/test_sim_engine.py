"""The scenario engine: a pure function of (scenario, seed, time); faults do what they say."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from urbanpulse.core.catalogue import KINDS
from urbanpulse.ingest.decode import DecodeRules, decode_message
from urbanpulse.simulators.engine import Outgoing, ScenarioEngine
from urbanpulse.simulators.fleet import areas_of_city
from urbanpulse.simulators.recorder import Recorded, read_recording, retarget
from urbanpulse.simulators.runner import future_warning
from urbanpulse.simulators.scenario import Scenario, parse_scenario

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
