"""Shared by the API tests: a running API with keys of each role, and a small world of areas,
sensors and readings of its own, placed far from every other test's data (no tests here)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import asyncpg
import httpx
from shapely.geometry import MultiPolygon, box
from websockets.asyncio.client import connect as ws_connect

from tests.e2e.conftest import eventually
from urbanpulse.api.routers.sensors import CLUSTER_CELL_PX
from urbanpulse.api.server import serve_api
from urbanpulse.core.areas import AreaRecord
from urbanpulse.core.envelope import Reading
from urbanpulse.core.settings import Settings
from urbanpulse.storage import registry
from urbanpulse.storage.areas import upsert_areas
from urbanpulse.storage.db import connect
from urbanpulse.storage.keys import Role, create_api_key
from urbanpulse.storage.writer import write_readings


@dataclass
class Api:
    url: str
    keys: dict[str, str]

    def http(self, role: str | None = "admin") -> httpx.AsyncClient:
        headers = {"X-API-Key": self.keys[role]} if role else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)


def live_url(api_url: str, params: Mapping[str, str] | None = None) -> str:
    query = f"?{urlencode(params)}" if params else ""
    return api_url.replace("http://", "ws://") + "/v1/live" + query


def live_connect(
    api_url: str, key: str | None, params: Mapping[str, str] | None = None, **options: Any
) -> ws_connect:
    """A client of /v1/live presenting ``key`` as a header (keys never go in the URL)."""
    headers = {"X-API-Key": key} if key else None
    return ws_connect(live_url(api_url, params), additional_headers=headers, **options)


@contextlib.asynccontextmanager
async def running_api(settings: Settings) -> AsyncIterator[Api]:
    stop = asyncio.Event()
    task = asyncio.create_task(serve_api(settings, stop))
    url = f"http://{settings.api.host}:{settings.api.port}"
    conn = await connect(settings.database)
    try:
        prefix = f"{settings.kafka.topic_prefix}-{uuid.uuid4().hex[:6]}"
        keys = {role.value: await create_api_key(conn, f"{prefix}-{role}", role) for role in Role}
    finally:
        await conn.close()

    async def up() -> bool:
        try:
            async with httpx.AsyncClient(base_url=url, timeout=2) as http:
                return (await http.get("/v1/map/config")).status_code == 200
        except httpx.TransportError:
            return False

    try:
        assert await eventually(up, bool, timeout_s=30), "the API did not start"
        yield Api(url, keys)
    finally:
        stop.set()
        await task


@dataclass
class World:
    """Areas P (province) > W1, W2 (wards) side by side, sensors in them, readings."""

    prefix: str
    lon: float  # south-west corner of P
    lat: float
    start: datetime
    end: datetime
    sensors: dict[str, str] = field(default_factory=dict)  # short name -> sensor id

    @property
    def province(self) -> str:
        return f"{self.prefix}-p"

    def ward(self, n: int) -> str:
        return f"{self.prefix}-w{n}"

    def bbox(self, pad: float = 0.0) -> str:
        p = pad
        return f"{self.lon - p},{self.lat - p},{self.lon + 0.2 + p},{self.lat + 0.2 + p}"


# short name, kind, dx, dy (degrees inside P), status, ward
LAYOUT = [
    ("a1", "air", 0.02, 0.05, "active", 1),
    ("a2", "air", 0.05, 0.15, "active", 1),
    ("a3", "air", 0.15, 0.05, "active", 2),
    ("w1", "water", 0.17, 0.17, "active", 2),
    ("b1", "waste_bin", 0.12, 0.10, "active", 2),
    ("b2", "waste_bin", 0.08, 0.10, "active", 1),
    ("p1", "air", 0.03, 0.03, "pending", 1),
    ("r1", "air", 0.04, 0.04, "retired", 1),
]


# The cluster grid at zoom 5, in degrees: a world centred on one of its points has all its
# sensors (within 0.1° of the centre) in one cell at that zoom, wherever the world lands.
ZOOM5_CELL = 360.0 / 2**5 * CLUSTER_CELL_PX / 256
WORLD_SIZE = 0.2


def _grid_corner(rng: random.Random, low: float, high: float) -> float:
    """South-west corner of a world centred on a random zoom-5 grid point in [low, high]."""
    point = rng.randint(math.ceil(low / ZOOM5_CELL), math.floor(high / ZOOM5_CELL)) * ZOOM5_CELL
    return round(point - WORLD_SIZE / 2, 6)


async def build_world(conn: asyncpg.Connection, settings: Settings) -> World:
    rng = random.Random(uuid.uuid4().int)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    world = World(
        prefix=settings.kafka.topic_prefix,
        # Far from every other test's data (open ocean), and apart from other worlds.
        lon=_grid_corner(rng, 100, 179),
        lat=_grid_corner(rng, -60, -10),
        start=now - timedelta(hours=24),
        end=now,
    )
    x, y = world.lon, world.lat
    await upsert_areas(
        conn,
        [
            AreaRecord(
                world.province, "Tỉnh thử", "province", None, _multi(x, y, x + 0.2, y + 0.2)
            ),
            AreaRecord(
                world.ward(1), "Phường 1", "ward", world.province, _multi(x, y, x + 0.1, y + 0.2)
            ),
            AreaRecord(
                world.ward(2),
                "Phường 2",
                "ward",
                world.province,
                _multi(x + 0.1, y, x + 0.2, y + 0.2),
            ),
        ],
    )
    records = []
    for short, kind, dx, dy, status, _ward in LAYOUT:
        sensor_id = f"{world.prefix}-{short}"
        world.sensors[short] = sensor_id
        records.append(
            registry.SensorRecord(sensor_id, kind, y + dy, x + dx, f"Sensor {short}", status)
        )
    await registry.register(conn, records)
    readings: list[Reading] = []
    derived: dict[tuple[str, datetime], dict[str, object]] = {}
    for step in range(24 * 12):  # a day, every 5 minutes
        ts = world.start + timedelta(minutes=5 * step)
        pm25 = 20.0 + 10 * (step % 12) + (300.0 if step == 100 else 0.0)
        for short, aqi in (("a1", 180), ("a2", 40), ("a3", 80)):
            sid = world.sensors[short]
            readings.append(Reading(sid, "air", ts, {"pm25": pm25}, ts, "test"))
            derived[(sid, ts)] = {"vn_aqi": aqi + (step % 3), "vn_aqi_pollutant": "pm25"}
    last = world.start + timedelta(minutes=5 * (24 * 12 - 1))
    readings.append(Reading(world.sensors["w1"], "water", last, {"ph": 7.0, "do": 5.0}, last, "t"))
    derived[(world.sensors["w1"], last)] = {"wqi": 40}
    readings.append(Reading(world.sensors["b1"], "waste_bin", last, {"fill": 95.0}, last, "t"))
    readings.append(Reading(world.sensors["b2"], "waste_bin", last, {"fill": 30.0}, last, "t"))
    async with conn.transaction():
        await write_readings(conn, readings, derived)
    return world


def _multi(x0: float, y0: float, x1: float, y1: float) -> MultiPolygon:
    return MultiPolygon([box(x0, y0, x1, y1)])
