"""The ops-center map in headless Chromium, driven over the DevTools protocol.

Chromium comes from Debian (``apt-get install chromium``); the test talks to it with the
``websockets`` client that the API already needs for its live feed, so no Node.js, no Playwright
browser download.  It runs the whole pipeline (bridge, processor, API), raises alerts by
publishing bin readings over MQTT (rule "bin-fire" of ``rules/default.yaml``), loads the page
and checks that the alert list starts from the alerts already open, takes new ones live without
a reload, lets an operator acknowledge from the map, and flies to an alert's sensor; then it
saves a screenshot to ``test-artifacts/map.png``.
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

from tests.e2e.api_support import World, build_world
from tests.e2e.conftest import eventually, running_pipeline
from tests.e2e.test_live_feed import BIN_FIRE, COOL, HOT, gateway
from urbanpulse.core.settings import Settings
from urbanpulse.storage.keys import Role, create_api_key

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


async def test_the_map_lists_live_alerts_and_lets_an_operator_act_on_them(
    settings: Settings, db: asyncpg.Connection
) -> None:
    world: World = await build_world(db, settings)
    bin1, bin2 = world.sensors["b1"], world.sensors["b2"]  # in ward 2 and ward 1
    operator_name = f"{world.prefix}-map-operator"
    operator = await create_api_key(db, operator_name, Role.OPERATOR)
    viewer = await create_api_key(db, f"{world.prefix}-map-viewer", Role.VIEWER)
    async with (
        running_pipeline(settings) as pipeline,
        gateway(settings, "waste_bin") as gw,
        pipeline.http() as http,
    ):

        async def bin_fire(sensor_id: str) -> list[dict[str, Any]]:
            query = {"sensor": sensor_id, "rule": BIN_FIRE}
            return list((await http.get("/v1/alerts", params=query)).json()["alerts"])

        # An alert open before the map opens: the list must start from it.
        await gw.send(bin1, HOT)
        [first] = await eventually(lambda: bin_fire(bin1), lambda a: len(a) == 1, 60)
        # The key after "#": never sent to the server; the page takes it out of the address.
        page_url = f"{pipeline.api_url}/map?lang=en&bbox={world.bbox(0.02)}#key="
        async with chromium_page() as page:
            await page.call("Page.navigate", url=page_url + operator)
            # One kind (air by default: the world's 3 active air sensors) and one area level
            # (wards by default: the world's 2 wards, not their province) at a time.
            drawn = await page.wait_for(
                "window.urbanpulse && window.urbanpulse.ready && window.urbanpulse.live === 'live' "
                "&& window.urbanpulse.drawn.sensors === 3 && window.urbanpulse.drawn.areas === 2 "
                "&& window.urbanpulse.drawn"
            )
            assert drawn, await page.evaluate("JSON.stringify(window.urbanpulse.error)")
            assert drawn["sensors"] == 3 and drawn["areas"] == 2
            assert await page.evaluate("window.urbanpulse.role") == "operator"
            address = await page.evaluate("location.href")
            assert operator not in address and "key=" not in address, address
            assert await page.evaluate("sessionStorage.getItem('urbanpulse.key')") == operator
            assert await page.evaluate("document.documentElement.lang") == "en"
            legend = await page.evaluate(
                "[...document.querySelectorAll('#legend-items li')].map(li => li.textContent)"
            )
            assert legend[:2] == ["Good", "Moderate"] and "No index" in legend

            row = await page.wait_for(_row_text(first["alert_id"]))
            assert row, await page.evaluate("document.getElementById('alerts').textContent")
            assert "Possible bin fire: Temperature 75" in row
            assert "Critical" in row and f"Sensor {bin1}" in row and "Phường 2" in row
            assert "Open" in row and ("just now" in row or "min" in row)

            # A click on a sensor opens its last 24 hours, drawn from the bucketed series.
            assert await _click_sensor(page, world.sensors["a1"])
            chart_points = await page.wait_for("window.urbanpulse.chartPoints")
            assert chart_points and chart_points > 50

            # A new alert arrives live and takes its own row; the first one stays.  The feed
            # starts at the end of the topics: keep the bin reporting until readings arrive.
            deadline = time.monotonic() + 60
            while not await page.evaluate("window.urbanpulse.readingsSeen > 0"):
                assert time.monotonic() < deadline, "the map never received a reading"
                await gw.send(bin2, COOL)
                await page.wait_for("window.urbanpulse.readingsSeen > 0", timeout_s=1)
            await gw.send(bin2, HOT)
            # Its row, by the alert's id: the world's readings are stamped on the hour, so by
            # the time the test runs its bins may also have "offline" alerts of their own.
            [second] = await eventually(lambda: bin_fire(bin2), lambda a: len(a) == 1, 60)
            live_row = await page.wait_for(_row_text(second["alert_id"]), timeout_s=60)
            assert live_row and "Possible bin fire: Temperature 75" in live_row
            assert "Critical" in live_row and "Phường 1" in live_row
            assert await page.evaluate(_row_text(first["alert_id"]))
            assert await page.evaluate("performance.getEntriesByType('navigation').length") == 1
            # Most severe first (each row's first class is its severity).
            shown = await page.evaluate(
                "[...document.querySelectorAll('#alerts li')].map(li => li.classList[0])"
            )
            order = {"critical": 0, "warning": 1, "info": 2}
            assert [order[s] for s in shown] == sorted(order[s] for s in shown)

            # The operator acknowledges from the map: the stored alert changes.
            assert await _click(page, _in_row(first["alert_id"], "button[data-action=acknowledge]"))
            stored = await eventually(
                lambda: _alert(http, first["alert_id"]), lambda a: a["state"] != "open", 30
            )
            assert (stored["state"], stored["acknowledged_by"]) == ("acknowledged", operator_name)
            row = await page.wait_for(
                f"(t => t && t.includes('Acknowledged') && t)({_row_text(first['alert_id'])})"
            )
            assert row and "Acknowledge" not in row.replace("Acknowledged", "")

            # A click on an alert flies to its sensor and opens it.
            assert await _click(page, _in_row(second["alert_id"], ".message"))
            assert await page.wait_for(
                f"window.urbanpulse.selected === {orjson.dumps(bin2).decode()}"
            )
            lon, lat = await page.evaluate("window.urbanpulse.centre()")
            assert second["location"]["coordinates"] == pytest.approx([lon, lat], abs=1e-4)

            ARTIFACTS.mkdir(exist_ok=True)
            shot = await page.call("Page.captureScreenshot", format="png")
            (ARTIFACTS / "map.png").write_bytes(base64.b64decode(shot["data"]))

            # Resolved from the map: stored so, and gone from the list of active alerts.
            assert await _click(page, _in_row(second["alert_id"], "button[data-action=resolve]"))
            stored = await eventually(
                lambda: _alert(http, second["alert_id"]), lambda a: a["state"] == "resolved", 30
            )
            assert (stored["state"], stored["resolved_by"]) == ("resolved", operator_name)
            assert await page.wait_for(f"!{_row_text(second['alert_id'])}")

            # A viewer sees the same list, without the operator's buttons.
            await page.call("Page.navigate", url=page_url + viewer)
            assert (
                await page.wait_for(
                    "window.urbanpulse && window.urbanpulse.alertsLoaded && window.urbanpulse.role"
                )
                == "viewer"
            )
            assert "Acknowledged" in await page.wait_for(_row_text(first["alert_id"]))
            assert await page.evaluate("document.querySelectorAll('#alerts button').length") == 0

            # The bin cools down: the processor resolves the alert and the row leaves live.
            await gw.send(bin1, COOL)
            assert await page.wait_for(f"!{_row_text(first['alert_id'])}", timeout_s=60)
            stored = await _alert(http, first["alert_id"])
            assert (stored["state"], stored["resolved_by"]) == ("resolved", "system")
            assert await page.evaluate("performance.getEntriesByType('navigation').length") == 1
        async with httpx.AsyncClient(base_url=pipeline.api_url) as anonymous:
            assert (await anonymous.get("/v1/map/config")).json()["role"] is None


def _in_row(alert_id: str, selector: str) -> str:
    return f"#alerts li[data-alert-id={orjson.dumps(alert_id).decode()}] {selector}"


def _row_text(alert_id: str) -> str:
    selector = orjson.dumps(_in_row(alert_id, "")).decode()
    return f"document.querySelector({selector})?.textContent"


async def _alert(http: httpx.AsyncClient, alert_id: str) -> dict[str, Any]:
    return dict((await http.get(f"/v1/alerts/{alert_id}")).json())


async def _click(page: Page, selector: str) -> bool:
    """A real mouse click in the middle of the element that ``selector`` finds."""
    found = orjson.dumps(selector).decode()
    position = await page.evaluate(
        f"""(() => {{
            const el = document.querySelector({found});
            if (!el) return null;
            el.scrollIntoView({{block: "center"}});
            const r = el.getBoundingClientRect();
            return [r.left + r.width / 2, r.top + r.height / 2];
        }})()"""
    )
    if position is None:
        return False
    await _mouse_click(page, *position)
    return True


async def _mouse_click(page: Page, x: float, y: float) -> None:
    for kind in ("mousePressed", "mouseReleased"):
        await page.call(
            "Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1
        )


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
    await _mouse_click(page, *position)
    return True
