"""Pure parts of the map's time slider (frames of /v1/areas/history) and facility boards."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from urbanpulse.alerts.rules import load_rules, parse_rules
from urbanpulse.api.routers.area_history import frames
from urbanpulse.api.routers.boards import board_fields, board_kinds, site_status
from urbanpulse.storage.area_history import AreaHour, hourly_worst_sql
from urbanpulse.storage.scales import SCALE_OF_KIND

DEFAULT_RULES = Path(__file__).resolve().parents[2] / "rules" / "default.yaml"
T0 = datetime(2026, 11, 29, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_frames_give_every_hour_and_each_areas_band_on_the_maps_scale() -> None:
    air = SCALE_OF_KIND["air"]
    items = [
        AreaHour("w1", T0, 150.0, 2),  # Decision 1459: 101-150 Kém (poor)
        AreaHour("w1", T0 + 2 * HOUR, 151.0, 1),  # 151-200 Xấu (bad)
        AreaHour("w2", T0 + 2 * HOUR, 50.0, 3),  # 0-50 Tốt (good)
    ]
    got = frames(air, items, T0, 3)
    assert [f["ts"] for f in got] == [T0, T0 + HOUR, T0 + 2 * HOUR]
    assert got[0]["areas"] == {"w1": {"value": 150, "band": "poor", "sensors": 2}}
    assert got[1]["areas"] == {}  # no data that hour
    assert got[2]["areas"] == {
        "w1": {"value": 151, "band": "bad", "sensors": 1},
        "w2": {"value": 50, "band": "good", "sensors": 3},
    }


def test_the_worst_water_is_the_lowest_index_and_the_worst_air_the_highest() -> None:
    assert SCALE_OF_KIND["air"].worst == "max"
    assert SCALE_OF_KIND["water"].worst == "min"  # VN_WQI: 100 is the cleanest water
    # Decision 1460: below 10 "Ô nhiễm rất nặng", 91-100 "Rất tốt".
    water = SCALE_OF_KIND["water"]
    got = frames(water, [AreaHour("w", T0, 8.0, 1), AreaHour("w", T0 + HOUR, 95.0, 1)], T0, 2)
    assert [f["areas"]["w"]["band"] for f in got] == [water.bands[0].key, water.bands[-1].key]


def test_the_rollup_and_late_hours_are_read_only_where_they_apply() -> None:
    air = SCALE_OF_KIND["air"]
    sql, params = hourly_worst_sql(air, (T0, T0), [])
    assert "readings_air_1h" not in sql and "unnest" not in sql and params == [T0, T0]
    sql, params = hourly_worst_sql(air, (T0, T0 + 5 * HOUR), [])
    assert "vn_aqi_max" in sql and "unnest" not in sql and params == [T0, T0 + 5 * HOUR]
    sql, params = hourly_worst_sql(air, (T0, T0 + 5 * HOUR), [("s1", T0 + HOUR)])
    assert "unnest($6::text[], $7::timestamptz[])" in sql
    assert params == [T0, T0 + 5 * HOUR, ["s1"], [T0 + HOUR]]
    sql, _ = hourly_worst_sql(SCALE_OF_KIND["water"], (T0, T0 + HOUR), [])
    assert "wqi_min" in sql and "min(wqi)" in sql


def test_boards_are_the_kinds_without_a_scale_that_the_rules_limit() -> None:
    assert board_kinds(load_rules(DEFAULT_RULES)) == ["landfill", "incinerator"]
    only_trucks = parse_rules(
        """
version: 1
rules:
  - {id: fast, kind: waste_truck, metric: speed, above: 80, severity: info, citation: "x"}
  - {id: silent, kind: landfill, offline_after: 30m, severity: warning, citation: "y"}
"""
    )
    # An offline rule sets no limit; an air rule is no board (air has its scale).
    assert board_kinds(only_trucks) == ["waste_truck"]


def test_board_fields_carry_the_rule_files_limits_and_citations() -> None:
    rules = load_rules(DEFAULT_RULES)
    landfill = {f["name"]: f for f in board_fields("landfill", rules)}
    assert landfill["ch4"]["unit"] == "% vol" and landfill["ch4"]["source"] == "values"
    # rules/default.yaml: 25 % of methane's LEL (5 % vol) = 1.25 % vol, and the LEL itself.
    assert [(lim["op"], lim["value"], lim["severity"]) for lim in landfill["ch4"]["limits"]] == [
        ("at_least", 1.25, "warning"),
        ("at_least", 5.0, "critical"),
    ]
    assert "40 CFR 258.23" in landfill["ch4"]["limits"][0]["citation"]
    assert landfill["co2"]["limits"] == []
    stack = {f["name"]: f for f in board_fields("incinerator", rules)}
    # Limits at the reference O2 apply to the derived *_ref values: dust 100 mg/Nm³.
    assert stack["dust_ref"]["source"] == "derived"
    assert [lim["value"] for lim in stack["dust_ref"]["limits"]] == [100.0]
    assert stack["dust"]["limits"] == []


def _site(ts: datetime | None, *severities: str) -> dict[str, Any]:
    return {"ts": ts, "alerts": [{"severity": s} for s in severities]}


def test_a_sites_status_is_its_worst_alert_else_its_latest_reading() -> None:
    over = [{"exceeded": True}, {"exceeded": None}]
    within = [{"exceeded": False}, {"exceeded": None}]
    assert site_status(_site(T0, "warning", "critical", "info"), within) == "critical"
    assert site_status(_site(T0, "info"), over) == "info"
    assert site_status(_site(T0), over) == "over_limit"
    assert site_status(_site(T0), within) == "ok"
    assert site_status(_site(None), []) == "no_data"
