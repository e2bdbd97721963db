"""Latency of ``/v1/areas/history`` (the map's time slider) at city scale: raw rows vs rollups.

On a private local stack (free ports, a temporary directory, removed at the end): the shipped
Ho Chi Minh City areas, ``--sensors`` air stations placed over them, seven days of readings
every 5 minutes (2,016 per station, one ``INSERT ... SELECT``).  Times sequential requests,
p50 and p99:

- the last 24 hours and 7 days before the rollup job ran: every hour from raw rows (the naive
  baseline: what the endpoint costs without rollups);
- the same after ``roll_up`` (the job's own code): whole hours from the hourly rollup, only
  the current hour (and late readings) from raw rows.

    .venv/bin/python -m bench.area_history [--sensors 1000] [--requests 20]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx

from bench.support import api_answering, percentile, say
from tests.conftest import free_ports, settings_for_stack, stack_data_dir
from urbanpulse.api.server import serve_api
from urbanpulse.core.catalogue import KINDS
from urbanpulse.core.logs import configure_logging
from urbanpulse.core.settings import DbRole, Settings
from urbanpulse.data.areas import shipped_area_paths
from urbanpulse.simulators.fleet import place_sensors
from urbanpulse.stack import LocalStack
from urbanpulse.storage import registry
from urbanpulse.storage.areas import import_areas_file
from urbanpulse.storage.db import connect
from urbanpulse.storage.keys import Role, create_api_key
from urbanpulse.storage.rollups import roll_up
from urbanpulse.storage.schema import migrate

DAYS = 7


async def seed(settings: Settings, sensors: int) -> str:
    """Areas, stations and a week of readings; returns an API key."""
    conn = await connect(settings, DbRole.OWNER)
    try:
        await migrate(conn)
        for path in shipped_area_paths():
            await import_areas_file(conn, path)
        fleet = place_sensors("air", sensors, seed=7, prefix="hist")
        await registry.register(
            conn,
            [registry.SensorRecord(s.sensor_id, "air", s.lat, s.lon, s.sensor_id) for s in fleet],
        )
        started = time.monotonic()
        end = datetime.now(UTC).replace(second=0, microsecond=0)
        await conn.execute(
            """
            INSERT INTO readings_air (sensor_id, ts, received_at, pm25, vn_aqi)
            SELECT s, t, t, 20 + 30 * random(), (40 + 120 * random())::int
            FROM unnest($1::text[]) s,
                 generate_series($2::timestamptz - $3::interval, $2, interval '5 minutes') t
            """,
            [s.sensor_id for s in fleet],
            end,
            timedelta(days=DAYS),
        )
        await conn.execute("ANALYZE readings_air; ANALYZE sensors; ANALYZE areas")
        wards = await conn.fetchval("SELECT count(*) FROM areas WHERE level = 'ward'")
        say(
            f"seeded {wards} wards, {sensors} stations x {DAYS * 288 + 1} readings "
            f"in {time.monotonic() - started:.0f} s"
        )
        return await create_api_key(conn, f"hist-{uuid.uuid4().hex[:6]}", Role.VIEWER)
    finally:
        await conn.close()


async def time_history(url: str, key: str, requests: int, label: str) -> None:
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, timeout=120) as http:
        for hours in (24, DAYS * 24):
            samples = []
            size = cells = 0
            for n in range(requests + 2):
                started = time.perf_counter()
                response = await http.get(
                    "/v1/areas/history", params={"kind": "air", "hours": hours}
                )
                elapsed = time.perf_counter() - started
                response.raise_for_status()
                if n >= 2:  # warm-up
                    samples.append(elapsed * 1000)
                size = len(response.content)
                cells = sum(len(f["areas"]) for f in response.json()["frames"])
            p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
            say(f"{label + f' {hours} h':<28} {p50:9.1f} {p99:9.1f} {size:10d} {cells:7d}")


async def run(settings: Settings, args: argparse.Namespace) -> None:
    [port] = free_ports(1)
    settings = settings.model_copy(update={"api": settings.api.model_copy(update={"port": port})})
    key = await seed(settings, args.sensors)
    stop = asyncio.Event()
    server = asyncio.create_task(serve_api(settings, stop))
    url = f"http://{settings.api.host}:{port}"
    try:
        async with httpx.AsyncClient(base_url=url) as http:
            await api_answering(http, attempts=200)
        say(f"\n{'/v1/areas/history':<28} {'p50 ms':>9} {'p99 ms':>9} {'bytes':>10} {'cells':>7}")
        await time_history(url, key, args.requests, "raw only")
        conn = await connect(settings, DbRole.WRITER)
        try:
            started = time.monotonic()
            result = await roll_up(conn, KINDS["air"], timedelta(0))
            await conn.execute("ANALYZE readings_air_1h")
        finally:
            await conn.close()
        rolled = f"(roll_up: {result.hours} sensor-hours in {time.monotonic() - started:.0f} s)"
        await time_history(url, key, args.requests, "rollups")
        say(rolled)
    finally:
        stop.set()
        await server


async def main(args: argparse.Namespace) -> None:
    configure_logging("WARNING", "text")
    data_dir = stack_data_dir("urbanpulse-bench-history-")
    stack = LocalStack(settings_for_stack(data_dir))
    try:
        say(f"starting a private local stack in {data_dir}")
        await asyncio.to_thread(stack.ensure_installed)
        await asyncio.to_thread(stack.up)
        await run(stack.settings, args)
    finally:
        await asyncio.to_thread(stack.down)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sensors", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=20)
    asyncio.run(main(parser.parse_args()))
