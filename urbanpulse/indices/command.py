"""``urbanpulse index aqi|wqi``: recompute a station's published indices from its raw figures.

Meant for an environment officer checking a figure by hand: it reads hourly means (aqi) or
water samples (wqi) as CSV or JSON, and writes one JSON object per input row, with every
sub-index shown so that a disagreement can be traced to its pollutant.  Bad input is reported
on stderr with its row and column, exit code 2.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from urbanpulse.core.settings import Settings
from urbanpulse.indices import vn_aqi, vn_wqi
from urbanpulse.indices.bands import AqiResult
from urbanpulse.indices.us_aqi import inputs_for_day, inputs_for_hour, us_aqi

VIETNAM = timezone(timedelta(hours=7))
HOUR = timedelta(hours=1)
WQI_LABELS = ("sample", "station", "ts")  # echoed back, not scored

EPILOG = """\
examples:
  urbanpulse index aqi station-042-hourly.csv
  urbanpulse index aqi --us --format json < hours.json
  urbanpulse index wqi --combination geometric_sqrt samples.csv

aqi input: one row per hour, columns 'hour' (ISO 8601 with offset, e.g.
2025-03-01T08:00:00+07:00) and any of pm25, pm10, o3, co, so2, no2 (hourly means, µg/m³);
an empty cell or null is a missing hour.  Output: per hour the VN_AQI (NowCast over the
preceding 12 hours of the input), then per complete day (Vietnam time) the daily VN_AQI.
wqi input: one row per sample with any of ph, do, temperature, bod5, cod, nh4_n, po4_p,
coliform (also toc, no3_n, no2_n, e_coli, turbidity, conductivity; labels sample, station, ts).

"""


class InputError(Exception):
    """Bad input, reported to the user with its row and column."""


@dataclass(frozen=True)
class Row:
    where: str  # "row 3 (line 4)" for CSV, "row 3" for JSON
    cells: Mapping[str, Any]


def add_index_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``urbanpulse index aqi|wqi [FILE]``; the handler is :func:`run_index`."""
    text = "Compute VN_AQI / VN_WQI (and the US AQI) from a file of measurements."
    index = subparsers.add_parser(
        "index", help=text, description=text, epilog=EPILOG, formatter_class=_Help
    )
    # aqi and wqi are sub-commands rather than a choice so that FILE may follow the options
    # (argparse cannot place an optional positional after options otherwise).
    which = index.add_subparsers(dest="which", required=True, metavar="{aqi,wqi}")
    aqi = which.add_parser("aqi", help="air: hourly and daily VN_AQI", epilog=EPILOG)
    aqi.add_argument("--us", action="store_true", help="add the US EPA AQI figures")
    wqi = which.add_parser("wqi", help="water: VN_WQI per sample", epilog=EPILOG)
    wqi.add_argument(
        "--combination",
        choices=[c.value for c in vn_wqi.Combination],
        default=vn_wqi.Combination.WEIGHTED_CUBE_ROOT.value,
        help="how groups IV and V combine (default: weighted_cube_root)",
    )
    for sub in (aqi, wqi):
        sub.formatter_class = _Help
        sub.add_argument("file", nargs="?", metavar="FILE", help="input; '-' or none: stdin")
        sub.add_argument(
            "--format", choices=["csv", "json"], help="default: from FILE's name, else sniffed"
        )
    index.set_defaults(handler=run_index)


class _Help(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's examples on their own lines."""


def run_index(_settings: Settings, args: argparse.Namespace) -> int:
    try:
        text, name = _read(args.file)
        rows = _parse(text, args.format or _guess_format(name, text))
        if args.which == "aqi":
            output = aqi_report(rows, with_us=args.us)
        else:
            output = wqi_report(rows, vn_wqi.Combination(args.combination))
    except InputError as exc:
        sys.stderr.write(f"urbanpulse index: error: {exc}\n")
        return 2
    sys.stdout.write(json.dumps(output, ensure_ascii=False, indent=2) + "\n")
    return 0


# --- reading --------------------------------------------------------------------------------


def _read(file: str | None) -> tuple[str, str]:
    if file in (None, "-"):
        return sys.stdin.read(), ""
    try:
        return Path(file).read_text(encoding="utf-8-sig"), file
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {file}: {exc}") from None


def _guess_format(name: str, text: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix in (".csv", ".json"):
        return suffix[1:]
    return "json" if text.lstrip()[:1] in ("[", "{") else "csv"


def _parse(text: str, fmt: str) -> list[Row]:
    if not text.strip():
        raise InputError("the input is empty")
    return list(_csv_rows(text) if fmt == "csv" else _json_rows(text))


def _csv_rows(text: str) -> Iterator[Row]:
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header = [name.strip().lower() for name in next(reader)]
    for number, cells in enumerate(reader, start=1):
        where = f"row {number} (line {reader.line_num})"
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) > len(header):
            raise InputError(f"{where}: {len(cells)} cells but the header has {len(header)}")
        yield Row(where, dict(zip(header, cells, strict=False)))


def _json_rows(text: str) -> Iterator[Row]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc}") from None
    if not isinstance(data, list):
        raise InputError("JSON input must be an array of objects, one per row")
    for number, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            raise InputError(f"row {number}: expected an object, got {type(item).__name__}")
        yield Row(f"row {number}", {str(k).strip().lower(): v for k, v in item.items()})


def _check_columns(rows: list[Row], allowed: tuple[str, ...]) -> None:
    for row in rows:
        for column in row.cells:
            if column not in allowed:
                raise InputError(
                    f"{row.where}, column {column!r}: unknown column; "
                    f"expected any of {', '.join(allowed)}"
                )


def _number(row: Row, column: str, *, negative_ok: bool = False) -> float | None:
    raw = row.cells.get(column)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    try:
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise ValueError
        value = float(raw)
    except ValueError:
        raise InputError(f"{row.where}, column {column}: {raw!r} is not a number") from None
    if not math.isfinite(value) or (value < 0 and not negative_ok):
        raise InputError(f"{row.where}, column {column}: {raw!r} must be a number >= 0")
    return value


def _hour(row: Row) -> datetime:
    raw = row.cells.get("hour")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise InputError(f"{row.where}, column hour: missing timestamp")
    try:
        if not isinstance(raw, str):
            raise ValueError
        stamp = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise InputError(f"{row.where}, column hour: {raw!r} is not an ISO 8601 time") from None
    if stamp.tzinfo is None:
        raise InputError(f"{row.where}, column hour: {raw!r} needs an offset, e.g. +07:00")
    if stamp.minute or stamp.second or stamp.microsecond:
        raise InputError(f"{row.where}, column hour: {raw!r} is not on a whole hour")
    return stamp


# --- aqi ------------------------------------------------------------------------------------


def aqi_report(rows: list[Row], *, with_us: bool = False) -> list[dict[str, Any]]:
    _check_columns(rows, ("hour", *vn_aqi.POLLUTANTS))
    if rows and "hour" not in set().union(*(r.cells for r in rows)):
        raise InputError("missing column 'hour'")
    series: dict[datetime, dict[str, float | None]] = {}
    labels: dict[datetime, str] = {}
    for row in rows:
        stamp = _hour(row)
        key = stamp.astimezone(UTC)
        if key in series:
            raise InputError(f"{row.where}, column hour: {labels[key]} appears twice")
        series[key] = {p: _number(row, p) for p in vn_aqi.POLLUTANTS}
        labels[key] = stamp.isoformat()
    present = [p for p in vn_aqi.POLLUTANTS if any(v[p] is not None for v in series.values())]

    def back(hour: datetime, pollutant: str, count: int) -> list[float | None]:
        return [series.get(hour - i * HOUR, {}).get(pollutant) for i in range(count)]

    output: list[dict[str, Any]] = []
    for hour in sorted(series):
        window = {p: back(hour, p, vn_aqi.NOWCAST_HOURS) for p in present}
        item: dict[str, Any] = {"type": "hourly", "hour": labels[hour]}
        item["nowcast"] = {
            p: round(v, 1)
            for p in vn_aqi.PM
            if p in window and (v := vn_aqi.nowcast(window[p])) is not None
        }
        reason = "no PM2.5 or PM10 NowCast (it needs two of the three newest hours)"
        item.update(_aqi_fields(vn_aqi.hourly_aqi(window, require_pm=False), reason))
        if with_us:
            item["us"] = _us_fields(us_aqi(inputs_for_hour(window)))
        output.append(item)
    output.extend(_daily_items(series, present, with_us))
    return output


def _daily_items(
    series: Mapping[datetime, Mapping[str, float | None]], present: list[str], with_us: bool
) -> list[dict[str, Any]]:
    if not series:
        return []
    first, last = min(series), max(series)
    output = []
    for day in sorted({h.astimezone(VIETNAM).date() for h in series}):
        start = datetime(day.year, day.month, day.day, tzinfo=VIETNAM).astimezone(UTC)
        if first > start or last < start + 23 * HOUR:
            continue  # only complete days: the input must span 00:00 to 23:00 Vietnam time
        hours = [start + i * HOUR for i in range(24)]
        day_series = {p: [series.get(h, {}).get(p) for h in hours] for p in present}
        item: dict[str, Any] = {"type": "daily", "date": day.isoformat(), "utc_offset": "+07:00"}
        item["hours_with_data"] = {p: sum(v is not None for v in day_series[p]) for p in present}
        reason = f"needs PM2.5 or PM10 on at least {vn_aqi.DAILY_MIN_HOURS} hours"
        item.update(_aqi_fields(vn_aqi.daily_aqi(day_series, require_pm=False), reason))
        if with_us:
            item["us"] = _us_fields(us_aqi(inputs_for_day(day_series)))
        output.append(item)
    return output


def _aqi_fields(result: AqiResult | None, reason: str) -> dict[str, Any]:
    """The VN_AQI fields; gas sub-indices are shown even when, lacking PM, no AQI is."""
    if result is None or not any(p in result.sub_indices for p in vn_aqi.PM):
        subs = result.sub_indices if result else {}
        return {"sub_indices": subs, "aqi": None, "dominant": None, "band": None, "reason": reason}
    return {
        "sub_indices": result.sub_indices,
        "aqi": result.value,
        "dominant": result.dominant,
        "band": result.band.to_json(),
    }


def _us_fields(result: AqiResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {
        "aqi": result.value,
        "dominant": result.dominant,
        "band": result.band.to_json(),
        "sub_indices": result.sub_indices,
    }


# --- wqi ------------------------------------------------------------------------------------


def wqi_report(rows: list[Row], combination: vn_wqi.Combination) -> list[dict[str, Any]]:
    metrics = (*vn_wqi.INPUTS, *vn_wqi.NOT_SCORED)
    _check_columns(rows, (*WQI_LABELS, *metrics))
    output: list[dict[str, Any]] = []
    for number, row in enumerate(rows, start=1):
        item: dict[str, Any] = {"row": number}
        item.update({k: str(row.cells[k]) for k in WQI_LABELS if row.cells.get(k) is not None})
        values = {
            m: v
            for m in metrics
            if (v := _number(row, m, negative_ok=m == "temperature")) is not None
        }
        result = vn_wqi.water_quality_index(values, combination)
        if result is None:
            item.update({"wqi": None, "band": None, "reason": vn_wqi.why_no_wqi(values)})
        else:
            item.update(
                {
                    "wqi": result.value,
                    "band": result.band.to_json(),
                    "sub_indices": {k: round(v, 1) for k, v in result.sub_indices.items()},
                    "parameters": list(result.parameters),
                    "combination": combination.value,
                }
            )
            if result.do_saturation_percent is not None:
                item["do_saturation_percent"] = round(result.do_saturation_percent, 1)
        output.append(item)
    return output
