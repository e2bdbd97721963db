"""The bulletin as CSV text and as a printable HTML page (Vietnamese or English)."""

from __future__ import annotations

import csv
import io
from html import escape
from typing import Any

from urbanpulse.bulletin.compute import CSV_HEADER

LANGS = ("vi", "en")

TEXT: dict[str, dict[str, str]] = {
    "vi": {
        "title": "Bản tin chất lượng môi trường ngày",
        "wards": "Theo phường",
        "stations": "Theo trạm",
        "id": "Mã",
        "kind": "Loại",
        "area": "Khu vực",
        "index": "Chỉ số",
        "band": "Mức",
        "dominant": "Chất ô nhiễm chính",
        "limits": "Số giờ vượt quy chuẩn (QCVN 05:2023/BTNMT)",
        "complete": "Đủ dữ liệu",
        "none": "không đủ dữ liệu",
        "note": "VN_AQI ngày theo Quyết định 1459/QĐ-TCMT; VN_WQI theo Quyết định 1460/QĐ-TCMT "
        "từ giá trị trung bình ngày. Phường: trạm xấu nhất.",
    },
    "en": {
        "title": "Daily environmental quality bulletin",
        "wards": "By ward",
        "stations": "By station",
        "id": "Id",
        "kind": "Kind",
        "area": "Area",
        "index": "Index",
        "band": "Band",
        "dominant": "Dominant pollutant",
        "limits": "Hours above the limits (QCVN 05:2023/BTNMT)",
        "complete": "Completeness",
        "none": "not enough data",
        "note": "Daily VN_AQI per Decision 1459/QĐ-TCMT; VN_WQI per Decision 1460/QĐ-TCMT "
        "from the day's means. Wards: the worst station.",
    },
}

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #111; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 1.5rem; }
table { border-collapse: collapse; width: 100%; font-size: 0.85rem; }
th, td { border: 1px solid #999; padding: 0.25rem 0.4rem; text-align: left; }
.swatch { display: inline-block; width: 0.8rem; height: 0.8rem; border: 1px solid #555;
          vertical-align: middle; margin-right: 0.3rem;
          -webkit-print-color-adjust: exact; print-color-adjust: exact; }
.note { font-size: 0.8rem; color: #444; }
@media print {
  body { margin: 0; } a { color: inherit; text-decoration: none; }
  table { page-break-inside: auto; } tr { page-break-inside: avoid; }
  @page { size: A4 landscape; margin: 12mm; }
}
"""


def csv_text(body: dict[str, Any]) -> str:
    """The bulletin JSON (as stored or computed) as CSV: one row per station and ward."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for entry in [*body["stations"], *body["wards"]]:
        index = entry["index"] or {}
        band = index.get("band") or {}
        writer.writerow(
            [
                body["date"],
                entry["scope"],
                entry["id"],
                entry["kind"],
                entry["area_id"] or "",
                index.get("index", ""),
                index.get("value", ""),
                band.get("key", ""),
                index.get("dominant") or "",
                entry["hours_with_data"],
                entry["completeness"],
                ";".join(f"{lim['rule']}:{lim['hours_above']}" for lim in entry["limits"]),
            ]
        )
    return out.getvalue()


def html_page(body: dict[str, Any], lang: str) -> str:
    t = TEXT[lang]
    sections = "".join(
        f"<h2>{t[scope]}</h2>{_table(body[scope], t, lang)}" for scope in ("wards", "stations")
    )
    return (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        f"<title>{t['title']} {escape(body['date'])}</title><style>{STYLE}</style></head>"
        f"<body><h1>{t['title']} {escape(body['date'])}</h1>{sections}"
        f'<p class="note">{t["note"]}</p></body></html>'
    )


def _table(entries: list[dict[str, Any]], t: dict[str, str], lang: str) -> str:
    head = "".join(
        f"<th>{t[k]}</th>"
        for k in ("id", "kind", "area", "index", "band", "dominant", "limits", "complete")
    )
    rows = "".join(_row(e, t, lang) for e in entries)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _row(entry: dict[str, Any], t: dict[str, str], lang: str) -> str:
    index = entry["index"]
    if index is None:
        value, band, dominant = t["none"], "", ""
    else:
        b = index["band"]
        value = f"{escape(index['index'])} {index['value']}"
        band = (
            f'<span class="swatch" style="background:{escape(b["color"])}"></span>'
            f"{escape(b['name_' + lang])}"
        )
        dominant = escape(index["dominant"] or "")
    limits = ", ".join(
        f"{escape(lim['metric'])} &gt; {lim['limit']:g}: {lim['hours_above']} h"
        for lim in entry["limits"]
        if lim["hours_above"]
    )
    cells = [
        escape(entry["id"]),
        escape(entry["kind"]),
        escape(entry["area_id"] or ""),
        value,
        band,
        dominant,
        limits or "0",
        f"{entry['hours_with_data']}/24",
    ]
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
