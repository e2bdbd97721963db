"""How sensors are coloured on the map: one scale per kind, usable in Python and in SQL.

Air is read on VN_AQI bands, water on VN_WQI bands, waste bins on their fill level and traffic
cameras on the congestion index (``indices/congestion.py``).  Each band has a severity from 0
(best) to 5 (worst), so a cluster mixing kinds takes its worst sensor's band.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from urbanpulse.indices import congestion, vn_aqi, vn_wqi
from urbanpulse.indices.bands import Band

# Waste-bin fill level, read as a scale so bins can be coloured like the indices.
FILL_BANDS: tuple[Band, ...] = (
    Band("empty", "Còn trống", "Room left", (0, 228, 0), 0, 49),
    Band("filling", "Đang đầy", "Filling", (255, 255, 0), 50, 79),
    Band("nearly_full", "Gần đầy", "Nearly full", (255, 126, 0), 80, 89),
    Band("full", "Đầy", "Full", (255, 0, 0), 90, 100),
)
# A sensor that reports but has no index (yet), and an area or sensor with no recent reading.
NO_INDEX = Band("no_index", "Không có chỉ số", "No index", (136, 136, 136), 0, 0)
NO_DATA = Band("no_data", "Chưa có dữ liệu", "No data yet", (90, 90, 90), 0, 0)


@dataclass(frozen=True)
class Scale:
    """How one kind's sensors are coloured: which value, read on which bands."""

    kind: str
    source: str  # "derived" or "values": the sensor_latest column holding the value
    field: str
    bands: tuple[Band, ...]  # ascending by value
    # Severity of each band, 0 (best) .. 5 (worst): makes different scales comparable.
    severities: tuple[int, ...]
    # What a sensor must have reported before it has a value on this scale (vi, en).
    needs: tuple[str, str]

    @property
    def worst(self) -> str:
        """The SQL aggregate that picks the worst value: ``max`` where higher is worse."""
        return "max" if self.severities[-1] > self.severities[0] else "min"

    def band_index(self, value: float) -> int:
        for index, band in enumerate(self.bands[1:], start=1):
            if value < band.low:
                return index - 1
        return len(self.bands) - 1

    def sql_value(self, alias: str = "l") -> str:
        column = '"values"' if self.source == "values" else "derived"
        return f"({alias}.{column}->>'{self.field}')::float8"

    def sql_band_index(self, alias: str = "l") -> str:
        value = self.sql_value(alias)
        cases = " ".join(
            f"WHEN {value} < {band.low} THEN {index - 1}"
            for index, band in enumerate(self.bands[1:], start=1)
        )
        return f"CASE WHEN {value} IS NULL THEN NULL {cases} ELSE {len(self.bands) - 1} END"


MAP_SCALES: tuple[Scale, ...] = (
    Scale(
        "air",
        "derived",
        "vn_aqi",
        vn_aqi.BANDS,
        (0, 1, 2, 3, 4, 5),
        (
            "VN_AQI cần dữ liệu bụi (PM2.5/PM10) trong 2 của 3 giờ gần nhất",
            "VN_AQI needs 2 of the last 3 hours of PM data",
        ),
    ),
    Scale(
        "water",
        "derived",
        "wqi",
        vn_wqi.BANDS,
        (5, 4, 3, 2, 1, 0),
        (
            "VN_WQI cần ít nhất 3 thông số nhóm IV (DO, BOD5, COD, N-NH4…) trong một mẫu",
            "VN_WQI needs at least 3 group IV parameters (DO, BOD5, COD, N-NH4…) in one sample",
        ),
    ),
    Scale(
        "waste_bin",
        "values",
        "fill",
        FILL_BANDS,
        (0, 1, 3, 4),
        ("Cần mức đầy (fill)", "Needs a fill level"),
    ),
    Scale(
        "traffic_camera",
        "derived",
        "congestion",
        congestion.BANDS,
        (0, 1, 2, 3, 4, 5),
        (
            "Chỉ số ùn tắc cần tốc độ trung bình hoặc độ chiếm dụng",
            "The congestion index needs avg_speed or occupancy",
        ),
    ),
)
SCALE_OF_KIND: Mapping[str, Scale] = {s.kind: s for s in MAP_SCALES}
# Derived indices (vn_aqi, wqi) and the scale each is read on.
SCALE_OF_DERIVED_FIELD: Mapping[str, Scale] = {
    s.field: s for s in MAP_SCALES if s.source == "derived"
}
_KIND_CODES: dict[str, int] = {s.kind: i for i, s in enumerate(MAP_SCALES)}


def severity_code_sql(kind_alias: str = "s", latest_alias: str = "l") -> str:
    """SQL for one integer per sensor: severity*100 + scale*10 + band, NULL without an index.

    ``max()`` of it over a cluster picks the worst sensor's band, whatever its kind.
    """
    cases = " ".join(
        f"WHEN {kind_alias}.kind = '{s.kind}' THEN {_severity_sql(s, latest_alias)} * 100 "
        f"+ {_KIND_CODES[s.kind] * 10} + ({s.sql_band_index(latest_alias)})"
        for s in MAP_SCALES
    )
    return f"(CASE {cases} ELSE NULL END)"


def _severity_sql(scale: Scale, alias: str) -> str:
    whens = " ".join(f"WHEN {i} THEN {sev}" for i, sev in enumerate(scale.severities))
    return f"(CASE ({scale.sql_band_index(alias)}) {whens} END)"


def band_of_code(code: int | None) -> tuple[int, Band] | None:
    """(severity, band) from a code made by :func:`severity_code_sql`."""
    if code is None:
        return None
    scale = MAP_SCALES[(code % 100) // 10]
    return code // 100, scale.bands[code % 10]


def sensor_index(
    kind: str, values: Mapping[str, Any] | None, derived: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """The value that colours a sensor on the map, with its band and severity."""
    scale = SCALE_OF_KIND.get(kind)
    if scale is None:
        return None
    source = (derived if scale.source == "derived" else values) or {}
    value = source.get(scale.field)
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    index = scale.band_index(float(value))
    return {
        "name": scale.field,
        "value": value,
        "band": scale.bands[index].to_json(),
        "severity": scale.severities[index],
    }


def kind_legend(scale: Scale) -> list[dict[str, str]]:
    """The map's legend when it shows ``scale``: its bands, then the two ways to have none."""
    return [*(band.to_json() for band in scale.bands), NO_DATA.to_json(), NO_INDEX.to_json()]


def map_legend() -> list[dict[str, str]]:
    """One entry per colour the map paints, named by the first scale that uses it."""
    entries: dict[str, dict[str, str]] = {}
    for band in (*(band for scale in MAP_SCALES for band in scale.bands), NO_INDEX):
        entries.setdefault(band.hex, band.to_json())
    return list(entries.values())
