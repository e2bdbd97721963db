"""The ops-center map at city scale: 10,000 sensors over the shipped Ho Chi Minh City wards.

Both shipped cities' areas are imported; 4,000 air sensors, 4,000 waste bins and 2,000 traffic
cameras are registered in bulk inside the HCMC wards, and their readings go through the real
pipeline (MQTT -> bridge -> Kafka -> processor -> database), so every colour comes from
processed data.  One ward ("the test ward") has clean air and one full bin.  In headless
Chromium the test checks that the map opens on HCMC (not on both cities), that each area shows
one badge at city zoom, that areas are coloured by the selected kind's own scale (the test ward
is green for air and red for bins), that the legend is that scale plus "no data", that no two
drawn circles overlap, and that an air sensor without a VN_AQI yet says why.  Frame times of
real pans and zooms are printed, not asserted.  Screenshots go to ``test-artifacts/``:
map-city-air.png, map-city-bins.png (home view, one badge per ward), map-ward-air.png and
map-ward-cameras.png (clusters and single sensors, a camera's detail open).
"""

from __future__ import annotations

import base64
import random
import statistics
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from shapely.geometry import Point, shape
from shapely.prepared import prep

from tests.e2e.conftest import eventually, running_pipeline
from tests.e2e.test_grafana_sql import create_database, drop_database
from tests.e2e.test_live_feed import BIN_FIRE, HOT, gateway
from tests.e2e.test_map_page import (
    ARTIFACTS,
    CHROMIUM,
    Page,
    _click,
    _row_text,
    chromium_page,
)
from urbanpulse.core.settings import Settings
from urbanpulse.data.areas import shipped_area_paths
from urbanpulse.indices import congestion, vn_aqi
from urbanpulse.simulators.gateway import data_topic
from urbanpulse.stack import LocalStack
from urbanpulse.storage import registry
from urbanpulse.storage.areas import import_areas_file
from urbanpulse.storage.db import connect
from urbanpulse.storage.scales import FILL_BANDS

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package")

FLEET = {"air": 4000, "waste_bin": 4000, "traffic_camera": 2000}
AIR_FED = 1500  # air sensors given PM in two clock hours (a VN_AQI); the rest stay silent
TEST_WARD_ONE_HOUR = 4  # air sensors of the test ward with PM in one hour only (no VN_AQI yet)
NO_DATA, NO_INDEX = "No data yet", "No index"


def _hcmc_wards() -> list[tuple[str, Any]]:
    [hcmc] = [p for p in shipped_area_paths() if p.name.startswith("hcmc")]
    features = orjson.loads(hcmc.read_bytes())["features"]
    return [
        (f["properties"]["area_id"], shape(f["geometry"]))
        for f in features
        if f["properties"]["level"] == "ward"
    ]


def _fleet(prefix: str, rng: random.Random) -> list[registry.SensorRecord]:
    """10,000 sensors at random points inside the HCMC wards."""
    wards = _hcmc_wards()
    inside = [prep(geometry) for _, geometry in wards]
    west, south, east, north = (
        min(g.bounds[0] for _, g in wards),
        min(g.bounds[1] for _, g in wards),
        max(g.bounds[2] for _, g in wards),
        max(g.bounds[3] for _, g in wards),
    )
    records = []
    for kind, count in FLEET.items():
        while sum(r.kind == kind for r in records) < count:
            lon, lat = rng.uniform(west, east), rng.uniform(south, north)
            if any(p.contains(Point(lon, lat)) for p in inside):
                n = len(records)
                records.append(registry.SensorRecord(f"{prefix}-{n:05d}", kind, lat, lon))
    return records


def _payload(readings: list[tuple[datetime, dict[str, float]]]) -> bytes:
    return orjson.dumps([{"ts": ts, "values": v} for ts, v in readings], option=orjson.OPT_UTC_Z)


async def _a_real_alert_is_listed(
    page: Page, http: httpx.AsyncClient, settings: Settings, bin_id: str
) -> None:
    """Among 10,000 sensors (and the area alerts of their random air), an alert raised by a
    published reading through bridge and processor reaches the list with its message,
    severity and sensor."""
    async with gateway(settings, "waste_bin") as bins:
        await bins.send(bin_id, HOT)

        async def raised() -> list[dict[str, Any]]:
            query = {"sensor": bin_id, "rule": BIN_FIRE}
            return list((await http.get("/v1/alerts", params=query)).json()["alerts"])

        [alert] = await eventually(raised, lambda a: len(a) == 1, 60)
    row = await page.wait_for(_row_text(alert["alert_id"]), 60)
    assert row, await page.evaluate("document.getElementById('alerts').textContent")
    assert "Possible bin fire: Temperature 75" in row
    assert "Critical" in row and f"Sensor {bin_id}" in row


@pytest.fixture
async def city(
    settings: Settings, local_stack: LocalStack
) -> AsyncIterator[tuple[Settings, asyncpg.Connection]]:
    """A database of this test's own: its ten thousand sensors (and the area alerts their random
    air raises) would otherwise crowd every later test's lists, and other tests' sensors and
    areas this map."""
    own = await create_database(local_stack, settings, settings.kafka.topic_prefix)
    db = await connect(own.database)
    try:
        yield own, db
    finally:
        await db.close()
        await drop_database(local_stack, own)


async def test_the_map_reads_at_city_scale(city: tuple[Settings, asyncpg.Connection]) -> None:
    settings, db = city
    for path in shipped_area_paths():
        await import_areas_file(db, path)
    rng = random.Random(11)
    prefix = settings.kafka.topic_prefix
    fleet = _fleet(prefix, rng)
    await registry.register(db, fleet)
    area_of = {
        r["sensor_id"]: r["area_id"]
        for r in await db.fetch(
            "SELECT sensor_id, area_id FROM sensors WHERE sensor_id LIKE $1 || '-%'", prefix
        )
    }
    assert len(area_of) == 10_000 and all(
        a and a.startswith("vn-hcm-ward") for a in area_of.values()
    )
    by_kind = {k: [r.sensor_id for r in fleet if r.kind == k] for k in FLEET}
    # The test ward: the ward with most bins; its air is clean and exactly one of its bins full.
    ward = max(
        {area_of[s] for s in by_kind["waste_bin"]},
        key=lambda a: sum(area_of[s] == a for s in by_kind["waste_bin"]),
    )
    ward_air = [s for s in by_kind["air"] if area_of[s] == ward]
    one_hour = ward_air[:TEST_WARD_ONE_HOUR]
    fed_air = (
        ward_air[TEST_WARD_ONE_HOUR:]
        + [s for s in by_kind["air"] if area_of[s] != ward][: AIR_FED - len(ward_air)]
    )
    ward_bins = [s for s in by_kind["waste_bin"] if area_of[s] == ward]
    now = datetime.now(UTC)
    hour_ago = now - timedelta(hours=1)

    messages: list[tuple[str, str, bytes]] = []
    for s in fed_air:
        pm25 = 10.0 if area_of[s] == ward else rng.uniform(5, 160)
        values = {"pm25": pm25, "pm10": pm25 * 1.5}
        messages.append(("air", s, _payload([(hour_ago, values), (now, values)])))
    for s in one_hour:
        messages.append(("air", s, _payload([(now, {"pm25": 10.0})])))
    for s in by_kind["waste_bin"]:
        fill = (95.0 if s == ward_bins[0] else 20.0) if area_of[s] == ward else rng.uniform(0, 99)
        messages.append(("waste_bin", s, _payload([(now, {"fill": fill})])))
    for s in by_kind["traffic_camera"]:
        values = {"avg_speed": rng.uniform(3, 45), "occupancy": rng.uniform(0, 40), "vehicles": 40}
        messages.append(("traffic_camera", s, _payload([(now, values)])))

    # The wall map's configured home view: the city this fleet covers.  (Unset, it fits every
    # active sensor in the database, and this session's database holds other tests' fleets.)
    lons, lats = [r.lon or 0 for r in fleet], [r.lat or 0 for r in fleet]
    city = (min(lons), min(lats), max(lons), max(lats))
    settings = settings.model_copy(
        update={"api": settings.api.model_copy(update={"map_bbox": city})}
    )
    async with (
        running_pipeline(settings) as pipeline,
        gateway(settings, "air") as gw,
        pipeline.http() as http,
    ):
        for kind, sensor_id, payload in messages:
            gw.mqtt.publish(data_topic(settings.mqtt, kind, sensor_id), payload)
        stored = await eventually(
            lambda: db.fetchval(
                "SELECT count(*) FROM sensor_latest WHERE sensor_id LIKE $1 || '-%' "
                "AND (kind <> 'air' OR ts >= $2)",
                prefix,
                now - timedelta(seconds=1),
            ),
            lambda n: n == len(messages),
            600,
            1.0,
        )
        assert stored == len(messages), f"{stored} of {len(messages)} sensors processed"
        # The ward as the API sums it: clean air, one full bin (expected from what was sent).
        area = (await http.get(f"/v1/areas/{ward}")).json()["properties"]
        assert area["bands"]["air"]["key"] == "good"
        assert area["bands"]["waste_bin"]["key"] == "full"
        assert area["bands"]["traffic_camera"]["key"].startswith("los_")

        url = f"{pipeline.api_url}/map/?lang=en#key={pipeline.api_key}"
        async with chromium_page() as page:
            await page.call("Page.navigate", url=url)
            assert await page.wait_for(
                "window.urbanpulse?.ready && window.urbanpulse.drawn.mode === 'badges' "
                "&& window.urbanpulse.drawn.badges > 0",
                60,
            ), await page.evaluate(
                "JSON.stringify([window.urbanpulse?.error, window.urbanpulse?.drawn])"
            )
            await _check_home_is_hcmc(page, fleet)
            await _a_real_alert_is_listed(page, http, settings, ward_bins[1])
            circles = await _circles(page)
            # One badge per ward that has air sensors.
            assert {c["area_id"] for c in circles} == {area_of[s] for s in by_kind["air"]}
            assert sum(c["count"] for c in circles) == FLEET["air"]
            _assert_apart(circles)
            assert await _legend(page) == [b.name_en for b in vn_aqi.BANDS] + [NO_DATA, NO_INDEX]
            assert (await _colour(page, ward))["key"] == "good"
            await _screenshot(page, "map-city-air.png")
            await _measure_frames(page, "city")

            await _select_kind(page, "waste_bin")
            assert (await _colour(page, ward))["key"] == "full"
            assert await _legend(page) == [b.name_en for b in FILL_BANDS] + [NO_DATA, NO_INDEX]
            assert await page.wait_for(
                "window.urbanpulse.drawn.badges > 0 && "
                "window.__urbanpulse_debug.circles().reduce((n, c) => n + c.count, 0) === 4000"
            )
            await _screenshot(page, "map-city-bins.png")
            await _select_kind(page, "traffic_camera")
            assert await _legend(page) == [b.name_en for b in congestion.BANDS] + [
                NO_DATA,
                NO_INDEX,
            ]
            await _select_kind(page, "air")
            assert (await _colour(page, ward))["key"] == "good"

            # A click on the ward's badge zooms to the ward: clusters, still apart.
            badge = next(c for c in await _circles(page) if c["area_id"] == ward)
            await _mouse_click(page, badge["x"], badge["y"])
            assert await page.wait_for(
                "window.urbanpulse.drawn.mode === 'clusters' && window.urbanpulse.clusters.length "
                "&& window.urbanpulse.zoom >= 14"
            ), await page.evaluate("JSON.stringify(window.urbanpulse.drawn)")
            circles = await _circles(page)
            _assert_apart(circles)
            await _measure_frames(page, "ward")
            await _screenshot(page, "map-ward-air.png")

            # An air sensor with PM in one hour only says why it has no VN_AQI yet.
            waiting = await _zoom_to_single(
                page, next(r for r in fleet if r.sensor_id == one_hour[0])
            )
            assert waiting["band"] == "no_index"
            await _mouse_click(page, waiting["x"], waiting["y"])
            why = await page.wait_for("document.getElementById('detail-why').textContent")
            assert why == "VN_AQI needs 2 of the last 3 hours of PM data: 1 so far"

            # Cameras are read on the congestion index, and a camera opens like any sensor.
            await _select_kind(page, "traffic_camera")
            camera = await _a_single(page)
            assert camera["band"].startswith("los_")
            await page.evaluate("window.urbanpulse.chartPoints = undefined")
            await _mouse_click(page, camera["x"], camera["y"])
            assert (
                await page.wait_for(
                    "window.urbanpulse.chartPoints !== undefined && "
                    "document.getElementById('detail-title').textContent"
                )
                == camera["sensor_id"]
            )
            await _screenshot(page, "map-ward-cameras.png")


async def _check_home_is_hcmc(page: Page, fleet: list[registry.SensorRecord]) -> None:
    """The home view holds every sensor and is not much wider than their extent."""
    view = await page.evaluate(
        "(() => { const r = document.getElementById('map').getBoundingClientRect(); const s ="
        " window.urbanpulse; return [s.centre(), s.screenOf(...s.centre()), r.width, r.height]})()"
    )
    (lon, lat), _, width, height = view
    west, east = min(r.lon or 0 for r in fleet), max(r.lon or 0 for r in fleet)
    south, north = min(r.lat or 0 for r in fleet), max(r.lat or 0 for r in fleet)
    assert (west + east) / 2 == pytest.approx(lon, abs=0.01)
    assert (south + north) / 2 == pytest.approx(lat, abs=0.01)
    corners = await page.evaluate(
        f"[window.urbanpulse.screenOf({west}, {north}), "
        f"window.urbanpulse.screenOf({east}, {south})]"
    )
    (x0, y0), (x1, y1) = corners
    assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height  # every sensor in view
    assert x1 - x0 > width / 3 or y1 - y0 > height / 3  # and the city fills it (not 2 cities)


async def _zoom_to_single(page: Page, sensor: registry.SensorRecord) -> dict[str, Any]:
    """Wheel-zoom in on a sensor until it is drawn on its own; its circle."""
    for _ in range(12):
        await page.wait_for("window.urbanpulse.clusterZoom === Math.round(window.urbanpulse.zoom)")
        for circle in await _circles(page):
            if circle["sensor_id"] == sensor.sensor_id:
                return circle
        x, y = await page.evaluate(f"window.urbanpulse.screenOf({sensor.lon}, {sensor.lat})")
        left, top = await page.evaluate(
            "(r => [r.left, r.top])(document.getElementById('map').getBoundingClientRect())"
        )
        await page.call(
            "Input.dispatchMouseEvent",
            type="mouseWheel",
            x=left + x,
            y=top + y,
            deltaX=0,
            deltaY=-100,
        )
    raise AssertionError(f"{sensor.sensor_id} never drawn on its own")


async def _a_single(page: Page) -> dict[str, Any]:
    """A sensor drawn on its own, zooming out a step at a time while clusters show."""
    for _ in range(4):
        singles = [c for c in await _circles(page) if c["count"] == 1 and c["sensor_id"]]
        if singles:
            return singles[0]
        assert await _click(page, "#zoom-out")
        await page.wait_for("window.urbanpulse.clusterZoom === Math.round(window.urbanpulse.zoom)")
    raise AssertionError("no sensor drawn on its own")


async def _circles(page: Page) -> list[dict[str, Any]]:
    return list(await page.evaluate("window.__urbanpulse_debug.circles()"))


def _assert_apart(circles: list[dict[str, Any]]) -> None:
    drawn = [c for c in circles if c["r"] >= 0.5]
    assert len(drawn) == len(circles)  # none shrank to nothing
    for i, a in enumerate(drawn):
        for b in drawn[i + 1 :]:
            gap = ((a["x"] - b["x"]) ** 2 + (a["y"] - b["y"]) ** 2) ** 0.5 - a["r"] - b["r"]
            assert gap >= 0, f"circles overlap: {a} {b}"


async def _legend(page: Page) -> list[str]:
    return list(
        await page.evaluate(
            "[...document.querySelectorAll('#legend-items li')].map(li => li.textContent)"
        )
    )


async def _colour(page: Page, area_id: str) -> dict[str, str]:
    return dict(
        await page.evaluate(
            f"window.__urbanpulse_debug.areaColour({orjson.dumps(area_id).decode()})"
        )
    )


async def _select_kind(page: Page, kind: str) -> None:
    await page.evaluate(
        f"(() => {{ const k = document.getElementById('kind'); k.value = '{kind}';"
        " k.dispatchEvent(new Event('change')); })()"
    )
    assert await page.wait_for(f"window.urbanpulse.clusterKind === '{kind}'")


async def _mouse_click(page: Page, x: float, y: float) -> None:
    """A real click at canvas coordinates (the canvas sits below the 44 px header)."""
    left, top = await page.evaluate(
        "(r => [r.left, r.top])(document.getElementById('map').getBoundingClientRect())"
    )
    for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
        await page.call(
            "Input.dispatchMouseEvent",
            type=kind,
            x=left + x,
            y=top + y,
            button="left",
            clickCount=1,
        )


async def _measure_frames(page: Page, label: str) -> None:
    """Real drags and wheel zooms; prints the canvas's draw time per frame (not asserted)."""
    await page.evaluate("window.urbanpulse.frameTimes.length = 0")
    left, top = await page.evaluate(
        "(r => [r.left + r.width / 2, r.top + r.height / 2])"
        "(document.getElementById('map').getBoundingClientRect())"
    )
    await page.call("Input.dispatchMouseEvent", type="mousePressed", x=left, y=top, button="left")
    for step in range(40):
        x = left + 4 * (step if step < 20 else 40 - step)
        await page.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=top, button="left")
    await page.call("Input.dispatchMouseEvent", type="mouseReleased", x=left, y=top, button="left")
    for delta in (-100, 100, -100, 100):
        await page.call(
            "Input.dispatchMouseEvent", type="mouseWheel", x=left, y=top, deltaX=0, deltaY=delta
        )
    await _next_frame(page)
    times = list(await page.evaluate("window.urbanpulse.frameTimes"))
    drawn = await page.evaluate("JSON.stringify(window.urbanpulse.drawn)")
    if times:
        p95 = sorted(times)[int(0.95 * (len(times) - 1))]
        zoom = await page.evaluate("window.urbanpulse.zoom")
        # Speed is reported, never asserted (run with -s to see it).
        print(  # noqa: T201
            f"\n{label} zoom {zoom}: {len(times)} frames, draw mean {statistics.mean(times):.2f}"
            f" ms, p95 {p95:.2f} ms, max {max(times):.2f} ms; drawn {drawn}"
        )


async def _next_frame(page: Page) -> None:
    await page.call(
        "Runtime.evaluate",
        expression="new Promise(r => requestAnimationFrame(() => r(1)))",
        awaitPromise=True,
    )


async def _screenshot(page: Page, name: str) -> None:
    await _next_frame(page)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = await page.call("Page.captureScreenshot", format="png")
    (ARTIFACTS / name).write_bytes(base64.b64decode(shot["data"]))
