"""A recorded scenario, replayed beside the original, stores exactly the same rows."""

from __future__ import annotations

import asyncio
import io
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from tests.e2e.conftest import eventually, isolated, running_pipeline
from urbanpulse.core.catalogue import KINDS
from urbanpulse.core.settings import DbRole, Settings
from urbanpulse.kafka_access import provision
from urbanpulse.simulators.command import run_and_check
from urbanpulse.simulators.recorder import read_recording, replay
from urbanpulse.simulators.scenario import parse_scenario
from urbanpulse.storage.db import connect
from urbanpulse.storage.schema import migrate_as_owner

SCENARIO = """
description: short faulty run for record and replay
city: hcmc
start: now-2h
duration: 30m
speed: 240
seed: 21
gateway:
  batch: 2
  faults: {duplicate: 0.1, out_of_order: 0.1, late: 0.05, late_by: 5m, malformed: 0.05}
fleet:
  - {kind: air, area: vn-hcm-ward-ben-thanh, count: 4}
  - {kind: traffic_camera, road: nguyen-hue, count: 2}
  - {kind: waste_bin, area: vn-hcm-ward-sai-gon, count: 3}
events:
  - {type: malformed_burst, at: +5m, count: 20}
"""


async def rows(conn: asyncpg.Connection, prefix: str) -> set[tuple[Any, ...]]:
    """(sensor id without its prefix, ts, every measured value) of the run's rows."""
    found: set[tuple[Any, ...]] = set()
    for kind in KINDS.values():
        columns = ", ".join(m.column for m in kind.metrics)
        for r in await conn.fetch(
            f"SELECT sensor_id, ts, {columns} FROM {kind.table} WHERE sensor_id LIKE $1",
            f"{prefix}-%",
        ):
            found.add((r["sensor_id"].removeprefix(prefix), *tuple(r)[1:]))
    return found


async def test_a_replayed_recording_stores_exactly_the_original_rows(
    settings: Settings, stack_settings: Settings, tmp_path: Path
) -> None:
    scenario = parse_scenario(SCENARIO, "record-replay", default_name="record-replay")
    recording = tmp_path / "run.jsonl"
    original = settings
    async with running_pipeline(original):
        report = await run_and_check(
            original,
            scenario,
            asyncio.Event(),
            check=True,
            prefix=original.kafka.topic_prefix,
            record=recording,
            progress_stream=io.StringIO(),
        )
    distinct = len(report.summary.keys)
    assert f"stored {distinct} of {distinct}" in report.text, report.text
    header, messages = read_recording(recording)
    assert header["topic_root"] == original.mqtt.topic_root
    assert len(messages) == report.summary.messages + report.summary.status_messages

    copy = isolated(stack_settings, f"r{uuid.uuid4().hex[:10]}")
    await migrate_as_owner(copy)
    await provision(copy)
    conn = await connect(copy, DbRole.OWNER)
    try:
        async with running_pipeline(copy):
            sent = await replay(
                copy.mqtt,
                recording,
                asyncio.Event(),
                speed=20.0,
                rename=(original.kafka.topic_prefix, copy.kafka.topic_prefix),
            )
            assert sent == len(messages)
            want = await rows(conn, original.kafka.topic_prefix)
            assert len(want) == distinct
            got = await eventually(
                lambda: rows(conn, copy.kafka.topic_prefix),
                lambda got: len(got) >= len(want),
                timeout_s=60,
            )
        assert got == want
    finally:
        await conn.close()
