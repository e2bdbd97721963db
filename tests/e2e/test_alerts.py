"""Alerts on real servers: a pollution episode opens one alert per affected sensor, an operator
acknowledges it through the API, it resolves when the episode ends, and a sensor that goes
silent raises "offline" and clears when it returns.  How fast is for bench/, not asserted here;
waits poll on evidence in the database with a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from tests.e2e.conftest import (
    Pipeline,
    eventually,
    read_topic,
    running_pipeline,
    with_rules_file,
)
from urbanpulse.core.settings import DbRole, Settings
from urbanpulse.simulators.gateway import MqttGateway, data_topic, reading_payload
from urbanpulse.storage import registry
from urbanpulse.storage.db import connect
from urbanpulse.storage.keys import Role, create_api_key

EPISODE_RULES = """
version: 1
defaults: {cooldown: 2s}
rules:
  - id: pm25-episode
    kind: air
    metric: pm25
    above: 100
    clear_below: 60
    severity: warning
    citation: "test episode limit"
    title: {vi: "Đợt ô nhiễm", en: "Pollution episode"}
  - id: offline-air
    kind: air
    offline_after: {offline}
    severity: warning
    citation: "test staleness"
"""


def with_rules(settings: Settings, tmp_path: Path, offline: str = "1h") -> Settings:
    rules = EPISODE_RULES.replace("{offline}", offline)
    return with_rules_file(settings, tmp_path, rules, check_interval_s=0.3, default_cooldown_s=2.0)


async def register_air(db: asyncpg.Connection, sensor_ids: list[str]) -> None:
    await registry.upsert(
        db,
        [
            registry.SensorRecord(sid, "air", 10.77 + i * 0.001, 106.70, name=sid)
            for i, sid in enumerate(sensor_ids)
        ],
    )


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.mqtt = MqttGateway(settings.mqtt, client_id=f"{settings.kafka.topic_prefix}-gw")

    async def send(self, sensor_ids: list[str], pm25: float) -> datetime:
        ts = datetime.now(UTC)
        for sid in sensor_ids:
            topic = data_topic(self.settings.mqtt, "air", sid)
            self.mqtt.publish(topic, reading_payload(ts, {"pm25": pm25, "no2": 20.0}))
        return ts


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[Gateway]:
    gw = Gateway(settings)
    await asyncio.to_thread(gw.mqtt.connect)
    yield gw
    await asyncio.to_thread(gw.mqtt.close)


async def alerts_of(settings: Settings, sensor_ids: list[str]) -> list[dict[str, Any]]:
    conn = await connect(settings, DbRole.OWNER)
    try:
        rows = await conn.fetch(
            "SELECT * FROM alerts WHERE sensor_id = ANY($1::text[]) ORDER BY created_at",
            sensor_ids,
        )
    finally:
        await conn.close()
    return [dict(r) for r in rows]


async def send_until(
    gateway: Gateway,
    settings: Settings,
    sensor_ids: list[str],
    pm25: float,
    done: Any,
    timeout_s: float = 60,
) -> list[dict[str, Any]]:
    """Keep the sensors reporting (as real ones do) until ``done(alerts)`` holds."""
    deadline = time.monotonic() + timeout_s
    while True:
        await gateway.send(sensor_ids, pm25)
        rows = await alerts_of(settings, sensor_ids)
        if done(rows) or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.3)


async def send_stored(
    gateway: Gateway, db: asyncpg.Connection, sensor_ids: list[str], pm25: float
) -> None:
    """One reading per sensor, then wait until those very readings (by their time) are stored:
    rules are evaluated in the reading's own transaction, so once it is stored the engine has
    seen it.  Counting by time, not by total, leaves out readings still in flight from
    ``send_until``."""
    ts = await gateway.send(sensor_ids, pm25)

    async def stored_now() -> int:
        n: int = await db.fetchval(
            "SELECT count(*) FROM readings_air WHERE sensor_id = ANY($1::text[]) AND ts = $2",
            sensor_ids,
            ts,
        )
        return n

    assert await eventually(stored_now, lambda n: n == len(sensor_ids)) == len(sensor_ids)


def error_text(response: Any) -> str:
    """The error message, in FastAPI's shape or the API's uniform error body."""
    body = response.json()
    return str(body.get("detail") or body.get("error", {}).get("message", ""))


def events_for(values: list[bytes], sensor_ids: list[str]) -> list[dict[str, Any]]:
    events = [orjson.loads(v) for v in values]
    return [e for e in events if e["alert"]["sensor_id"] in sensor_ids]


async def test_episode_opens_one_alert_per_sensor_is_acknowledged_and_resolves(
    settings: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    settings = with_rules(settings, tmp_path)
    prefix = settings.kafka.topic_prefix
    affected = [f"{prefix}-air-{i}" for i in range(3)]
    clean = [f"{prefix}-air-clean"]
    await register_air(db, affected + clean)
    async with running_pipeline(settings) as pipeline:
        gw = Gateway(settings)
        await asyncio.to_thread(gw.mqtt.connect)
        try:
            # A clean first reading from each, stored before the episode's readings are counted.
            await send_stored(gw, db, affected + clean, 20.0)
            # The episode: three sensors far above the limit, one clean; all keep reporting.
            started = datetime.now(UTC)
            for _ in range(3):
                await send_stored(gw, db, affected, 180.0)
                await send_stored(gw, db, clean, 25.0)
            rows = await send_until(
                gw, settings, affected, 185.0, lambda r: len(r) >= len(affected), timeout_s=60
            )
            assert sorted(r["sensor_id"] for r in rows) == sorted(affected)
            for row in rows:
                assert row["state"] == "open" and row["rule_id"] == "pm25-episode"
                # Opened by an episode reading (event time), with that reading's value.
                assert row["opened_at"] >= started and row["value"] in (180.0, 185.0)
                assert row["location"] is not None and row["threshold"] == 100.0
                assert "Pollution episode: PM2.5" in row["message_en"]
                assert "Đợt ô nhiễm: Bụi PM2.5" in row["message_vi"]
            # Still polluted for a while: still exactly one alert per sensor, still open.
            for _ in range(3):
                await send_stored(gw, db, affected, 190.0)
            still = await alerts_of(settings, affected)
            assert [(r["alert_id"], r["state"]) for r in still] == [
                (r["alert_id"], "open") for r in rows
            ]
            await _acknowledge_through_the_api(pipeline, rows[0]["alert_id"], settings, db)
            # The episode ends: every alert resolves by itself.
            rows = await send_until(
                gw,
                settings,
                affected,
                15.0,
                lambda r: all(x["state"] == "resolved" for x in r),
                timeout_s=30,
            )
            assert len(rows) == len(affected)
            assert {r["state"] for r in rows} == {"resolved"}
            assert {r["resolved_by"] for r in rows} == {"system"}
            acked = [r for r in rows if r["acknowledged_by"]]
            assert len(acked) == 1 and acked[0]["acknowledged_note"] == "crew sent"
        finally:
            await asyncio.to_thread(gw.mqtt.close)
    assert await alerts_of(settings, clean) == []
    values = await read_topic(settings, settings.kafka.topic("alerts"), 2 * len(affected) + 1)
    events = events_for(values, affected)
    kinds = sorted(e["event"] for e in events)
    assert kinds == sorted(["opened"] * 3 + ["resolved"] * 3 + ["acknowledged"])
    assert len({e["alert"]["alert_id"] for e in events}) == len(affected)


async def _acknowledge_through_the_api(
    pipeline: Pipeline, alert_id: str, settings: Settings, db: asyncpg.Connection
) -> None:
    viewer = await create_api_key(db, f"{settings.kafka.topic_prefix}-viewer", Role.VIEWER)
    async with pipeline.http() as http, pipeline.http(viewer) as as_viewer:
        listed = await http.get("/v1/alerts", params={"state": "open", "rule": "pm25-episode"})
        assert listed.status_code == 200
        assert alert_id in [a["alert_id"] for a in listed.json()["alerts"]]
        one = (await as_viewer.get(f"/v1/alerts/{alert_id}")).json()
        assert one["message"]["vi"] and one["location"]["type"] == "Point"
        denied = await as_viewer.post(f"/v1/alerts/{alert_id}/acknowledge", json={})
        assert denied.status_code == 403
        ack = await http.post(f"/v1/alerts/{alert_id}/acknowledge", json={"note": "crew sent"})
        assert ack.status_code == 200, ack.text
        assert ack.json()["state"] == "acknowledged"
        again = await http.post(f"/v1/alerts/{alert_id}/acknowledge", json={"note": "x"})
        assert again.status_code == 409 and "only an open alert" in error_text(again)
        assert (await http.get("/v1/alerts/nope")).status_code == 404
        assert (await http.post("/v1/alerts/nope/resolve", json={})).status_code == 404
        assert (await http.get("/v1/alerts", params={"state": "bogus"})).status_code == 422
        naive = await http.get("/v1/alerts", params={"from": "2026-01-01T00:00"})
        assert naive.status_code == 422 and "UTC offset" in error_text(naive)
        page = (await http.get("/v1/alerts", params={"rule": "pm25-episode", "limit": 1})).json()
        assert page["total"] >= 3 and len(page["alerts"]) == 1
    audit = await db.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'alert.acknowledge' AND target = $1",
        alert_id,
    )
    assert audit == 1


async def test_operator_resolution_and_validation_errors(
    settings: Settings, db: asyncpg.Connection, tmp_path: Path, pipeline: Pipeline
) -> None:
    """The default pipeline runs the shipped rules: a bin fire opens; an operator resolves it."""
    sid = f"{settings.kafka.topic_prefix}-bin"
    await registry.upsert(db, [registry.SensorRecord(sid, "waste_bin", 21.03, 105.85)])
    gw = Gateway(settings)
    await asyncio.to_thread(gw.mqtt.connect)
    try:
        topic = data_topic(settings.mqtt, "waste_bin", sid)
        gw.mqtt.publish(topic, reading_payload(datetime.now(UTC), {"temperature": 75.0}))
        rows = await eventually(lambda: alerts_of(settings, [sid]), lambda r: len(r) == 1, 30)
        assert rows[0]["rule_id"] == "bin-fire" and rows[0]["severity"] == "critical"
        async with pipeline.http() as http:
            done = await http.post(
                f"/v1/alerts/{rows[0]['alert_id']}/resolve", json={"note": "fire brigade"}
            )
            assert done.status_code == 200 and done.json()["state"] == "resolved"
            again = await http.post(f"/v1/alerts/{rows[0]['alert_id']}/resolve", json={})
            assert again.status_code == 409
        # Still hot: the operator's resolution holds (no new alert until it cools down).
        gw.mqtt.publish(topic, reading_payload(datetime.now(UTC), {"temperature": 76.0}))
        # Rules are evaluated in the reading's own transaction: once it is stored, it has been.
        stored = await eventually(
            lambda: db.fetchval("SELECT count(*) FROM readings_waste_bin WHERE sensor_id=$1", sid),
            lambda n: n == 2,
        )
        assert stored == 2
        rows = await alerts_of(settings, [sid])
        assert [(r["state"], r["resolved_note"]) for r in rows] == [("resolved", "fire brigade")]
    finally:
        await asyncio.to_thread(gw.mqtt.close)


async def test_a_silent_sensor_goes_offline_and_clears_when_it_returns(
    settings: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    settings = with_rules(settings, tmp_path, offline="3s")
    sid = f"{settings.kafka.topic_prefix}-air-quiet"
    await register_air(db, [sid])
    async with running_pipeline(settings) as pipeline:
        gw = Gateway(settings)
        await asyncio.to_thread(gw.mqtt.connect)
        try:
            await send_until(gw, settings, [sid], 20.0, lambda _: True)
            await eventually(
                lambda: db.fetchval("SELECT count(*) FROM sensor_latest WHERE sensor_id=$1", sid),
                lambda n: n == 1,
            )
            rows = await eventually(
                lambda: alerts_of(settings, [sid]), lambda r: len(r) == 1, timeout_s=60
            )
            assert rows[0]["rule_id"] == "offline-air" and rows[0]["state"] == "open"
            # Evidence, not the test's stopwatch: the alert opened (processing time) more than
            # offline_after (3 s) after the platform last received a reading of the sensor.
            last_received = await db.fetchval(
                "SELECT max(received_at) FROM readings_air WHERE sensor_id = $1", sid
            )
            assert (rows[0]["opened_at"] - last_received).total_seconds() > 3
            assert "mất kết nối" in rows[0]["message_vi"]
            # One alert for as long as it stays silent, however many timer ticks pass.
            ticks = pipeline.processor.counters.timer_ticks

            async def timer_ticks() -> int:
                return pipeline.processor.counters.timer_ticks

            assert await eventually(timer_ticks, lambda n: n >= ticks + 2) >= ticks + 2
            assert len(await alerts_of(settings, [sid])) == 1
            # It reports again: the alert clears.
            rows = await send_until(
                gw, settings, [sid], 20.0, lambda r: r and r[0]["state"] == "resolved", 30
            )
            assert rows[0]["state"] == "resolved" and len(rows) == 1
        finally:
            await asyncio.to_thread(gw.mqtt.close)
