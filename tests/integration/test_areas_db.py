"""Areas in the real database: import, idempotence, sensor assignment, redrawing, bad files.

The database is shared by the whole test session, so each test uses its own id prefix and, for
areas of its own, a patch of empty ocean that no other test's sensors can fall into; it removes
what it made afterwards.  The shipped sets have fixed ids: importing them is idempotent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.e2e.conftest import settings  # noqa: F401  (the per-test, migrated settings fixture)
from urbanpulse.areas_command import add_areas_parser
from urbanpulse.core.areas import AreaFileError
from urbanpulse.core.settings import DbRole, Settings
from urbanpulse.data.areas import shipped_area_paths
from urbanpulse.storage import areas as area_store
from urbanpulse.storage.areas import (
    assign_sensor_areas,
    import_areas_file,
    list_areas,
    load_area_index,
    upsert_areas,
)
from urbanpulse.storage.db import connect
from urbanpulse.storage.registry import SensorRecord, upsert

pytestmark = pytest.mark.stack

BEN_THANH_MARKET = (106.6981, 10.7725)
HOAN_KIEM_LAKE = (105.8525, 21.0287)


@dataclass
class Scope:
    """Ids and a private patch of the South Atlantic for one test."""

    prefix: str
    lon: float
    lat: float
    directory: Path

    def box(self, x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
        """A polygon, in hundredths of a degree from the scope's corner."""
        points = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
        ring = [[self.lon + x / 100, self.lat + y / 100] for x, y in points]
        return {"type": "Polygon", "coordinates": [ring]}

    def point(self, x: float, y: float) -> tuple[float, float]:
        return self.lon + x / 100, self.lat + y / 100

    def feature(
        self, suffix: str, level: str, geometry: Any, parent: str | None = None
    ) -> dict[str, Any]:
        props: dict[str, Any] = {"area_id": self.prefix + suffix, "name": suffix, "level": level}
        if parent is not None:
            props["parent_id"] = self.prefix + parent
        return {"type": "Feature", "properties": props, "geometry": geometry}

    def file(self, name: str, *features: Any) -> Path:
        path = self.directory / name
        path.write_text(json.dumps({"type": "FeatureCollection", "features": list(features)}))
        return path

    def two_wards(self, border: float) -> Path:
        """Province 0-10 x 0-10 with ward "a" west and ward "b" east of ``border``."""
        return self.file(
            f"wards-{border}.geojson",
            self.feature("p", "province", self.box(0, 0, 10, 10)),
            self.feature("a", "ward", self.box(0, 0, border, 10), parent="p"),
            self.feature("b", "ward", self.box(border, 0, 10, 10), parent="p"),
        )


@pytest.fixture
async def conn(settings: Settings) -> AsyncIterator[asyncpg.Connection]:  # noqa: F811
    connection = await connect(settings, DbRole.OWNER)
    yield connection
    await connection.close()


@pytest.fixture
async def scope(conn: asyncpg.Connection, tmp_path: Path) -> AsyncIterator[Scope]:
    token = uuid.uuid4()
    # A corner somewhere in 30°S-40°S, 10°W-30°W: open ocean, far from any city's sensors.
    corner = Scope(
        f"t{token.hex[:10]}-",
        -30 + (token.int % 2000) / 100,
        -40 + (token.int // 2000 % 1000) / 100,
        tmp_path,
    )
    yield corner
    like = corner.prefix + "%"
    await conn.execute("DELETE FROM sensors WHERE sensor_id LIKE $1", like)
    await conn.execute("DELETE FROM areas WHERE area_id LIKE $1", like)


async def area_of(conn: asyncpg.Connection, sensor_id: str) -> str | None:
    value: str | None = await conn.fetchval(
        "SELECT area_id FROM sensors WHERE sensor_id = $1", sensor_id
    )
    return value


async def stored_ids(conn: asyncpg.Connection, prefix: str) -> set[str]:
    rows = await conn.fetch("SELECT area_id FROM areas WHERE area_id LIKE $1", prefix + "%")
    return {r["area_id"] for r in rows}


# --------------------------------------------------------------------------- shipped sets


async def test_import_the_shipped_sets_then_reimport_changes_nothing(
    conn: asyncpg.Connection,
) -> None:
    first = [await import_areas_file(conn, path, None) for path in shipped_area_paths()]
    assert [r.areas for r in first] == [36, 19]
    for report in first:
        assert report.inserted + report.updated + report.unchanged == report.areas
        assert report.levels["province"] == 1 and report.repairs == []

    again = [await import_areas_file(conn, path, None) for path in shipped_area_paths()]
    assert [(r.inserted, r.updated, r.unchanged) for r in again] == [(0, 0, 36), (0, 0, 19)]
    assert [r.sensors_reassigned for r in again] == [0, 0]

    wards = {a["area_id"]: a for a in await list_areas(conn, "ward")}
    ben_thanh = wards["vn-hcm-ward-ben-thanh"]
    assert ben_thanh["name"] == "Bến Thành"
    assert ben_thanh["parent_id"] == "vn-hcm"
    assert ben_thanh["geometry"]["type"] == "MultiPolygon"
    assert ben_thanh["properties"]["source"].startswith("schematic")
    assert "vn-hn-ward-van-mieu-quoc-tu-giam" in wards
    assert all(a["level"] == "ward" for a in wards.values())


async def test_registered_sensors_get_their_ward(conn: asyncpg.Connection, scope: Scope) -> None:
    for path in shipped_area_paths():
        await import_areas_file(conn, path, None)
    ids = [scope.prefix + name for name in ("saigon", "hanoi", "ocean", "nowhere")]
    await upsert(
        conn,
        [
            SensorRecord(ids[0], "air", lon=BEN_THANH_MARKET[0], lat=BEN_THANH_MARKET[1]),
            SensorRecord(ids[1], "water", lon=HOAN_KIEM_LAKE[0], lat=HOAN_KIEM_LAKE[1]),
            SensorRecord(ids[2], "air", lon=scope.lon, lat=scope.lat),
            SensorRecord(ids[3], "air"),
        ],
    )
    assert await assign_sensor_areas(conn, ids) == 2
    assert [await area_of(conn, i) for i in ids] == [
        "vn-hcm-ward-ben-thanh",
        "vn-hn-ward-hoan-kiem",
        None,
        None,
    ]
    assert await assign_sensor_areas(conn, ids) == 0  # idempotent too

    counts = {a["area_id"]: a["sensor_count"] for a in await list_areas(conn, None)}
    assert counts["vn-hcm-ward-ben-thanh"] >= 1
    assert counts["vn-hcm"] >= counts["vn-hcm-ward-ben-thanh"]  # a province counts its wards'


async def test_load_area_index_locates_like_the_database(conn: asyncpg.Connection) -> None:
    for path in shipped_area_paths():
        await import_areas_file(conn, path, None)
    index = await load_area_index(conn)
    assert index.locate(*zip(BEN_THANH_MARKET, HOAN_KIEM_LAKE, strict=True)) == [
        "vn-hcm-ward-ben-thanh",
        "vn-hn-ward-hoan-kiem",
    ]
    in_postgis = await conn.fetchval(
        "SELECT area_id FROM areas WHERE level = 'ward' "
        "AND ST_Covers(geom, ST_SetSRID(ST_MakePoint($1, $2), 4326))",
        *BEN_THANH_MARKET,
    )
    assert in_postgis == "vn-hcm-ward-ben-thanh"


# --------------------------------------------------------------------------- redrawing


async def test_redrawing_an_area_moves_a_sensor(conn: asyncpg.Connection, scope: Scope) -> None:
    sensor = scope.prefix + "s1"
    lon, lat = scope.point(4, 5)
    await upsert(conn, [SensorRecord(sensor, "air", lat=lat, lon=lon)])

    report = await import_areas_file(conn, scope.two_wards(border=5), None)
    assert (report.inserted, report.updated, report.sensors_reassigned) == (3, 0, 1)
    assert await area_of(conn, sensor) == scope.prefix + "a"

    redrawn = await import_areas_file(conn, scope.two_wards(border=3), None)
    assert (redrawn.inserted, redrawn.updated, redrawn.unchanged) == (0, 2, 1)
    assert redrawn.sensors_reassigned == 1
    assert await area_of(conn, sensor) == scope.prefix + "b"

    # The sensor itself moves out of every area: its area becomes NULL.
    await upsert(conn, [SensorRecord(sensor, "air", lat=scope.lat - 1, lon=scope.lon)])
    assert await assign_sensor_areas(conn, [sensor]) == 1
    assert await area_of(conn, sensor) is None


async def test_upsert_areas_is_idempotent_and_accepts_a_stored_parent(
    conn: asyncpg.Connection, scope: Scope
) -> None:
    from urbanpulse.core.areas import areas_from_geojson

    province = areas_from_geojson(
        {
            "type": "FeatureCollection",
            "features": [scope.feature("p", "province", scope.box(0, 0, 9, 9))],
        }
    )
    ward = areas_from_geojson(
        {
            "type": "FeatureCollection",
            "features": [scope.feature("w", "ward", scope.box(1, 1, 2, 2), parent="p")],
        }
    )
    assert await upsert_areas(conn, province) == 1
    assert await upsert_areas(conn, ward) == 1  # its parent is already stored
    assert await upsert_areas(conn, province + ward) == 0
    assert await upsert_areas(conn, []) == 0
    [stored] = [a for a in await list_areas(conn, "ward") if a["area_id"] == scope.prefix + "w"]
    assert stored["parent_id"] == scope.prefix + "p"


# --------------------------------------------------------------------------- bad files


async def test_a_bad_file_is_rejected_and_nothing_is_half_imported(
    conn: asyncpg.Connection, scope: Scope, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = scope.file(
        "bad.geojson",
        scope.feature("p", "province", scope.box(0, 0, 10, 10)),
        scope.feature("a", "ward", scope.box(0, 0, 5, 10), parent="p"),
        scope.feature("b", "ward", {"type": "Polygon", "coordinates": [[[500, 1], [2, 2]]]}),
    )
    with pytest.raises(AreaFileError, match=rf"feature 2 \({scope.prefix}b\): polygon, ring 0"):
        await import_areas_file(conn, bad, None)
    assert await stored_ids(conn, scope.prefix) == set()

    orphan = scope.file(
        "orphan.geojson",
        scope.feature("a", "ward", scope.box(0, 0, 5, 10)),
        scope.feature("b", "ward", scope.box(5, 0, 10, 10), parent="missing"),
    )
    with pytest.raises(AreaFileError, match=r"feature 1 .*parent_id .*missing.* is neither"):
        await import_areas_file(conn, orphan, None)
    assert await stored_ids(conn, scope.prefix) == set()

    # A failure after the areas were written (here: while reassigning sensors) rolls it all back.
    good = scope.two_wards(border=5)
    await import_areas_file(conn, good, None)

    async def broken(*_args: Any, **_kwargs: Any) -> int:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(area_store, "assign_sensor_areas", broken)
    redrawn = scope.two_wards(border=2)
    with pytest.raises(RuntimeError):
        await import_areas_file(conn, redrawn, None)
    row = await conn.fetchrow(
        "SELECT ST_XMax(geom) AS east FROM areas WHERE area_id = $1", scope.prefix + "a"
    )
    assert row is not None and row["east"] == pytest.approx(scope.point(5, 0)[0])


async def test_unreadable_and_non_json_files_are_clear_errors(
    conn: asyncpg.Connection, scope: Scope
) -> None:
    with pytest.raises(AreaFileError, match="cannot read the file"):
        await import_areas_file(conn, scope.directory / "absent.geojson", None)
    broken = scope.directory / "broken.geojson"
    broken.write_text('{"type": "FeatureCollection", ')
    with pytest.raises(AreaFileError, match="not valid JSON"):
        await import_areas_file(conn, broken, None)


# --------------------------------------------------------------------------- the command


def run_cli(settings: Settings, argv: list[str]) -> int:  # noqa: F811
    parser = argparse.ArgumentParser(prog="urbanpulse")
    add_areas_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.handler(settings, args)
    return code


async def test_cli_import_of_a_bad_file_exits_2_with_the_message(
    settings: Settings,  # noqa: F811
    conn: asyncpg.Connection,
    scope: Scope,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = scope.file(
        "bad.geojson",
        scope.feature("a", "ward", scope.box(0, 0, 5, 10)),
        scope.feature("b", "ward", {"type": "Point", "coordinates": [1, 2]}),
    )
    # The handler runs its own event loop, as from the command line: give it a thread.
    code = await asyncio.to_thread(run_cli, settings, ["areas", "import", str(bad)])
    out, err = capsys.readouterr()
    assert code == 2
    assert f"feature 1 ({scope.prefix}b): geometry must be a Polygon or MultiPolygon" in err
    assert str(bad) in err and "Traceback" not in err + out
    assert await stored_ids(conn, scope.prefix) == set()

    code = await asyncio.to_thread(run_cli, settings, ["areas", "import"])
    assert code == 2 and "give at least one FILE, or --shipped" in capsys.readouterr().err


async def test_cli_imports_and_lists(
    settings: Settings,  # noqa: F811
    scope: Scope,
    capsys: pytest.CaptureFixture[str],
) -> None:
    wards = scope.file(
        "wards.geojson",
        scope.feature("a", "Phường", scope.box(0, 0, 5, 10)),
        scope.feature("b", "Phường", scope.box(5, 0, 10, 10)),
    )
    argv = ["areas", "import", str(wards), "--level", "commune", "--shipped"]
    assert await asyncio.to_thread(run_cli, settings, argv) == 0
    out = capsys.readouterr().out
    assert "hcmc-central.geojson: 36 areas (1 province, 35 ward)" in out
    assert f"{wards}: 2 areas (2 commune): 2 new, 0 updated, 0 unchanged" in out

    assert await asyncio.to_thread(run_cli, settings, ["areas", "list", "--level", "commune"]) == 0
    listing = capsys.readouterr().out
    assert f"{scope.prefix}a" in listing and f"{scope.prefix}b" in listing
    assert "vn-hcm-ward" not in listing

    assert await asyncio.to_thread(run_cli, settings, ["areas", "list", "--geojson"]) == 0
    collection = json.loads(capsys.readouterr().out)
    ids = {f["properties"]["area_id"] for f in collection["features"]}
    assert {"vn-hcm", "vn-hn-ward-hoan-kiem", f"{scope.prefix}a"} <= ids


async def test_cli_reports_an_unreachable_database(
    settings: Settings,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.conftest import free_ports

    [port] = free_ports(1)
    nowhere = settings.model_copy(
        update={"database": settings.database.model_copy(update={"port": port})}
    )
    code = await asyncio.to_thread(run_cli, nowhere, ["areas", "list"])
    err = capsys.readouterr().err
    assert code == 1 and f"cannot use the database at 127.0.0.1:{port}" in err
