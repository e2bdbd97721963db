"""The ops-center map in headless Chromium, driven over the DevTools protocol.

Chromium comes from Debian (``apt-get install chromium``); the test talks to it with the
``websockets`` client that the API already needs for its live feed, so no Node.js, no Playwright
browser download.  It loads the page from a running API, waits until areas and sensors are
drawn, publishes an alert to Kafka and waits for it in the list without a reload, then saves a
screenshot to ``test-artifacts/map.png``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import re
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.e2e.api_support import Api, World, build_world, running_api
from urbanpulse.bus import ensure_topics, new_producer
from urbanpulse.core.settings import Settings

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package")


class Page:
    """The few DevTools calls the test needs, over one page target's WebSocket."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self.ids)
        await self.ws.send(
            orjson.dumps({"id": call_id, "method": method, "params": params}).decode()
        )
        while True:
            message = orjson.loads(await asyncio.wait_for(self.ws.recv(), 30))
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout_s: float = 30) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            value = await self.evaluate(expression)
            if value or time.monotonic() > deadline:
                return value
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def chromium_page() -> AsyncIterator[Page]:
    assert CHROMIUM is not None
    profile = tempfile.mkdtemp(prefix="urbanpulse-chromium-")
    process = await asyncio.create_subprocess_exec(
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
        "--window-size=1400,900",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        port = None
        async with asyncio.timeout(30):
            while port is None:
                line = (await process.stderr.readline()).decode(errors="replace")
                if not line:
                    raise RuntimeError("chromium exited before DevTools listened")
                match = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
                port = int(match.group(1)) if match else None
        drain = asyncio.create_task(_drain(process.stderr))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as devtools:
            targets = (await devtools.get("/json/list")).json()
        page_target = next(t for t in targets if t["type"] == "page")
        async with connect(page_target["webSocketDebuggerUrl"], max_size=2**26) as ws:
            page = Page(ws)
            await page.call("Page.enable")
            await page.call("Runtime.enable")
            yield page
        drain.cancel()
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
        shutil.rmtree(profile, ignore_errors=True)


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    await ensure_topics(settings.kafka)
    async with running_api(settings) as running:
        yield running


async def test_the_map_draws_areas_and_sensors_and_shows_alerts_live(
    api: Api, settings: Settings, db: asyncpg.Connection
) -> None:
    world: World = await build_world(db, settings)
    url = f"{api.url}/map?key={api.keys['viewer']}&lang=en&bbox={world.bbox(0.02)}"
    async with chromium_page() as page:
        await page.call("Page.navigate", url=url)
        drawn = await page.wait_for(
            "window.urbanpulse && window.urbanpulse.ready && window.urbanpulse.live === 'live' "
            "&& window.urbanpulse.drawn.sensors >= 6 && window.urbanpulse.drawn.areas >= 3 "
            "&& window.urbanpulse.drawn"
        )
        assert drawn, await page.evaluate("JSON.stringify(window.urbanpulse)")
        assert drawn["sensors"] >= 6 and drawn["areas"] >= 3
        assert await page.evaluate("document.documentElement.lang") == "en"
        legend = await page.evaluate(
            "[...document.querySelectorAll('#legend-items li')].map(li => li.textContent)"
        )
        assert legend[:2] == ["Good", "Moderate"] and "No index" in legend

        # A click on a sensor opens its last 24 hours, drawn from the bucketed series.
        clicked = await _click_sensor(page, world.sensors["a1"])
        assert clicked
        chart_points = await page.wait_for("window.urbanpulse.chartPoints")
        assert chart_points and chart_points > 50

        producer = new_producer(settings.kafka, "map-test")
        await producer.start()
        try:
            alert = {
                "alert_id": f"{world.prefix}-map-alert",
                "rule_id": "pm25_1h",
                "state": "open",
                "severity": "critical",
                "sensor_id": world.sensors["a1"],
                "area_id": world.ward(1),
                "message_vi": "PM2.5 vượt ngưỡng QCVN 05:2023",
                "message_en": "PM2.5 above the QCVN 05:2023 limit",
            }
            # The API's feed starts at the end of the topic once its consumer is placed; an
            # alert sent before that is not replayed, so send it again until the page shows it.
            shown = None
            for _ in range(10):
                await producer.send_and_wait(settings.kafka.topic("alerts"), orjson.dumps(alert))
                shown = await page.wait_for(
                    "[...document.querySelectorAll('#alerts li')]"
                    ".map(li => li.textContent).join('|')",
                    timeout_s=3,
                )
                if shown:
                    break
        finally:
            await producer.stop()
        assert shown and "PM2.5 above the QCVN 05:2023 limit" in shown
        assert await page.evaluate("performance.getEntriesByType('navigation').length") == 1

        ARTIFACTS.mkdir(exist_ok=True)
        shot = await page.call("Page.captureScreenshot", format="png")
        (ARTIFACTS / "map.png").write_bytes(base64.b64decode(shot["data"]))


async def _click_sensor(page: Page, sensor_id: str) -> bool:
    """Dispatch a real mouse click at the sensor's position on the canvas."""
    sensor = orjson.dumps(sensor_id).decode()
    position = await page.evaluate(
        f"""(() => {{
            const s = window.urbanpulse;
            const c = s.clusters.find(f => f.properties.sensor_id === {sensor});
            if (!c) return null;
            const r = document.getElementById('map').getBoundingClientRect();
            const [x, y] = s.screenOf(...c.geometry.coordinates);
            return [r.left + x, r.top + y];
        }})()"""
    )
    if position is None:
        return False
    x, y = position
    for kind in ("mousePressed", "mouseReleased"):
        await page.call(
            "Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1
        )
    return True
