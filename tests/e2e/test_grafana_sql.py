"""Every SQL query of every Grafana board runs on the real TimescaleDB.

Grafana itself is not available here, so the test does what Grafana does to a panel's SQL
before it reaches PostgreSQL: the frontend replaces template variables (``$area`` becomes
``'a','b'``, or the variable's custom "All" value verbatim) and ``$__interval``; the backend
expands its macros as pkg/tsdb/grafana-postgresql-datasource/macros.go does with the
data source's ``timescaledb`` option on (``$__timeGroup`` -> ``time_bucket('300.000s',col)``).

The data come from three shipped scenarios run through the real pipeline (MQTT -> bridge ->
Kafka -> processor -> TimescaleDB) into a database of this test's own, so the boards see
exactly one city day and nothing from other tests; a second, empty database checks that a
fresh installation shows empty boards rather than errors.
"""

from __future__ import annotations

import asyncio
import io
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.e2e.conftest import isolated, running_pipeline
from urbanpulse.alerts.rules import load_rules
from urbanpulse.core.settings import Settings
from urbanpulse.data.areas import shipped_area_paths
from urbanpulse.grafana.dashboards import build_dashboards
from urbanpulse.simulators.command import REPO_SCENARIOS, run_and_check
from urbanpulse.simulators.scenario import load_scenario
from urbanpulse.stack import LocalStack
from urbanpulse.stack.services.postgres import socket_dir
from urbanpulse.storage.areas import import_areas_file
from urbanpulse.storage.db import connect
from urbanpulse.storage.schema import migrate

# Between them: air, traffic cameras, water, waste bins and trucks, and the alerts they raise.
SCENARIOS = (
    "hcmc-morning-rush",
    "hcmc-canal-flood",
    "hanoi-waste-overflow",
    "hanoi-landfill-gas",
    "hcmc-incinerator-upset",
)
INTERVAL = "5m"  # what Grafana would put in $__interval for a two-day range on a wall screen


# --------------------------------------------------------------------------- Grafana's part


@dataclass(frozen=True)
class Query:
    board: str
    title: str
    sql: str


def board_queries(boards: dict[str, dict[str, Any]]) -> Iterator[Query]:
    """Every panel target and every query variable of every board."""
    for uid, board in boards.items():
        for panel in board["panels"]:
            for inner in [panel, *panel.get("panels", [])]:
                for target in inner.get("targets", []):
                    yield Query(uid, inner["title"], target["rawSql"])
        for variable in board["templating"]["list"]:
            if variable["type"] == "query":
                yield Query(uid, f"variable ${variable['name']}", variable["query"])


def interpolate(
    sql: str, board: dict[str, Any], chosen: dict[str, list[str]], start: datetime, end: datetime
) -> str:
    """The SQL PostgreSQL receives from Grafana for this board, choice of values and range."""
    all_values = {v["name"]: v.get("allValue") for v in board["templating"]["list"]}

    def variable(match: re.Match[str]) -> str:
        name = match[1]
        if name == "__interval":
            return INTERVAL
        values = chosen.get(name)
        if values is None:  # "All": the custom all value, inserted verbatim
            value = all_values[name]
            assert value, f"variable {name} has no custom all value"
            return str(value)
        return ",".join("'" + v.replace("'", "''") + "'" for v in values)

    sql = re.sub(r"\$(\w+)\b(?!\()", variable, sql)
    return expand_macros(sql, start, end)


def expand_macros(sql: str, start: datetime, end: datetime) -> str:
    def stamp(moment: datetime) -> str:
        return "'" + moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") + "'"

    def time_group(args: list[str]) -> str:
        seconds = parse_interval(args[1].strip("'"))
        return f"time_bucket('{seconds:.3f}s',{args[0]})"

    def macro(match: re.Match[str]) -> str:
        name, args = match[1], [a.strip() for a in match[2].split(",")]
        expansions = {
            "__timeFilter": lambda: f"{args[0]} BETWEEN {stamp(start)} AND {stamp(end)}",
            "__timeFrom": lambda: stamp(start),
            "__timeTo": lambda: stamp(end),
            "__timeGroup": lambda: time_group(args),
            "__timeGroupAlias": lambda: time_group(args) + ' AS "time"',
        }
        assert name in expansions, f"macro ${name} is not one the test knows"
        return expansions[name]()

    return re.sub(r"\$(\w+)\(([^)]*)\)", macro, sql)


def parse_interval(text: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(ms|s|m|h|d)", text).groups()  # type: ignore[union-attr]
    return int(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def test_the_expansion_matches_grafanas_for_the_documented_examples() -> None:
    start, end = (
        datetime(2017, 7, 18, 11, 15, 52, tzinfo=UTC),
        datetime(2017, 7, 18, 11, 25, 52, tzinfo=UTC),
    )
    assert expand_macros("$__timeFilter(ts)", start, end) == (
        "ts BETWEEN '2017-07-18T11:15:52Z' AND '2017-07-18T11:25:52Z'"
    )
    assert expand_macros("$__timeGroupAlias(ts, 5m)", start, end) == (
        "time_bucket('300.000s',ts) AS \"time\""
    )
    board = {"templating": {"list": [{"name": "area", "allValue": "'__all'"}]}}
    assert interpolate("IN ($area)", board, {"area": ["a", "o'b"]}, start, end) == "IN ('a','o''b')"
    assert interpolate("IN ($area)", board, {}, start, end) == "IN ('__all')"


# --------------------------------------------------------------------------- databases


async def create_database(stack: LocalStack, settings: Settings, name: str) -> Settings:
    """A new, migrated database on the session's server, owned by the platform's user.

    Creating a database and the PostGIS / TimescaleDB extensions needs the superuser, which the
    local stack reaches over its Unix socket.
    """
    socket = str(socket_dir(stack.data_dir.resolve()))
    port = settings.database.port
    admin = await asyncpg.connect(host=socket, port=port, user="postgres", database="postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}" OWNER "{settings.database.user}"')
    finally:
        await admin.close()
    admin = await asyncpg.connect(host=socket, port=port, user="postgres", database=name)
    try:
        await admin.execute("CREATE EXTENSION postgis; CREATE EXTENSION timescaledb;")
    finally:
        await admin.close()
    own = settings.model_copy(
        update={"database": settings.database.model_copy(update={"name": name})}
    )
    conn = await connect(own.database)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return own


async def drop_database(stack: LocalStack, settings: Settings) -> None:
    socket = str(socket_dir(stack.data_dir.resolve()))
    admin = await asyncpg.connect(
        host=socket, port=settings.database.port, user="postgres", database="postgres"
    )
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{settings.database.name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="module")
async def city_day(local_stack: LocalStack) -> AsyncIterator[Settings]:
    """A database filled by three shipped scenarios through the real pipeline, with one
    alert acknowledged by an operator through the API."""
    name = f"t{uuid.uuid4().hex[:10]}"
    settings = await create_database(local_stack, isolated(local_stack.settings, name), name)
    try:
        # The scenarios import the shipped areas when missing; do it once, before they run
        # side by side, so that they do not race to import the same areas.
        conn = await connect(settings.database)
        try:
            for path in shipped_area_paths():
                await import_areas_file(conn, path)
        finally:
            await conn.close()
        async with running_pipeline(settings) as pipeline:
            reports = await asyncio.gather(
                *(
                    run_and_check(
                        settings,
                        load_scenario(REPO_SCENARIOS / f"{scenario}.yaml"),
                        asyncio.Event(),
                        check=True,
                        check_timeout_s=120.0,
                        progress_stream=io.StringIO(),
                    )
                    for scenario in SCENARIOS
                )
            )
            for report in reports:
                distinct = len(report.summary.keys)
                assert f"stored {distinct} of {distinct}" in report.text, report.text
            conn = await connect(settings.database)
            try:
                alert_id = await conn.fetchval(
                    "SELECT alert_id FROM alerts WHERE state = 'open' ORDER BY alert_id LIMIT 1"
                )
            finally:
                await conn.close()
            assert alert_id, "the scenarios raise alerts"
            async with pipeline.http() as http:
                answer = await http.post(
                    f"/v1/alerts/{alert_id}/acknowledge", json={"note": "crew on the way"}
                )
            assert answer.status_code == 200, answer.text
        yield settings
    finally:
        await drop_database(local_stack, settings)


@pytest.fixture(scope="module")
async def empty_database(local_stack: LocalStack) -> AsyncIterator[Settings]:
    name = f"t{uuid.uuid4().hex[:10]}"
    settings = await create_database(local_stack, local_stack.settings, name)
    yield settings
    await drop_database(local_stack, settings)


@pytest.fixture(scope="module")
def boards() -> dict[str, dict[str, Any]]:
    return build_dashboards(load_rules(Settings().alerts.rules_path))


async def run_all(
    settings: Settings,
    boards: dict[str, dict[str, Any]],
    chosen: dict[str, list[str]],
    start: datetime,
    end: datetime,
) -> dict[Query, list[asyncpg.Record]]:
    conn = await connect(settings.database)
    try:
        results = {}
        for query in board_queries(boards):
            sql = interpolate(query.sql, boards[query.board], chosen, start, end)
            try:
                results[query] = await conn.fetch(sql)
            except asyncpg.PostgresError as exc:
                pytest.fail(f"{query.board} / {query.title}: {exc}\n{sql}")
        return results
    finally:
        await conn.close()


# --------------------------------------------------------------------------- the tests


async def test_every_panel_shows_data_of_a_city_day(
    city_day: Settings, boards: dict[str, dict[str, Any]]
) -> None:
    end = datetime.now(UTC)
    results = await run_all(city_day, boards, {}, end - timedelta(days=2), end)
    assert len(results) >= 6 * 8
    for query, rows in results.items():
        assert rows, f"{query.board} / {query.title} returned no rows"
        values = [v for row in rows for key, v in row.items() if key != "time"]
        assert any(v is not None for v in values), f"{query.board} / {query.title}: all NULL"
    by_title = {(q.board, q.title): rows for q, rows in results.items()}
    # The one alert the fixture acknowledged, through the API, shows as acknowledged.
    acknowledged = by_title[("urbanpulse-alerts", "Đã tiếp nhận / Acknowledged")]
    assert acknowledged[0]["acknowledged"] == 1


async def test_the_variables_narrow_what_the_boards_show(
    city_day: Settings, boards: dict[str, dict[str, Any]]
) -> None:
    conn = await connect(city_day.database)
    try:
        ward, in_ward = await conn.fetchrow(
            "SELECT area_id, count(*) FROM sensors WHERE status = 'active' AND area_id IS NOT NULL "
            "GROUP BY area_id ORDER BY count(*) DESC, area_id LIMIT 1"
        )
        province, in_province = await conn.fetchrow(
            "SELECT a.area_id, count(*) FROM areas a JOIN areas w ON w.parent_id = a.area_id "
            "JOIN sensors s ON s.area_id = w.area_id WHERE s.status = 'active' "
            "GROUP BY a.area_id ORDER BY count(*) DESC LIMIT 1"
        )
        water = await conn.fetchval(
            "SELECT count(*) FROM sensors WHERE status = 'active' AND kind = 'water'"
        )
        two_sensors = [
            r["sensor_id"]
            for r in await conn.fetch("SELECT sensor_id FROM sensors ORDER BY sensor_id LIMIT 2")
        ]
    finally:
        await conn.close()
    end = datetime.now(UTC)
    start = end - timedelta(days=2)
    registered = ("urbanpulse-overview", "Cảm biến đăng ký / Sensors registered")

    async def registered_count(chosen: dict[str, list[str]]) -> int:
        results = await run_all(city_day, boards, chosen, start, end)
        rows = {(q.board, q.title): r for q, r in results.items()}[registered]
        return int(rows[0]["registered"])

    assert await registered_count({"area": [ward]}) == in_ward
    # A province holds its wards' sensors (the area filter walks down the area tree).
    assert await registered_count({"area": [province]}) >= in_province > 0
    assert await registered_count({"sensor": two_sensors}) == 2
    assert await registered_count({"kind": ["water"]}) == water > 0


async def test_every_panel_runs_on_an_empty_database(
    empty_database: Settings, boards: dict[str, dict[str, Any]]
) -> None:
    end = datetime.now(UTC)
    start = end - timedelta(hours=6)
    await run_all(empty_database, boards, {}, start, end)
    chosen = {"area": ["nowhere"], "kind": ["air", "water"], "sensor": ["none-0001"]}
    results = await run_all(empty_database, boards, chosen, start, end)
    assert results
