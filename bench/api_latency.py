"""Latency of the geo API's main endpoints and of the live feed, on the local stack.

Registers 500 air sensors over central Ho Chi Minh City with a day of readings (one a minute,
720,000 rows, written with one INSERT ... SELECT), serves the API in this process and times
sequential requests: p50 and p99 per endpoint.  Then publishes readings to Kafka and times
their arrival at a WebSocket client of ``/v1/live`` (publish-to-client delay; the browser page
reads the same socket).  Last, a year of hourly and daily rollups (see
``seed_year_of_rollups``) and the year-long charts of one sensor, ``bucket=1d`` and ``1h``.

    .venv/bin/python -m bench.api_latency [--sensors 500] [--requests 100]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import httpx
import orjson
from websockets.asyncio.client import connect as ws_connect

from bench.support import api_answering, percentile, say, stack_ready
from tests.conftest import free_ports
from urbanpulse.api.server import serve_api
from urbanpulse.bus import new_producer
from urbanpulse.core.catalogue import KINDS
from urbanpulse.core.envelope import Reading, readings_records
from urbanpulse.core.logs import configure_logging
from urbanpulse.core.settings import DbRole, KafkaPrincipal, Settings
from urbanpulse.data.areas import shipped_area_paths
from urbanpulse.ingest.records import READINGS_HEADERS, RECORD_BYTES
from urbanpulse.kafka_access import provision
from urbanpulse.simulators.fleet import place_sensors
from urbanpulse.storage import registry
from urbanpulse.storage.areas import import_areas_file
from urbanpulse.storage.db import connect
from urbanpulse.storage.keys import Role, create_api_key
from urbanpulse.storage.rollups import RollupPlan, days_between, floor_to, recompute, roll_up
from urbanpulse.storage.schema import migrate

HCMC = (106.66, 10.74, 106.74, 10.82)


async def seed(settings: Settings, prefix: str, sensors: int) -> tuple[str, list[str], str]:
    conn = await connect(settings, DbRole.OWNER)
    try:
        await migrate(conn)
        for path in shipped_area_paths():
            await import_areas_file(conn, path)
        fleet = place_sensors("air", sensors, seed=7, prefix=prefix)
        await registry.register(
            conn,
            [registry.SensorRecord(s.sensor_id, "air", s.lat, s.lon, s.sensor_id) for s in fleet],
        )
        ids = [s.sensor_id for s in fleet]
        end = datetime.now(UTC).replace(second=0, microsecond=0)
        started = time.monotonic()
        await conn.execute(
            """
            INSERT INTO readings_air (sensor_id, ts, received_at, pm25, pm10, vn_aqi)
            SELECT s, t, t, 20 + 30 * random(), 40 + 50 * random(), (40 + 120 * random())::int
            FROM unnest($1::text[]) s,
                 generate_series($2::timestamptz - interval '1 day', $2, interval '1 minute') t
            ON CONFLICT DO NOTHING
            """,
            ids,
            end,
        )
        await conn.execute(
            """
            INSERT INTO sensor_latest (sensor_id, kind, ts, received_at, "values", derived)
            SELECT sensor_id, 'air', ts, received_at,
                   jsonb_build_object('pm25', pm25, 'pm10', pm10),
                   jsonb_build_object('vn_aqi', vn_aqi)
            FROM readings_air WHERE sensor_id = ANY($1::text[]) AND ts = $2
            ON CONFLICT (sensor_id) DO UPDATE SET ts = EXCLUDED.ts, "values" = EXCLUDED."values",
                derived = EXCLUDED.derived
            """,
            ids,
            end,
        )
        await conn.execute("ANALYZE readings_air; ANALYZE sensors; ANALYZE sensor_latest")
        # As on a database whose rollup job has not run: the first timings read raw rows only
        # (the job, run later, rolls up every air reading stored so far once more).
        await conn.execute("UPDATE rollup_state SET watermark = '-infinity' WHERE kind = 'air'")
        say(f"seeded {len(ids)} sensors x 1441 readings in {time.monotonic() - started:.1f} s")
        key = await create_api_key(conn, f"{prefix}-bench", Role.ADMIN)
        area = await conn.fetchval(
            "SELECT area_id FROM sensors WHERE sensor_id = ANY($1::text[]) AND area_id IS NOT NULL "
            "GROUP BY area_id ORDER BY count(*) DESC LIMIT 1",
            ids,
        )
        return key, ids, str(area)
    finally:
        await conn.close()


async def time_endpoints(url: str, key: str, ids: list[str], area: str, requests: int) -> None:
    end = datetime.now(UTC)
    day = {"from": (end - timedelta(days=1)).isoformat(), "to": end.isoformat()}
    bbox = ",".join(str(v) for v in HCMC)
    cases: list[Case] = [
        ("sensors (500, all)", "/v1/sensors", {"limit": 1000}),
        ("sensors bbox", "/v1/sensors", {"bbox": bbox}),
        ("sensors near 2 km", "/v1/sensors", {"near": "106.70,10.78", "radius": 2000}),
        ("sensors area", "/v1/sensors", {"area": area}),
        ("clusters zoom 11", "/v1/sensors/clusters", {"bbox": "106.4,10.5,107.0,11.1", "zoom": 11}),
        ("clusters zoom 15", "/v1/sensors/clusters", {"bbox": bbox, "zoom": 15}),
        ("readings raw 24 h", f"/v1/sensors/{ids[0]}/readings", day),
        (
            "readings 5m+LTTB 200",
            f"/v1/sensors/{ids[0]}/readings",
            {**day, "bucket": "5m", "points": 200},
        ),
        (
            "readings 1h max 24 h (raw)",
            f"/v1/sensors/{ids[0]}/readings",
            {**day, "bucket": "1h", "agg": "max"},
        ),
        ("areas + summaries", "/v1/areas", {"simplify_m": 10}),
        (
            "export csv 1 h, 1 area",
            "/v1/exports/readings.csv",
            {"kind": "air", "area": area, "from": (end - timedelta(hours=1)).isoformat()},
        ),
    ]
    await time_cases(url, key, cases, requests)


Case = tuple[str, str, Mapping[str, str | int]]


async def time_cases(url: str, key: str, cases: list[Case], requests: int) -> None:
    """p50 and p99 of sequential requests per case, after three warm-up requests."""
    say(f"\n{'endpoint':<30} {'p50 ms':>8} {'p99 ms':>8} {'bytes':>9} {'rows':>6}")
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, timeout=60) as http:
        for name, path, params in cases:
            samples = []
            size = rows = 0
            for n in range(requests + 3):
                started = time.perf_counter()
                response = await http.get(path, params=params)
                elapsed = time.perf_counter() - started
                response.raise_for_status()
                size = len(response.content)
                if n >= 3:  # warm-up
                    samples.append(elapsed * 1000)
            if response.headers["content-type"].startswith("application/json"):
                body = response.json()
                rows = len(body.get("readings", body.get("features", [])))
            else:  # CSV: one line per row after the header
                rows = response.text.count("\n") - 1
            p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
            say(f"{name:<30} {p50:8.1f} {p99:8.1f} {size:9d} {rows:6d}")


async def seed_year_of_rollups(settings: Settings, ids: list[str]) -> None:
    """A year of hourly and daily rollups for every sensor, as ``rollups run`` keeps them.

    A year of one-a-minute raw readings for 500 sensors is 262 million rows, too many to load
    in a bench run here: the hourly rows before the seeded raw day are generated directly
    (500 x 8,760 = 4.4 million), the seeded day is rolled up from its raw rows by the real
    job, and every daily row is computed from the hourly rows by the job's own SQL.
    """
    air = KINDS["air"]
    conn = await connect(settings, DbRole.WRITER)
    try:
        started = time.monotonic()
        last_day = floor_to(datetime.now(UTC), timedelta(hours=1)) - timedelta(days=1)
        first_day = last_day - timedelta(days=365)
        for month in range(0, 365, 30):  # a month per statement, within the timeout
            await conn.execute(
                """
                INSERT INTO readings_air_1h (sensor_id, bucket, n, pm25_sum, pm25_count,
                    pm25_min, pm25_max, pm10_sum, pm10_count, pm10_min, pm10_max, vn_aqi_sum,
                    vn_aqi_count, vn_aqi_min, vn_aqi_max)
                SELECT s, h, 60, 60 * (20 + 30 * random()), 60, 20 * random(),
                       50 + 30 * random(), 60 * (40 + 50 * random()), 60, 40 * random(),
                       90 + 40 * random(), (60 * (40 + 120 * random()))::bigint, 60, 40, 160
                FROM unnest($1::text[]) s,
                     generate_series($2::timestamptz, least($3::timestamptz, $4)
                                     - interval '1 hour', interval '1 hour') h
                ON CONFLICT DO NOTHING
                """,
                ids,
                first_day + timedelta(days=month),
                first_day + timedelta(days=month + 30),
                last_day,
            )
            say(f"  hourly rollups: {min(month + 30, 365)} of 365 days")
        generated = time.monotonic() - started
        result = await roll_up(conn, air, timedelta(0))
        days = [(s, d) for s in ids for d in days_between(first_day, last_day)]
        await recompute(conn, air, RollupPlan(hours=[], days=days, skipped=[]))
        await conn.execute("ANALYZE readings_air_1h; ANALYZE readings_air_1d")
        say(
            f"rollups: {len(ids)} sensors x 8,760 hours generated in {generated:.0f} s; "
            f"the raw day rolled up by the job ({result.hours} sensor-hours); "
            f"{len(days)} sensor-days computed; {time.monotonic() - started:.0f} s in all"
        )
    finally:
        await conn.close()


async def time_year_charts(url: str, key: str, ids: list[str], requests: int) -> None:
    end = datetime.now(UTC)
    year = {"from": (end - timedelta(days=365)).isoformat(), "to": end.isoformat()}
    day = {"from": (end - timedelta(days=1)).isoformat(), "to": end.isoformat()}
    readings = f"/v1/sensors/{ids[1]}/readings"
    await time_cases(
        url,
        key,
        [
            ("year, bucket=1d", readings, {**year, "bucket": "1d"}),
            ("year, bucket=1h", readings, {**year, "bucket": "1h"}),
            ("year, bucket=1h max", readings, {**year, "bucket": "1h", "agg": "max"}),
            ("year, 1h + LTTB 1000", readings, {**year, "bucket": "1h", "points": 1000}),
            ("readings 1h max 24 h (rollup)", readings, {**day, "bucket": "1h", "agg": "max"}),
        ],
        requests,
    )


async def time_live_feed(settings: Settings, url: str, key: str, ids: list[str]) -> None:
    producer = new_producer(settings.kafka_as(KafkaPrincipal.BRIDGE), "bench-live")
    await producer.start()
    sent: dict[str, float] = {}
    delays: list[float] = []
    topic = settings.kafka.topic("readings")
    try:
        live = url.replace("http://", "ws://") + "/v1/live"  # the key in a header, never the URL
        async with ws_connect(live, additional_headers={"X-API-Key": key}) as ws:
            await ws.recv()  # subscribed

            async def publish(sensor_id: str) -> None:
                now = datetime.now(UTC)
                reading = Reading(sensor_id, "air", now, {"pm25": 1.0}, now, "bench")
                [value] = readings_records([reading], RECORD_BYTES)  # as the bridge writes it
                sent[sensor_id] = time.perf_counter()
                await producer.send_and_wait(
                    topic, value, key=sensor_id.encode(), headers=READINGS_HEADERS
                )

            for _ in range(60):  # the API's consumer starts at the end: wait until it follows
                await publish(ids[0])
                try:
                    await asyncio.wait_for(ws.recv(), 0.5)
                    break
                except TimeoutError:
                    continue
            for n in range(200):
                sensor_id = ids[n % len(ids)]
                await publish(sensor_id)
                deadline = time.perf_counter() + 3
                while sensor_id in sent and time.perf_counter() < deadline:
                    message = orjson.loads(await asyncio.wait_for(ws.recv(), 3))
                    arrived = time.perf_counter()
                    for reading in message.get("readings", []):
                        if reading["sensor_id"] in sent:
                            delays.append((arrived - sent.pop(reading["sensor_id"])) * 1000)
                await asyncio.sleep(0.05)
    finally:
        await producer.stop()
    say(
        f"\nlive feed publish-to-client delay over {len(delays)} readings: "
        f"p50 {percentile(delays, 0.5):.0f} ms, p99 {percentile(delays, 0.99):.0f} ms, "
        f"mean {statistics.mean(delays):.0f} ms (flush interval 250 ms)"
    )


async def main(args: argparse.Namespace) -> None:
    configure_logging("WARNING", "text")
    base = Settings()
    base = await stack_ready(base)
    [port] = free_ports(1)
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    settings = base.model_copy(
        update={
            "api": base.api.model_copy(update={"port": port}),
            "kafka": base.kafka.model_copy(update={"topic_prefix": prefix}),
        }
    )
    await provision(settings)
    key, ids, area = await seed(settings, prefix, args.sensors)
    stop = asyncio.Event()
    server = asyncio.create_task(serve_api(settings, stop))
    url = f"http://{settings.api.host}:{port}"
    try:
        async with httpx.AsyncClient(base_url=url) as http:
            await api_answering(http, attempts=100)
        say(
            f"API latency, {args.sensors} sensors with a day of data, {args.requests} requests each"
        )
        await time_endpoints(url, key, ids, area, args.requests)
        await time_live_feed(settings, url, key, ids)
        say(f"\nyear-long charts of one sensor ({args.requests} requests each)")
        await seed_year_of_rollups(settings, ids)
        await time_year_charts(url, key, ids, args.requests)
    finally:
        stop.set()
        await server


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sensors", type=int, default=500)
    parser.add_argument("--requests", type=int, default=100)
    asyncio.run(main(parser.parse_args()))
