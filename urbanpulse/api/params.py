"""Parsing and checking of query parameters that FastAPI's types cannot express alone.

Each parser raises a 422 ``ApiError`` naming the parameter and what is wrong with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import orjson
import shapely
import shapely.geometry
from shapely.errors import ShapelyError

from urbanpulse.api.errors import bad_parameter
from urbanpulse.core.times import NO_UTC_DATE, in_utc
from urbanpulse.core.untrusted import preview

BBOX_PATTERN = r"^\s*-?[0-9.]+(\s*,\s*-?[0-9.]+){3}\s*$"
POINT_PATTERN = r"^\s*-?[0-9.]+\s*,\s*-?[0-9.]+\s*$"
MAX_POLYGON_CHARS = 100_000
MAX_POLYGON_VERTICES = 5_000


@dataclass(frozen=True)
class BBox:
    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float

    def contains(self, lon: float, lat: float) -> bool:
        return self.min_lon <= lon <= self.max_lon and self.min_lat <= lat <= self.max_lat

    def as_list(self) -> list[float]:
        return [self.min_lon, self.min_lat, self.max_lon, self.max_lat]


def _numbers(name: str, text: str, count: int) -> list[float]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != count:
        raise bad_parameter(name, f"expected {count} comma-separated numbers, got {len(parts)}")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise bad_parameter(name, f"not a number in {preview(text)}") from None
    if not all(math.isfinite(v) for v in values):
        raise bad_parameter(name, "numbers must be finite")
    return values


def _check_lon_lat(name: str, lon: float, lat: float) -> None:
    if not -180 <= lon <= 180:
        raise bad_parameter(name, f"longitude {lon:g} outside -180..180")
    if not -90 <= lat <= 90:
        raise bad_parameter(name, f"latitude {lat:g} outside -90..90")


def parse_bbox(text: str | None, name: str = "bbox") -> BBox | None:
    """``minLon,minLat,maxLon,maxLat`` in WGS 84 degrees (boxes crossing 180° unsupported)."""
    if text is None:
        return None
    min_lon, min_lat, max_lon, max_lat = _numbers(name, text, 4)
    _check_lon_lat(name, min_lon, min_lat)
    _check_lon_lat(name, max_lon, max_lat)
    if min_lon >= max_lon:
        raise bad_parameter(name, "minLon must be less than maxLon (order: minLon,minLat,...)")
    if min_lat >= max_lat:
        raise bad_parameter(name, "minLat must be less than maxLat (order: minLon,minLat,...)")
    return BBox(min_lon, min_lat, max_lon, max_lat)


def parse_point(text: str | None, name: str = "near") -> tuple[float, float] | None:
    """``lon,lat`` in WGS 84 degrees."""
    if text is None:
        return None
    lon, lat = _numbers(name, text, 2)
    _check_lon_lat(name, lon, lat)
    return lon, lat


def parse_polygon(text: str | None, name: str = "within") -> str | None:
    """A GeoJSON Polygon or MultiPolygon (WGS 84), checked; returned as GeoJSON text for SQL."""
    if text is None:
        return None
    if len(text) > MAX_POLYGON_CHARS:
        raise bad_parameter(name, f"longer than {MAX_POLYGON_CHARS} characters")
    try:
        document: Any = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise bad_parameter(name, "not valid JSON (expected a GeoJSON Polygon)") from None
    if isinstance(document, dict) and document.get("type") == "Feature":
        document = document.get("geometry")
    if not isinstance(document, dict) or document.get("type") not in {"Polygon", "MultiPolygon"}:
        raise bad_parameter(name, "expected a GeoJSON Polygon or MultiPolygon geometry")
    try:
        geometry = shapely.geometry.shape(document)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, ShapelyError):
        raise bad_parameter(name, "coordinates do not form a polygon") from None
    if geometry.is_empty:
        raise bad_parameter(name, "the polygon is empty")
    if shapely.get_num_coordinates(geometry) > MAX_POLYGON_VERTICES:
        raise bad_parameter(name, f"more than {MAX_POLYGON_VERTICES} vertices")
    coords = shapely.get_coordinates(geometry)
    if not ((abs(coords[:, 0]) <= 180).all() and (abs(coords[:, 1]) <= 90).all()):
        raise bad_parameter(name, "coordinates outside WGS 84 longitude/latitude ranges")
    if not geometry.is_valid:
        reason = shapely.is_valid_reason(geometry)
        raise bad_parameter(name, f"invalid polygon: {reason}")
    text_out: str = shapely.to_geojson(geometry)
    return text_out


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime


def utc_param(name: str, value: datetime | None) -> datetime | None:
    """A date-time parameter in UTC; a 422 without an offset, or with no date in UTC
    (``9999-12-31T23:59:59-01:00``: converting it raised OverflowError, a 500)."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise bad_parameter(name, "must include a UTC offset, e.g. 2026-01-01T00:00Z")
    utc = in_utc(value)
    if utc is None:
        raise bad_parameter(name, NO_UTC_DATE)
    return utc


def parse_time_range(
    start: datetime | None,
    end: datetime | None,
    default: timedelta,
    maximum: timedelta,
) -> TimeRange:
    """``from``/``to`` with offsets, ``from < to``, no longer than ``maximum``."""
    start, end = utc_param("from", start), utc_param("to", end)
    end = end or datetime.now(UTC)
    if start is None:
        try:
            start = end - default
        except OverflowError:  # 'to' within ``default`` of year 1
            raise bad_parameter(
                "to", f"the default range of {_human(default)} before it starts before year 1"
            ) from None
    if start >= end:
        raise bad_parameter("from", "'from' must be earlier than 'to'")
    if end - start > maximum:
        raise bad_parameter(
            "to", f"time range longer than {_human(maximum)}; narrow it or use a coarser bucket"
        )
    return TimeRange(start, end)


def _human(span: timedelta) -> str:
    if span >= timedelta(days=1):
        return f"{span.days} days"
    return f"{int(span.total_seconds() // 3600)} hours"


class Bucket(StrEnum):
    MINUTE = "1m"
    FIVE_MINUTES = "5m"
    HOUR = "1h"
    DAY = "1d"

    @property
    def interval(self) -> timedelta:
        return {
            "1m": timedelta(minutes=1),
            "5m": timedelta(minutes=5),
            "1h": timedelta(hours=1),
            "1d": timedelta(days=1),
        }[self.value]


class Agg(StrEnum):
    AVG = "avg"
    MIN = "min"
    MAX = "max"


def split_names(text: str | None, name: str, known: set[str]) -> list[str] | None:
    """A comma-separated list of names, each of them known."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise bad_parameter(name, "empty list")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise bad_parameter(name, f"unknown {unknown[0]!r}; known: {', '.join(sorted(known))}")
    return names
