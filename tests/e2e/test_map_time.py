"""Pollution over time, forecasts and facility boards on the ops-center map.

1. ``/v1/areas/history`` on the real path: air readings published over MQTT (bridge ->
   processor computes the VN_AQI -> database), six hours ago to now and three days ago; each
   ward's hourly value is checked against the VN_AQI computed by hand from Decision
   1459/QĐ-TCMT's breakpoint table, first from raw rows, then from the hourly rollups alone
   (the raw rows deleted after ``roll_up``).  Bad parameters get a 4xx that says why.  A
   landfill reading past methane's explosive limit shows on its board with the rule's limit
   and the alert the processor opened.
2. In Chromium: the time slider moves through an episode (a ward good, then bad, then good
   again) and the ward's colour follows; a stored forecast appears in an air station's detail
   and a bin's; the landfill board lists its site against the rule file's limits.
"""

from __future__ import annotations

import base64
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from shapely.geometry import MultiPolygon, box

from tests.e2e.api_support import running_api
from tests.e2e.conftest import Pipeline, eventually
from tests.e2e.test_families import publish
from tests.e2e.test_map_page import ARTIFACTS, CHROMIUM, Page, _click_sensor, chromium_page
from urbanpulse.core.areas import AreaRecord
from urbanpulse.core.catalogue import KINDS
from urbanpulse.core.envelope import Reading
from urbanpulse.core.settings import Settings
from urbanpulse.forecast.forecaster import HorizonForecast
from urbanpulse.forecast.store import AirForecast, BinForecast, store_air, store_bins
from urbanpulse.storage import registry
from urbanpulse.storage.areas import upsert_areas
from urbanpulse.storage.rollups import roll_up
from urbanpulse.storage.writer import write_readings

HOUR = timedelta(hours=1)

# VN_AQI sub-indices by hand, Decision 1459/QĐ-TCMT table (linear between breakpoints):
#   PM2.5 10 µg/m³ (constant, so its NowCast is 10): 50 / 25 x 10                  = 20
#   NO2  40 µg/m³ (1-hour mean):   50 / 100 x 40                                   = 20
#   NO2 150 µg/m³:                 50 + (100 - 50) / (200 - 100) x (150 - 100)     = 75
#   NO2 450 µg/m³:                100 + (150 - 100) / (700 - 200) x (450 - 200)    = 125
#   NO2 1000 µg/m³:               150 + (200 - 150) / (1200 - 700) x (1000 - 700)  = 180
# The hourly VN_AQI is the larger sub-index.  In a sensor's first hour there is none: the
# NowCast needs PM means in two of the current and previous two hours, and a VN_AQI needs PM.
PM25 = 10.0
A1_NO2 = [40.0, 40.0, 1000.0, 1000.0, 40.0, 40.0]  # ward A's only station: an episode
A2_NO2, B1_NO2, OLD_NO2 = 150.0, 40.0, 450.0
WARD_A = [None, 20, 180, 180, 20, 20]  # hours H-6 .. H-1
WARD_B = [None, 75, 75, 75, 75, 75]  # worst of a2 (75) and b1 (20)
BANDS = {20: "good", 75: "moderate", 108: "poor", 125: "poor", 180: "bad"}


def _ocean_corner() -> tuple[float, float]:
    rng = random.Random(uuid.uuid4().int)
    return round(rng.uniform(100, 170), 3), round(rng.uniform(-55, -15), 3)


async def two_wards(db: asyncpg.Connection, prefix: str) -> tuple[str, str, float, float]:
    """Wards A and B side by side, far out at sea (apart from every other test's data)."""
    x, y = _ocean_corner()
    ward_a, ward_b = f"{prefix}-wa", f"{prefix}-wb"
    await upsert_areas(
        db,
        [
            AreaRecord(
                ward_a, "Phường A", "ward", None, MultiPolygon([box(x, y, x + 0.1, y + 0.1)])
            ),
            AreaRecord(
                ward_b, "Phường B", "ward", None, MultiPolygon([box(x + 0.1, y, x + 0.2, y + 0.1)])
            ),
        ],
    )
    return ward_a, ward_b, x, y


def _hour_of_readings(start: datetime, no2: float) -> list[dict[str, Any]]:
    """Three readings in the hour from ``start``, all the same."""
    return [
        {"ts": (start + timedelta(minutes=m)).isoformat(), "values": {"pm25": PM25, "no2": no2}}
        for m in (0, 20, 40)
    ]


def _frames(body: dict[str, Any]) -> dict[datetime, dict[str, Any]]:
    return {datetime.fromisoformat(f["ts"]): f["areas"] for f in body["frames"]}


def _expected(ward: list[int | None], sensors: int) -> list[dict[str, Any] | None]:
    return [None if v is None else {"value": v, "band": BANDS[v], "sensors": sensors} for v in ward]


async def test_area_history_replays_each_wards_vn_aqi_from_readings_sent_over_mqtt(
    settings: Settings, db: asyncpg.Connection, pipeline: Pipeline
) -> None:
    prefix = settings.kafka.topic_prefix
    ward_a, ward_b, x, y = await two_wards(db, prefix)
    await registry.register(
        db,
        [
            registry.SensorRecord(f"{prefix}-a1", "air", y + 0.05, x + 0.05),
            registry.SensorRecord(f"{prefix}-a2", "air", y + 0.05, x + 0.12),
            registry.SensorRecord(f"{prefix}-b1", "air", y + 0.05, x + 0.17),
            registry.SensorRecord(f"{prefix}-ldf", "landfill", y + 0.02, x + 0.02, "Bãi A"),
        ],
    )
    now_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    first = now_hour - 6 * HOUR
    old = now_hour - 72 * HOUR
    # Three days ago first, stored before the recent hours are sent: a station's readings
    # reach the processor in time order.
    await publish(
        settings,
        prefix,
        [("air", "a1", _hour_of_readings(old + k * HOUR, OLD_NO2)) for k in range(2)],
    )
    await eventually(lambda: _stored(db, prefix), lambda n: n == 6)
    hourly_no2 = {"a1": A1_NO2, "a2": [A2_NO2] * 6, "b1": [B1_NO2] * 6}
    recent = [
        ("air", short, [r for k in range(6) for r in _hour_of_readings(first + k * HOUR, no2[k])])
        for short, no2 in hourly_no2.items()
    ]
    landfill = {"ts": (now_hour - HOUR).isoformat(), "values": {"ch4": 6.0, "h2s": 2.0}}
    await publish(settings, prefix, [*recent, ("landfill", "ldf", landfill)])
    assert await eventually(lambda: _stored(db, prefix), lambda n: n == 6 + 3 * 18 + 1) == 61

    async with pipeline.http() as http:
        expected_a, expected_b = _expected(WARD_A, 1), _expected(WARD_B, 2)

        async def check(hours: int) -> dict[datetime, dict[str, Any]]:
            response = await http.get(
                "/v1/areas/history", params={"kind": "air", "index": "vn_aqi", "hours": hours}
            )
            assert response.status_code == 200, response.text
            body = response.json()
            assert (body["index"], body["level"], body["step"]) == ("vn_aqi", "ward", "1h")
            assert [b["key"] for b in body["legend"][:6]] == [
                "good",
                "moderate",
                "poor",
                "bad",
                "very_bad",
                "hazardous",
            ]
            frames = _frames(body)
            assert len(frames) == hours and max(frames) >= now_hour
            for k in range(6):
                hour = frames[first + k * HOUR]
                assert hour.get(ward_a) == expected_a[k], (k, hour.get(ward_a))
                assert hour.get(ward_b) == expected_b[k], (k, hour.get(ward_b))
            return frames

        frames = await check(24)
        assert (old + HOUR) not in frames  # three days ago: beyond 24 hours
        week = await check(168)
        assert ward_a not in week[old]  # the station's first hour then: no NowCast yet
        assert week[old + HOUR][ward_a] == {"value": 125, "band": "poor", "sensors": 1}

        # The hourly rollups hold the same: roll up, then drop the raw rows of the whole hours.
        await roll_up(db, KINDS["air"], timedelta(0))
        deleted = await db.execute(
            "DELETE FROM readings_air WHERE sensor_id LIKE $1 AND ts < $2", f"{prefix}-%", now_hour
        )
        assert deleted == "DELETE 60"
        week = await check(168)
        assert week[old + HOUR][ward_a] == {"value": 125, "band": "poor", "sensors": 1}

        # A late reading (event time in a rolled-up hour) counts before the next roll-up: b1's
        # NO2 mean in hour 2 becomes (3 x 40 + 1000) / 4 = 280 µg/m³, sub-index
        # 100 + (150 - 100) / (700 - 200) x (280 - 200) = 108: ward B's worst that hour.
        late = {
            "ts": (first + 2 * HOUR + timedelta(minutes=50)).isoformat(),
            "values": {"pm25": PM25, "no2": 1000.0},
        }
        await publish(settings, prefix, [("air", "b1", late)])
        await eventually(lambda: _stored(db, prefix), lambda n: n == 2)  # and the landfill's
        expected_b[2] = {"value": 108, "band": "poor", "sensors": 2}
        await check(24)

        # Bad parameters: a 4xx that says what is wrong.
        bad: list[tuple[dict[str, str | int], str]] = [
            ({"kind": "waste_truck"}, "no map scale"),
            ({"kind": "air", "index": "wqi"}, "read on 'vn_aqi'"),
            ({"kind": "air", "hours": 0}, "hours"),
            ({"kind": "air", "hours": 169}, "hours"),
            ({"kind": "air", "level": "galaxy"}, "no areas at level 'galaxy'"),
            ({}, "kind"),
        ]
        for params, words in bad:
            response = await http.get("/v1/areas/history", params=params)
            assert response.status_code == 422, (params, response.text)
            assert words in response.json()["error"]["message"], response.text
        async with pipeline.http(key=None) as anonymous:
            assert (await anonymous.get("/v1/areas/history?kind=air")).status_code == 401

        # The landfill's board: its methane against both rule limits, the critical alert.
        boards = (await http.get("/v1/boards")).json()["boards"]
        assert [b["kind"] for b in boards] == ["landfill", "incinerator"]
        board = await eventually(
            lambda: _board(http, "landfill", f"{prefix}-ldf"), lambda s: bool(s["alerts"])
        )
        assert board["status"] == "critical" and board["values"]["ch4"] == 6.0
        assert [a["rule_id"] for a in board["alerts"]] == ["landfill-ch4-lel"]
        checks = {c["rule_id"]: c["exceeded"] for c in board["checks"]}
        assert checks["landfill-ch4-25-lel"] and checks["landfill-ch4-lel"]
        assert checks["landfill-leachate-head"] is None  # not measured
        assert (await http.get("/v1/boards/air")).status_code == 404


async def _stored(db: asyncpg.Connection, prefix: str) -> int:
    n: int = await db.fetchval(
        "SELECT (SELECT count(*) FROM readings_air WHERE sensor_id LIKE $1) "
        "+ (SELECT count(*) FROM readings_landfill WHERE sensor_id LIKE $1)",
        f"{prefix}-%",
    )
    return n


async def _board(http: httpx.AsyncClient, kind: str, sensor_id: str) -> dict[str, Any]:
    sites = (await http.get(f"/v1/boards/{kind}")).json()["sites"]
    return next(s for s in sites if s["sensor_id"] == sensor_id)


# ------------------------------------------------------------------------ in the browser

# Ward C: good, bad for two hours, good again; ward D moderate throughout (stored VN_AQI).
EPISODE_C = [30, 30, 170, 170, 30, 30]
STEADY_D = 60


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package")
async def test_the_time_slider_replays_an_episode_and_forecasts_and_boards_show(
    settings: Settings, db: asyncpg.Connection
) -> None:
    prefix = settings.kafka.topic_prefix
    ward_c, ward_d, x, y = await two_wards(db, prefix)
    station, other, bin_id = f"{prefix}-c1", f"{prefix}-d1", f"{prefix}-bin"
    site = f"{prefix}-site"
    await registry.register(
        db,
        [
            registry.SensorRecord(station, "air", y + 0.05, x + 0.05, "Trạm C"),
            registry.SensorRecord(other, "air", y + 0.05, x + 0.15, "Trạm D"),
            registry.SensorRecord(bin_id, "waste_bin", y + 0.03, x + 0.03, "Thùng C"),
            registry.SensorRecord(site, "landfill", y + 0.07, x + 0.07, "Bãi C"),
        ],
    )
    now_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    first = now_hour - 6 * HOUR
    readings: list[Reading] = []
    derived: dict[tuple[str, datetime], dict[str, object]] = {}
    for k in range(6):
        ts = first + k * HOUR + timedelta(minutes=30)
        for sid, aqi in ((station, EPISODE_C[k]), (other, STEADY_D)):
            readings.append(Reading(sid, "air", ts, {"pm25": 10.0}, ts, "test"))
            derived[(sid, ts)] = {"vn_aqi": aqi, "vn_aqi_pollutant": "pm25"}
    last = first + 5 * HOUR + timedelta(minutes=30)
    readings.append(Reading(bin_id, "waste_bin", last, {"fill": 60.0}, last, "test"))
    readings.append(Reading(site, "landfill", last, {"ch4": 2.0}, last, "test"))
    async with db.transaction():
        await write_readings(db, readings, derived)
    await _store_forecasts(db, station, ward_c, bin_id, last, now_hour)

    async with running_api(settings) as api, chromium_page() as page:
        # The wards' forecasts, as stored, beside the past hours.
        async with api.http("viewer") as http:
            body = (await http.get("/v1/areas/history?kind=air&ahead=24")).json()
            water = (await http.get("/v1/areas/history?kind=water&ahead=24")).json()
        ahead = {datetime.fromisoformat(f["ts"]): f["areas"] for f in body["forecast"]}
        assert len(ahead) == 24
        assert ahead[now_hour + HOUR][ward_c] == {
            "value": 64,
            "band": "moderate",
            "lower": 50,
            "upper": 80,
            "method": "model",
        }
        assert ahead[now_hour + 12 * HOUR][ward_c]["band"] == "poor"
        assert ward_d not in ahead[now_hour + HOUR]
        assert water["forecast"] == []  # the forecasts are VN_AQI only

        url = f"{api.url}/map?lang=en&bbox={x - 0.02},{y - 0.02},{x + 0.22},{y + 0.12}#key="
        await page.call("Page.navigate", url=url + api.keys["viewer"])
        assert await page.wait_for(
            "window.urbanpulse && window.urbanpulse.ready && window.urbanpulse.timeline"
            ".frames.length === 24 && window.urbanpulse.drawn.sensors === 2"
        ), await page.evaluate("JSON.stringify(window.urbanpulse.error)")
        shown = f"window.__urbanpulse_debug.areaShown({orjson.dumps(ward_c).decode()})"
        assert await page.evaluate(shown) == "good"  # live: its latest VN_AQI, 30
        assert await page.evaluate("document.getElementById('tl-label').textContent") == "Live"

        # Drag through the last hours: ward C's colour follows the episode.
        seen = []
        for k in range(6):
            await _slide_to(page, 24 - 7 + k)  # frames: the 24 hours up to the current one
            seen.append(await page.evaluate(shown))
            assert await page.evaluate("window.urbanpulse.drawn.sensors") == 0
        assert seen == ["good", "good", "bad", "bad", "good", "good"]
        await _slide_to(page, 24 - 7 + 2)
        await _screenshot(page, "map-history.png")  # ward C bad at its worst hour
        d_shown = f"window.__urbanpulse_debug.areaShown({orjson.dumps(ward_d).decode()})"
        assert await page.evaluate(d_shown) == "moderate"
        await _slide_to(page, 3)  # before any reading: no data
        assert await page.evaluate(shown) == "no_data"
        # Beyond live, the wards' stored forecasts: ward C moderate, then poor; D has none.
        await _slide_to(page, 24 + 1)
        assert (await page.evaluate(shown), await page.evaluate(d_shown)) == ("moderate", "no_data")
        assert "forecast" in await page.evaluate("document.getElementById('tl-label').textContent")
        await _slide_to(page, 24 + 12)
        assert await page.evaluate(shown) == "poor"
        await _screenshot(page, "map-forecast-slider.png")
        await _slide_to(page, 24)  # back to live: the sensors again
        assert await page.wait_for("window.urbanpulse.drawn.sensors === 2")

        # A stored forecast in the air station's detail: a band per hour, the median VN_AQI.
        assert await _click_sensor(page, station)
        text = await page.wait_for(
            "(() => { const el = document.querySelector('#detail-forecast li[data-horizon=\"1\"]');"
            " return el && !el.closest('[hidden]') && el.textContent; })()"
        )
        assert text and "VN_AQI 64 Moderate" in text and "PM2.5 32.0 (25\u201340) µg/m³" in text
        strip = await page.evaluate(
            "[...document.querySelectorAll('.forecast-strip span')].map(s => s.dataset.band)"
        )
        assert strip == ["moderate"] * 6 + ["poor"] * 18
        await _screenshot(page, "map-air-forecast.png")

        # The waste layer: the bin labelled with its hours to 90 %, and its detail says when.
        await _choose_kind(page, "waste_bin")
        assert await page.wait_for(
            f"window.urbanpulse.forecasts.bins.get({orjson.dumps(bin_id).decode()})?.hours_to_90"
        ) == pytest.approx(5.0)
        assert await page.wait_for("window.urbanpulse.drawn.sensors === 1")
        assert await _click_sensor(page, bin_id)
        said = await page.wait_for(
            "document.querySelector('#detail-forecast .bin-forecast')?.textContent"
        )
        assert said and said.startswith("Reaches 90 % in 5 h")
        await _screenshot(page, "map-bin-forecast.png")

        # The landfill board: its site, methane over the first limit of the rule file.
        await _choose_kind(page, "landfill")
        row = await page.wait_for(
            f"document.querySelector('#board-sites [data-sensor-id={orjson.dumps(site).decode()}]"
            " tr[data-field=ch4]')?.outerHTML"
        )
        assert row and 'class="over"' in row and "2 % vol" in row and "≥ 1.25 · ≥ 5" in row
        card = f"#board-sites [data-sensor-id={orjson.dumps(site).decode()}]"
        assert await page.evaluate(f"document.querySelector('{card}').className") == (
            "site over_limit"  # no alert: the rule waits 5 minutes, nothing here evaluates it
        )
        assert await page.evaluate("document.getElementById('timeline').hidden")
        legend = await page.evaluate(
            "[...document.querySelectorAll('#legend-items li')].map(li => li.textContent)"
        )
        assert legend == [
            "Critical",
            "Warning",
            "Info",
            "Over a limit (no alert yet)",
            "Within limits",
            "No data yet",
        ]
        await _screenshot(page, "map-board.png")


async def _store_forecasts(
    db: asyncpg.Connection,
    station: str,
    ward: str,
    bin_id: str,
    observed: datetime,
    origin: datetime,
) -> None:
    # PM2.5 32 µg/m³ -> VN_AQI 50 + 50 / 25 x 7 = 64 (moderate) for 6 hours, then 90 -> 100 +
    # 50 / 70 x 10 = 107 (poor); stored as the forecast job stores them.
    horizons = [
        HorizonForecast(
            h, origin + h * HOUR, "model", 0.2, *((25, 32, 40) if h <= 6 else (80, 90, 99))
        )
        for h in range(1, 25)
    ]
    aqi = [(50, 64, 80) if h <= 6 else (90, 107, 120) for h in range(1, 25)]
    await store_air(db, origin, AirForecast("sensor", station, origin, horizons, aqi))
    await store_air(db, origin, AirForecast("area", ward, origin, horizons, aqi))
    await store_bins(db, origin, [BinForecast(bin_id, observed, 60.0, 6.0, 5.0)])


async def _screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    shot = await page.call("Page.captureScreenshot", format="png")
    (ARTIFACTS / name).write_bytes(base64.b64decode(shot["data"]))


async def _slide_to(page: Page, value: int) -> None:
    """Keyboard on the focused slider, as an operator would: Home, then right arrows."""
    await page.evaluate("document.getElementById('tl-slider').focus()")
    for key, code in [("Home", 36)] + [("ArrowRight", 39)] * value:
        for kind in ("rawKeyDown", "keyUp"):
            await page.call(
                "Input.dispatchKeyEvent", type=kind, key=key, code=key, windowsVirtualKeyCode=code
            )
    assert await page.wait_for(f"document.getElementById('tl-slider').value === '{value}'")


async def _choose_kind(page: Page, kind: str) -> None:
    chosen = orjson.dumps(kind).decode()
    await page.evaluate(
        f"(() => {{ const s = document.getElementById('kind'); s.value = {chosen};"
        " s.dispatchEvent(new Event('change')); })()"
    )
