"""``urbanpulse index aqi|wqi``: files and stdin, CSV and JSON, and every bad-input message."""

from __future__ import annotations

import argparse
import io
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from urbanpulse.core.settings import Settings
from urbanpulse.indices.command import add_index_parser

VIETNAM = timezone(timedelta(hours=7))


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="urbanpulse")
    add_index_parser(root.add_subparsers(dest="command", required=True))
    return root


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any, str]:
    args = parser().parse_args(argv)
    code = args.handler(Settings(), args)
    out, err = capsys.readouterr()
    return code, json.loads(out) if code == 0 else out, err


def hourly_rows(start: datetime, hours: int) -> list[dict[str, Any]]:
    return [
        {"hour": (start + timedelta(hours=i)).isoformat(), "pm25": 40.0, "no2": 250.0}
        for i in range(hours)
    ]


def as_csv(rows: list[dict[str, Any]]) -> str:
    columns = list(rows[0])
    lines = [",".join(columns)] + [",".join(str(r[c]) for c in columns) for r in rows]
    return "\n".join(lines) + "\n"


def test_help_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["index", "--help"], ["index", "aqi", "--help"], ["index", "wqi", "--help"]):
        with pytest.raises(SystemExit) as exit_info:
            parser().parse_args(argv)
        assert exit_info.value.code == 0
        assert "urbanpulse index aqi station-042-hourly.csv" in capsys.readouterr().out


def test_aqi_from_a_csv_file_with_a_complete_day(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 22:00 on 1 March to 01:00 on 3 March, Vietnam time: 2 March is the one complete day.
    rows = hourly_rows(datetime(2025, 3, 1, 22, tzinfo=VIETNAM), 28)
    path = tmp_path / "station.csv"
    path.write_text(as_csv(rows), encoding="utf-8")
    code, output, _ = run(["index", "aqi", str(path)], capsys)
    assert code == 0
    hourly = [o for o in output if o["type"] == "hourly"]
    daily = [o for o in output if o["type"] == "daily"]
    assert len(hourly) == 28
    first, second = hourly[0], hourly[1]
    # One hour of PM: no NowCast, so no AQI, but the gas sub-index is shown.
    assert first["aqi"] is None and "NowCast" in first["reason"]
    assert first["sub_indices"] == {"no2": 105}  # 100 + 50/500*50
    # Two hours: NowCast 40 -> 50 + 15/25*50 = 80; NO2 105 dominates.
    assert second["nowcast"] == {"pm25": 40.0}
    assert second["sub_indices"] == {"pm25": 80, "no2": 105}
    assert (second["aqi"], second["dominant"]) == (105, "no2")
    assert second["band"] == {
        "key": "poor",
        "name_vi": "Kém",
        "name_en": "Poor",
        "color": "#ff7e00",
    }
    assert second["hour"] == "2025-03-01T23:00:00+07:00"
    assert [d["date"] for d in daily] == ["2025-03-02"]
    assert daily[0]["aqi"] == 105 and daily[0]["sub_indices"] == {"pm25": 80, "no2": 105}
    assert daily[0]["hours_with_data"] == {"pm25": 24, "no2": 24}


def test_aqi_from_json_on_stdin_with_us_figures(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = hourly_rows(datetime(2025, 3, 1, 0, tzinfo=UTC), 3)
    rows[1]["pm25"] = None  # a missing hour inside the window
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(rows)))
    code, output, _ = run(["index", "aqi", "--us", "-"], capsys)
    assert code == 0
    assert len(output) == 3  # no complete Vietnam day in three hours
    last = output[-1]
    assert last["nowcast"] == {"pm25": 40.0} and last["aqi"] == 105
    # US: PM2.5 40.0 -> 101 + 49/19.9*4.5 = 112; NO2 250 µg/m³ = 132.8 ppb -> 101 + 49/259*31
    assert last["us"]["sub_indices"] == {"pm25": 112, "no2_1h": 107}
    assert (last["us"]["aqi"], last["us"]["band"]["name_en"]) == (
        112,
        "Unhealthy for Sensitive Groups",
    )
    assert output[1]["aqi"] is None  # c1 present, c2 missing, no c3: NowCast needs two


def test_format_is_sniffed_when_the_name_does_not_say(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = hourly_rows(datetime(2025, 3, 1, 8, tzinfo=VIETNAM), 2)
    path = tmp_path / "export.txt"
    path.write_text("  " + json.dumps(rows), encoding="utf-8")
    code, output, _ = run(["index", "aqi", str(path)], capsys)
    assert code == 0 and len(output) == 2


def test_hours_may_come_in_any_order_and_with_gaps(capsys: pytest.CaptureFixture[str]) -> None:
    start = datetime(2025, 3, 1, 8, tzinfo=VIETNAM)
    rows = hourly_rows(start, 1) + hourly_rows(start + timedelta(hours=2), 1)
    rows.reverse()
    stdin_json = json.dumps(rows)
    args = parser().parse_args(["index", "aqi", "--format", "json"])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.stdin", io.StringIO(stdin_json))
        assert args.handler(Settings(), args) == 0
    output = json.loads(capsys.readouterr().out)
    assert [o["hour"] for o in output] == [r["hour"] for r in reversed(rows)]
    assert output[1]["nowcast"] == {"pm25": 40.0}  # c1 and c3 present, c2 missing


def test_wqi_from_a_csv_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "samples.csv"
    path.write_text(
        "sample,ph,do,temperature,bod5,cod,nh4_n,po4_p,coliform\n"
        "S1,7,,,5,12,0.2,0.15,3000\n"
        "S2,7,7,,5,12,,,\n",
        encoding="utf-8",
    )
    code, output, _ = run(["index", "wqi", str(path)], capsys)
    assert code == 0
    assert output[0]["sample"] == "S1" and output[0]["wqi"] == 92  # see test_vn_wqi
    assert output[0]["parameters"] == ["ph", "bod5", "cod", "nh4_n", "po4_p", "coliform"]
    assert output[0]["band"]["name_vi"] == "Rất tốt"
    assert output[1]["wqi"] is None and "at least 3 group IV" in output[1]["reason"]
    code, output, _ = run(["index", "wqi", "--combination", "geometric_sqrt", str(path)], capsys)
    assert output[0]["wqi"] == 93 and output[0]["combination"] == "geometric_sqrt"


def test_wqi_from_json_on_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = {"station": "SG-07", "do": 7.0, "temperature": 25, "bod5": 4, "cod": "10"}
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps([sample])))
    code, output, _ = run(["index", "wqi"], capsys)
    assert code == 0
    assert output[0]["wqi"] == 98 and output[0]["do_saturation_percent"] == 85.6
    assert output[0]["station"] == "SG-07"


@pytest.mark.parametrize(
    ("which", "text", "message"),
    [
        (
            "aqi",
            "hour,pm25\n2025-03-01T08:00:00+07:00,abc\n",
            "row 1 (line 2), column pm25: 'abc' is not a number",
        ),
        ("aqi", "time,pm25\n2025-03-01T08:00:00+07:00,1\n", "column 'time': unknown column"),
        ("aqi", "pm25\n10\n", "missing column 'hour'"),
        (
            "aqi",
            "hour,pm25,pm1\n2025-03-01T08:00:00+07:00,1,2\n",
            "row 1 (line 2), column 'pm1': unknown column",
        ),
        ("aqi", "hour,pm25\nyesterday,1\n", "column hour: 'yesterday' is not an ISO 8601 time"),
        ("aqi", "hour,pm25\n2025-03-01T08:00:00,1\n", "needs an offset"),
        ("aqi", "hour,pm25\n2025-03-01T08:30:00+07:00,1\n", "is not on a whole hour"),
        (
            "aqi",
            "hour,pm25\n2025-03-01T08:00:00+07:00,1\n2025-03-01T01:00:00Z,2\n",
            "row 2 (line 3), column hour: 2025-03-01T08:00:00+07:00 appears twice",
        ),
        ("aqi", "hour,pm25\n2025-03-01T08:00:00+07:00,-3\n", "'-3' must be a number >= 0"),
        ("aqi", "hour,pm25\n2025-03-01T08:00:00+07:00,nan\n", "'nan' must be a number >= 0"),
        ("aqi", "hour,pm25\n2025-03-01T08:00:00+07:00,1,2\n", "row 1 (line 2): 3 cells"),
        ("aqi", '{"hour": "2025-03-01T08:00:00+07:00"}', "must be an array of objects"),
        ("aqi", "[1, 2]", "row 1: expected an object"),
        ("aqi", "[{]", "not valid JSON"),
        ("aqi", '[{"hour": "2025-03-01T08:00:00+07:00", "pm25": true}]', "row 1, column pm25"),
        ("aqi", "   \n", "the input is empty"),
        ("aqi", '[{"hour": 1740790800}]', "row 1, column hour: 1740790800 is not an ISO 8601"),
        ("aqi", "hour,pm25\n,5\n", "row 1 (line 2), column hour: missing timestamp"),
        ("wqi", "ph,lead\n7,0.1\n", "row 1 (line 2), column 'lead': unknown column"),
        ("wqi", "ph,cod\n7,12 mg/L\n", "row 1 (line 2), column cod: '12 mg/L' is not a number"),
    ],
)
def test_bad_input_is_named_by_row_and_column(
    which: str,
    text: str,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    code, out, err = run(["index", which], capsys)
    assert code == 2
    assert out == ""
    assert message in err
    assert err.startswith("urbanpulse index: error: ") and "Traceback" not in err


def test_an_unreadable_file_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["index", "aqi", str(tmp_path / "missing.csv")], capsys)
    assert code == 2 and "cannot read" in err and "missing.csv" in err


def test_unknown_sub_command_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parser().parse_args(["index", "noise"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
