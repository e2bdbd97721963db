"""``urbanpulse sensors import`` and ``simulate --area`` as a user runs them: a child process
against the real database, judged by its exit code, its messages and what is stored."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import orjson
import pytest

from tests.e2e.conftest import settings_env
from urbanpulse.core.settings import Settings
from urbanpulse.simulators.recorder import Recorder, read_recording


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


async def urbanpulse(settings: Settings, *argv: str) -> Run:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "urbanpulse.cli",
        *argv,
        env={**os.environ, **settings_env(settings)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


def feature(sensor_id: str, kind: str, coordinates: list[float] | None) -> dict[str, object]:
    geometry = None if coordinates is None else {"type": "Point", "coordinates": coordinates}
    return {
        "type": "Feature",
        "geometry": geometry,
        "properties": {"sensor_id": sensor_id, "kind": kind},
    }


def write_fleet(path: Path, *features: dict[str, object]) -> Path:
    path.write_bytes(orjson.dumps({"type": "FeatureCollection", "features": list(features)}))
    return path


@dataclass(frozen=True)
class Place:
    """A private area (a 1° square of open Atlantic, lon -30..-29, lat 10..11, where no other
    test puts sensors) with a child area in its south-west quarter."""

    prefix: str
    area: str
    child: str


@pytest.fixture
async def place(db: asyncpg.Connection) -> AsyncIterator[Place]:
    prefix = f"cli{uuid.uuid4().hex[:8]}"
    here = Place(prefix, f"{prefix}-area", f"{prefix}-child")
    insert = (
        "INSERT INTO areas (area_id, name, level, parent_id, geom) "
        "VALUES ($1, $1, $2, $3, ST_Multi(ST_MakeEnvelope($4, $5, $6, $7, 4326)))"
    )
    await db.execute(insert, here.area, "province", None, -30.0, 10.0, -29.0, 11.0)
    await db.execute(insert, here.child, "ward", here.area, -30.0, 10.0, -29.5, 10.5)
    yield here
    await db.execute("DELETE FROM sensors WHERE sensor_id LIKE $1", f"{prefix}-%")
    await db.execute("DELETE FROM areas WHERE area_id LIKE $1", f"{prefix}-%")


async def stored(db: asyncpg.Connection, prefix: str) -> dict[str, str | None]:
    rows = await db.fetch(
        "SELECT sensor_id, area_id FROM sensors WHERE sensor_id LIKE $1", f"{prefix}-%"
    )
    return {r["sensor_id"]: r["area_id"] for r in rows}


async def test_a_file_with_bad_features_names_each_and_stores_nothing(
    settings: Settings, db: asyncpg.Connection, place: Place, tmp_path: Path
) -> None:
    p = place.prefix
    path = write_fleet(
        tmp_path / "fleet.geojson",
        feature(f"{p}-1", "air", [-29.8, 10.2]),
        feature(f"{p}-2", "air", [-29.2, 10.8]),
        feature(f"{p}-1", "water", [-29.3, 10.3]),  # the user's duplicate
        feature(f"{p}-3", "noise", None),
        feature(f"{p}-4", "air", [10.2, -129.8]),
    )
    run = await urbanpulse(settings, "sensors", "import", str(path))
    assert run.code == 2, run
    assert run.err.splitlines() == [
        f"urbanpulse sensors: {path}: 3 problem(s), so the file is refused:",
        f"  feature 2 ({p}-1): sensor_id repeats feature 0",
        f"  feature 3 ({p}-3): unknown kind 'noise'",
        f"  feature 4 ({p}-4): geometry must be a WGS 84 Point [lon, lat]; [10.2, -129.8] is "
        "out of range (latitude -129.8 is beyond ±90: are lon and lat swapped?)",
    ]
    assert await stored(db, p) == {}


async def test_import_places_sensors_and_warns_of_those_outside_every_area(
    settings: Settings, db: asyncpg.Connection, place: Place, tmp_path: Path
) -> None:
    p = place.prefix
    path = write_fleet(
        tmp_path / "fleet.geojson",
        feature(f"{p}-child", "air", [-29.8, 10.2]),
        feature(f"{p}-parent", "air", [-29.2, 10.8]),
        feature(f"{p}-null-island", "air", [0, 0]),
        feature(f"{p}-swapped", "air", [10.7, -29.3]),  # [lat, lon] of a point in the area
        feature(f"{p}-nowhere", "water", None),
    )
    run = await urbanpulse(settings, "sensors", "import", str(path))
    assert run.code == 0, run
    assert run.out == f"registered 5 sensors from {path}\n"
    assert run.err.splitlines() == [
        f"warning: {p}-null-island at [0.0, 0.0] is outside every stored area",
        f"warning: {p}-swapped at [10.7, -29.3] is outside every stored area; [-29.3, 10.7] "
        f"would be in {place.area}: are lon and lat swapped? (GeoJSON is [lon, lat])",
    ]
    assert await stored(db, p) == {
        f"{p}-child": place.child,
        f"{p}-parent": place.area,
        f"{p}-null-island": None,
        f"{p}-swapped": None,
        f"{p}-nowhere": None,
    }


async def senders_of(settings: Settings, recording: Path, *argv: str) -> set[str]:
    """The sensor ids that ``urbanpulse simulate ARGV`` publishes for, seen on the broker."""
    recorder = Recorder(settings.mqtt, recording)
    await asyncio.to_thread(recorder.start)
    try:
        run = await urbanpulse(settings, "simulate", *argv, "--count", "6", "--rate", "50")
        assert run.code == 0, run
        assert await asyncio.to_thread(recorder.wait_for, 6, 60)
    finally:
        recorder.stop()
    _header, messages = read_recording(recording)
    return {m.topic.split("/")[-2] for m in messages if m.topic.endswith("/data")}


async def test_simulate_area_drives_the_registered_sensors_of_that_area(
    settings: Settings, place: Place, tmp_path: Path
) -> None:
    p = place.prefix
    fleet = write_fleet(
        tmp_path / "fleet.geojson",
        feature(f"{p}-air-child", "air", [-29.8, 10.2]),
        feature(f"{p}-air-parent", "air", [-29.2, 10.8]),
        feature(f"{p}-water", "water", [-29.3, 10.3]),
        feature(f"{p}-air-away", "air", [0, 0]),
        feature(f"{p}-air-retired", "air", [-29.4, 10.4])
        | {"properties": {"sensor_id": f"{p}-air-retired", "kind": "air", "status": "retired"}},
    )
    assert (await urbanpulse(settings, "sensors", "import", str(fleet))).code == 0
    senders = await senders_of(settings, tmp_path / "seen.jsonl", "air", "--area", place.area)
    assert senders == {f"{p}-air-child", f"{p}-air-parent"}


async def test_simulate_fleet_drives_the_sensors_of_the_file(
    settings: Settings, tmp_path: Path
) -> None:
    p = f"cli{uuid.uuid4().hex[:8]}"
    fleet = write_fleet(
        tmp_path / "fleet.geojson",
        feature(f"{p}-a", "traffic_camera", [106.70, 10.77]),
        feature(f"{p}-b", "traffic_camera", [106.71, 10.78]),
        feature(f"{p}-c", "air", [106.72, 10.79]),
    )
    senders = await senders_of(
        settings, tmp_path / "seen.jsonl", "traffic_camera", "--fleet", str(fleet)
    )
    assert senders == {f"{p}-a", f"{p}-b"}


async def test_simulate_refuses_an_unknown_area_and_an_empty_one(
    settings: Settings, place: Place
) -> None:
    unknown = await urbanpulse(settings, "simulate", "air", "--area", f"{place.prefix}-x")
    assert unknown.code == 2, unknown
    assert unknown.err == (
        f"urbanpulse simulate: unknown area '{place.prefix}-x' (see `urbanpulse areas list`)\n"
    )
    empty = await urbanpulse(settings, "simulate", "water", "--area", place.child)
    assert empty.code == 1, empty
    assert (
        empty.err == f"urbanpulse simulate: no water sensors in {place.child} (it has no sensors)\n"
    )
