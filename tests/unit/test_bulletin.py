"""The daily bulletin of a small known day, checked against values computed by hand.

The day (shared with the e2e test through ``KNOWN_DAY``): three air stations and one water probe
in two wards; arithmetic in the comments, breakpoints from Decisions 1459 and 1460.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from urbanpulse.alerts.rules import load_rules
from urbanpulse.bulletin.compute import StationDay, compute_bulletin
from urbanpulse.bulletin.render import csv_text, html_page
from urbanpulse.commands import CommandError
from urbanpulse.commands.bulletin import parse_day

DEFAULT = Path(__file__).resolve().parents[2] / "rules" / "default.yaml"
DAY = date(2026, 11, 20)
W1, W2 = "vn-hcm-ward-ben-thanh", "vn-hcm-ward-tan-dinh"

Series = list[float | None]


def day_of(**hours: float | None) -> Series:
    """24 hourly values: ``h7=250`` sets hour 7; ``rest`` fills the others (None: no data)."""
    rest = hours.pop("rest", None)
    return [hours.get(f"h{h}", rest) for h in range(24)]


# a1 (ward W1), all 24 hours:
#   PM2.5 40 for 20 hours and 100 at 06-09: mean (20*40 + 4*100)/24 = 1200/24 = 50 -> index 100
#   PM10 100 all day: mean 100 -> 50 + (100-50)/(150-50)*(100-50) = 75
#   NO2 50, 250 at 07 and 08: day's max 1-h mean 250 -> 100 + (250-200)/(700-200)*50 = 105
#   daily VN_AQI 105 (NO2), band "Kém" (101-150)
# a3 (ward W1), all 24 hours:
#   PM2.5 30: 50 + (30-25)/(50-25)*50 = 60;  NO2 40, 300 at 08 and 18: 100 + 100/500*50 = 110
#   daily VN_AQI 110 (NO2)
# a2 (ward W2), hours 00-17 only (18 hours, the decision's minimum for a daily PM figure):
#   PM2.5 20: 20/25*50 = 40 -> VN_AQI 40 "Tốt", completeness 18/24 = 0.75
# w1 (ward W2), hours 00-11 (completeness 12/24 = 0.5):
#   BOD5 5 and 7 alternately: mean 6 -> 75;  COD 15 -> 75;  N-NH4 0.6 -> 50;  pH 7 -> 100
#   group IV mean (75+75+50)/3 = 66.67, no group V: WQI = 100/100 * 66.67 -> 67 "Trung bình"
KNOWN_DAY: list[StationDay] = [
    StationDay(
        "a1",
        "air",
        W1,
        {
            "pm25": day_of(rest=40.0, h6=100.0, h7=100.0, h8=100.0, h9=100.0),
            "pm10": day_of(rest=100.0),
            "no2": day_of(rest=50.0, h7=250.0, h8=250.0),
        },
    ),
    StationDay(
        "a3",
        "air",
        W1,
        {"pm25": day_of(rest=30.0), "no2": day_of(rest=40.0, h8=300.0, h18=300.0)},
    ),
    StationDay("a2", "air", W2, {"pm25": [20.0] * 18 + [None] * 6}),
    StationDay(
        "w1",
        "water",
        W2,
        {
            "bod5": [5.0, 7.0] * 6 + [None] * 12,
            "cod": [15.0] * 12 + [None] * 12,
            "nh4_n": [0.6] * 12 + [None] * 12,
            "ph": [7.0] * 12 + [None] * 12,
        },
    ),
]


@pytest.fixture(scope="module")
def body() -> dict[str, Any]:
    return compute_bulletin(DAY, KNOWN_DAY, list(load_rules(DEFAULT))).to_json()


def entry(body: dict[str, Any], scope: str, id_: str, kind: str = "air") -> dict[str, Any]:
    [found] = [e for e in body[scope] if e["id"] == id_ and e["kind"] == kind]
    return found


def limit(e: dict[str, Any], rule: str) -> dict[str, Any]:
    [found] = [lim for lim in e["limits"] if lim["rule"] == rule]
    return found


def test_daily_aqi_band_and_dominant_pollutant_by_hand(body: dict[str, Any]) -> None:
    a1 = entry(body, "stations", "a1")
    assert (a1["index"]["index"], a1["index"]["value"]) == ("vn_aqi", 105)
    assert (a1["index"]["dominant"], a1["index"]["band"]["name_vi"]) == ("no2", "Kém")
    assert entry(body, "stations", "a3")["index"]["value"] == 110
    a2 = entry(body, "stations", "a2")
    assert (a2["index"]["value"], a2["index"]["dominant"]) == (40, "pm25")
    assert a2["index"]["band"]["name_en"] == "Good"


def test_hours_above_each_qcvn_limit_by_hand(body: dict[str, Any]) -> None:
    a1 = entry(body, "stations", "a1")
    # NO2 1-h limit 200: hours 07 and 08.  PM2.5 daily limit 45: hourly means above it at
    # 06-09 (4 hours) and the day's mean 50 > 45.  PM10 100 is not *above* 100.
    assert (limit(a1, "no2-1h-qcvn")["limit"], limit(a1, "no2-1h-qcvn")["hours"]) == (200, [7, 8])
    pm25 = limit(a1, "pm25-24h-qcvn")
    assert (pm25["limit"], pm25["hours_above"], pm25["daily_mean"], pm25["exceeded"]) == (
        45,
        4,
        50.0,
        True,
    )
    pm10 = limit(a1, "pm10-24h-qcvn")
    assert (pm10["hours_above"], pm10["daily_mean"], pm10["exceeded"]) == (0, 100.0, False)
    assert limit(a1, "so2-1h-qcvn")["hours_above"] == 0  # no SO2 data at all
    # a2 has no PM10: no daily mean, no verdict.
    assert limit(entry(body, "stations", "a2"), "pm10-24h-qcvn")["exceeded"] is None
    assert {lim["rule"] for lim in a1["limits"]} == {
        "pm25-24h-qcvn",
        "pm10-24h-qcvn",
        "no2-1h-qcvn",
        "so2-1h-qcvn",
        "o3-1h-qcvn",
        "co-1h-qcvn",
    }


def test_completeness_by_hand(body: dict[str, Any]) -> None:
    assert entry(body, "stations", "a1")["completeness"] == 1.0  # 24/24
    a2 = entry(body, "stations", "a2")
    assert (a2["hours_with_data"], a2["completeness"]) == (18, 0.75)  # 18/24
    assert entry(body, "stations", "w1", "water")["completeness"] == 0.5  # 12/24


def test_water_quality_index_of_the_days_means_by_hand(body: dict[str, Any]) -> None:
    w1 = entry(body, "stations", "w1", "water")
    assert (w1["index"]["index"], w1["index"]["value"]) == ("wqi", 67)
    assert w1["index"]["band"]["name_vi"] == "Trung bình"
    assert w1["limits"] == []


def test_wards_take_the_worst_station_and_the_union_of_hours(body: dict[str, Any]) -> None:
    w1 = entry(body, "wards", W1)
    assert (w1["index"]["value"], w1["stations"]) == (110, ["a1", "a3"])  # a3's 110 > a1's 105
    # NO2 above 200 at 07, 08 (a1) and 08, 18 (a3): hours 07, 08, 18.
    assert limit(w1, "no2-1h-qcvn")["hours"] == [7, 8, 18]
    assert limit(w1, "pm25-24h-qcvn")["exceeded"] is True  # a1's mean 50 > 45
    assert w1["completeness"] == 1.0
    w2_air = entry(body, "wards", W2)
    assert (w2_air["index"]["value"], w2_air["hours_with_data"]) == (40, 18)
    assert entry(body, "wards", W2, "water")["index"]["value"] == 67


def test_too_few_hours_give_no_daily_aqi() -> None:
    # 17 hours of PM2.5: under the 18 the decision requires for a daily mean.
    short = StationDay("a9", "air", W1, {"pm25": [20.0] * 17 + [None] * 7})
    [a9] = compute_bulletin(DAY, [short], list(load_rules(DEFAULT))).to_json()["stations"]
    assert a9["index"] is None and a9["hours_with_data"] == 17


def test_csv_and_printable_page(body: dict[str, Any]) -> None:
    rows = list(csv.DictReader(io.StringIO(csv_text(body))))
    assert len(rows) == 4 + 3  # four stations, three (ward, kind) lines
    a1 = next(r for r in rows if r["id"] == "a1")
    assert (a1["value"], a1["band"], a1["dominant"], a1["completeness"]) == (
        "105",
        "poor",
        "no2",
        "1.0",
    )
    assert "no2-1h-qcvn:2" in a1["limits"] and "pm25-24h-qcvn:4" in a1["limits"]
    vi, en = html_page(body, "vi"), html_page(body, "en")
    assert "Bản tin chất lượng môi trường ngày 2026-11-20" in vi and "@media print" in vi
    assert "Daily environmental quality bulletin 2026-11-20" in en
    assert "no2 &gt; 200: 2 h" in en and "18/24" in en


def test_the_command_names_a_bad_date() -> None:
    with pytest.raises(CommandError, match="neither 'run' nor a date YYYY-MM-DD"):
        parse_day("2026-13-01")
    with pytest.raises(CommandError, match="0001-01-01 is before 1970-01-01"):
        parse_day("0001-01-01")
    with pytest.raises(CommandError, match="9999-12-31 has not begun yet"):
        parse_day("9999-12-31")
    assert parse_day("2026-11-20") == DAY
