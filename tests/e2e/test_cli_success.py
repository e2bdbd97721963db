"""The success paths of ``urbanpulse sensors import`` and ``urbanpulse keys``, run as an operator
runs them: the real command in its own process, configured by ``URBANPULSE_*`` variables to use
the test stack, with the effect checked in the database and through the running API."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from tests.e2e.api_support import World, build_world, running_api
from tests.e2e.conftest import settings_env
from tests.e2e.promises_support import assert_error, open_alert
from urbanpulse.core.settings import Settings


async def urbanpulse(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """``urbanpulse ARGS`` in a child process against the test stack."""
    env = {**os.environ, **settings_env(settings)}
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "urbanpulse.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def fleet(world: World, bin_lon: float) -> dict[str, Any]:
    """Three sensors: air in ward 1, water in ward 2, a pending bin at ``bin_lon``."""

    def feature(props: dict[str, Any], lon: float, lat: float) -> dict[str, Any]:
        geometry = {"type": "Point", "coordinates": [lon, lat]}
        return {"type": "Feature", "geometry": geometry, "properties": props}

    p = world.prefix
    return {
        "type": "FeatureCollection",
        "features": [
            feature(
                {"sensor_id": f"{p}-cli-air", "kind": "air", "name": "Trạm Bến Thành"},
                world.lon + 0.05,
                world.lat + 0.1,
            ),
            feature(
                {"sensor_id": f"{p}-cli-water", "kind": "water", "vendor": "Hach", "depth_m": 1.5},
                world.lon + 0.15,
                world.lat + 0.1,
            ),
            feature(
                {"sensor_id": f"{p}-cli-bin", "kind": "waste_bin", "status": "pending"},
                bin_lon,
                world.lat + 0.1,
            ),
        ],
    }


async def registered(db: asyncpg.Connection, world: World) -> dict[str, tuple[Any, ...]]:
    rows = await db.fetch(
        "SELECT sensor_id, kind, name, status, area_id, metadata FROM sensors "
        "WHERE sensor_id LIKE $1",
        f"{world.prefix}-cli-%",
    )
    return {
        r["sensor_id"]: (
            r["kind"],
            r["name"],
            r["status"],
            r["area_id"],
            orjson.loads(r["metadata"]),
        )
        for r in rows
    }


async def test_sensors_import_registers_each_sensor_in_its_area(
    settings: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    world = await build_world(db, settings)
    path = tmp_path / "fleet.geojson"
    path.write_bytes(orjson.dumps(fleet(world, bin_lon=world.lon + 0.02)))

    done = await urbanpulse(settings, "sensors", "import", str(path))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"registered 3 sensors from {path}\n"
    p = world.prefix
    expected = {
        f"{p}-cli-air": ("air", "Trạm Bến Thành", "active", world.ward(1), {}),
        f"{p}-cli-water": (
            "water",
            None,
            "active",
            world.ward(2),
            {"vendor": "Hach", "depth_m": 1.5},
        ),
        f"{p}-cli-bin": ("waste_bin", None, "pending", world.ward(1), {}),
    }
    assert await registered(db, world) == expected

    # The file is the registry's source: importing it again after the bin moved to ward 2
    # updates the bin, and its area, and doubles nothing.
    path.write_bytes(orjson.dumps(fleet(world, bin_lon=world.lon + 0.18)))
    again = await urbanpulse(settings, "sensors", "import", str(path))
    assert again.returncode == 0, again.stderr
    expected[f"{p}-cli-bin"] = ("waste_bin", None, "pending", world.ward(2), {})
    assert await registered(db, world) == expected

    async with running_api(settings) as api, api.http("viewer") as http:
        listed = await http.get("/v1/sensors", params={"area": world.ward(2), "kind": "water"})
        ids = {f["id"] for f in listed.json()["features"]}
        assert ids == {world.sensors["w1"], f"{p}-cli-water"}


async def test_keys_create_list_and_revoke(settings: Settings, db: asyncpg.Connection) -> None:
    world = await build_world(db, settings)
    name = f"{world.prefix}-night-shift"
    alert_id = await open_alert(db, f"{world.prefix}-cli", world.sensors["a1"])
    async with running_api(settings) as api:
        created = await urbanpulse(settings, "keys", "create", name, "--role", "operator")
        assert created.returncode == 0, created.stderr
        [key] = created.stdout.splitlines()  # the key alone on stdout, for scripts
        assert key.startswith("up_")
        assert "shown only now" in created.stderr and key not in created.stderr

        holder = {"X-API-Key": key}
        async with api.http(None) as http:
            # An operator's key: it acknowledges an alert, and may not manage keys.
            http.headers.update(holder)
            ack = await http.post(f"/v1/alerts/{alert_id}/acknowledge", json={"note": "cli"})
            assert ack.status_code == 200, ack.text
            assert ack.json()["acknowledged_by"] == name
            assert_error(await http.get("/v1/keys"), 403, "needs admin")

            listed = await urbanpulse(settings, "keys", "list")
            assert listed.returncode == 0, listed.stderr
            [line] = [x for x in listed.stdout.splitlines() if x.split()[0] == name]
            assert line.split() == [name, "operator", "active"]
            assert key not in listed.stdout
            stored_hash = await db.fetchval("SELECT key_hash FROM api_keys WHERE name = $1", name)
            assert stored_hash not in listed.stdout and stored_hash != key

            revoked = await urbanpulse(settings, "keys", "revoke", name)
            assert revoked.returncode == 0, revoked.stderr
            assert revoked.stdout == f"revoked {name}\n"
            assert_error(await http.get("/v1/alerts"), 401, "revoked")

        listed = await urbanpulse(settings, "keys", "list")
        [line] = [x for x in listed.stdout.splitlines() if x.split()[0] == name]
        assert line.split() == [name, "operator", "revoked"]
        # Revoking it again says so, and fails.
        twice = await urbanpulse(settings, "keys", "revoke", name)
        assert twice.returncode == 1 and "no active key" in twice.stderr
