"""Administrative areas as data: parse and validate GeoJSON, and locate points among areas.

Pure: no I/O.  ``urbanpulse.storage.areas`` stores what this module parses.

Vietnam has had two tiers of local government since 1 July 2025: province and ward/commune
(plus special zones), with no district level.  Older data still speaks of districts, so a level
``former_district`` may be loaded alongside; a city may also define groupings of its own.

Which area is a point in?  ``AreaIndex.locate`` answers with the *most specific* area that
contains the point (boundary included), ordered by this rule, the first difference deciding:

1. the level's tier: ``ward``, ``commune`` and ``special_zone`` (tier 0) before
   ``former_district`` and any custom level (tier 1) before ``province`` (tier 2);
2. the smaller polygon (planar area in square degrees: candidates all contain the same point,
   so they lie at the same latitude and the comparison is fair);
3. the smaller ``area_id`` (plain string order).

So a ward always wins over the district or province around it; among custom levels and former
districts the smallest polygon wins; and a point exactly on the border between two wards gets
the same answer every time, whatever the order in which the areas were loaded.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry import MultiPolygon, Polygon

from urbanpulse.core.untrusted import is_number

# Tiers of the specificity rule (see the module docstring); levels not listed get CUSTOM_TIER.
LEVEL_TIERS: Mapping[str, int] = {
    "ward": 0,
    "commune": 0,
    "special_zone": 0,
    "former_district": 1,
    "province": 2,
}
CUSTOM_TIER = 1

# Check these with ``fullmatch``: a ``$`` anchor would also match just before a trailing newline.
LEVEL_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,39}")
AREA_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
# The area id rule as a pydantic / JSON Schema ``pattern``, which is searched for: anchored.
AREA_ID_SCHEMA_PATTERN = f"^{AREA_ID_PATTERN.pattern}$"
_RESERVED_PROPERTIES = frozenset({"area_id", "id", "name", "level", "parent_id"})
# Coordinate reference systems that mean WGS 84 longitude/latitude (old GeoJSON "crs" member).
_WGS84_CRS_NAMES = frozenset(
    {"urn:ogc:def:crs:ogc:1.3:crs84", "urn:ogc:def:crs:epsg::4326", "epsg:4326", "crs84"}
)


class AreaFileError(ValueError):
    """An area file that cannot be loaded; the message names the feature and what is wrong."""


@dataclass(frozen=True)
class AreaRecord:
    area_id: str
    name: str
    level: str
    parent_id: str | None
    geometry: MultiPolygon
    properties: dict[str, Any] = field(default_factory=dict)


def normalise_level(level: str) -> str:
    """``"Former District"`` → ``"former_district"``: lower case, spaces and dashes as ``_``."""
    return re.sub(r"[\s\-]+", "_", level.strip().lower())


# --------------------------------------------------------------------------- parsing


def areas_from_geojson(
    document: Any,
    level: str | None = None,
    *,
    on_repair: Callable[[str], None] | None = None,
) -> list[AreaRecord]:
    """Areas from a GeoJSON FeatureCollection of Polygon or MultiPolygon features.

    Each feature's properties carry ``area_id`` (or ``id``; the feature's own ``id`` also
    works), ``name``, ``level`` and optionally ``parent_id``; other properties are kept.
    ``level``, when given, overrides or fills every feature's level; levels are normalised
    (``"Former District"`` → ``"former_district"``).  Coordinates must be WGS 84
    longitude/latitude.  An invalid polygon (self-intersecting, for example) is repaired with
    ``shapely.make_valid`` when that leaves a polygonal shape, and ``on_repair`` hears about it;
    otherwise, as for every other problem, ``AreaFileError`` names the feature and the fault.
    """
    if level is not None:
        level = _checked_level(level, "the level argument")
    if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
        raise AreaFileError("expected a GeoJSON FeatureCollection")
    _check_crs(document.get("crs"))
    features = document.get("features")
    if not isinstance(features, list):
        raise AreaFileError("'features' must be an array")
    areas: list[AreaRecord] = []
    seen: dict[str, int] = {}
    for index, feature in enumerate(features):
        area = _area_from_feature(index, feature, level, on_repair)
        if area.area_id in seen:
            raise AreaFileError(
                f"feature {index} ({area.area_id}): duplicate area_id, "
                f"already used by feature {seen[area.area_id]}"
            )
        seen[area.area_id] = index
        areas.append(area)
    _check_parents(areas)
    return areas


def _check_crs(crs: Any) -> None:
    if crs is None:
        return
    name = crs.get("properties", {}).get("name") if isinstance(crs, dict) else None
    if not isinstance(name, str) or name.strip().lower() not in _WGS84_CRS_NAMES:
        raise AreaFileError(
            f"the file declares the coordinate reference system {name or crs!r}; only WGS 84 "
            "longitude/latitude (EPSG:4326) is accepted: reproject the file first"
        )


def _checked_level(level: Any, where: str) -> str:
    if not isinstance(level, str) or not LEVEL_PATTERN.fullmatch(normalise_level(level)):
        raise AreaFileError(
            f"{where}: invalid or missing level {level!r} (expected e.g. 'ward', 'commune', "
            "'province', 'former_district')"
        )
    return normalise_level(level)


def _area_from_feature(
    index: int, feature: Any, level: str | None, on_repair: Callable[[str], None] | None
) -> AreaRecord:
    where = f"feature {index}"
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise AreaFileError(f"{where}: not a GeoJSON Feature")
    props = feature.get("properties")
    if not isinstance(props, dict):
        raise AreaFileError(f"{where}: missing 'properties'")
    raw_id = props.get("area_id", props.get("id", feature.get("id")))
    area_id = str(raw_id) if isinstance(raw_id, int) and not isinstance(raw_id, bool) else raw_id
    if not isinstance(area_id, str) or not AREA_ID_PATTERN.fullmatch(area_id):
        raise AreaFileError(
            f"{where}: invalid or missing area_id {raw_id!r} (letters, digits, '.', '_', ':', "
            "'-'; at most 128 characters)"
        )
    where = f"{where} ({area_id})"
    name = props.get("name")
    if not isinstance(name, str) or not name.strip():
        raise AreaFileError(f"{where}: invalid or missing name {name!r}")
    area_level = level if level is not None else _checked_level(props.get("level"), where)
    parent_id = props.get("parent_id")
    if isinstance(parent_id, int) and not isinstance(parent_id, bool):
        parent_id = str(parent_id)
    if parent_id is not None and (
        not isinstance(parent_id, str) or not AREA_ID_PATTERN.fullmatch(parent_id)
    ):
        raise AreaFileError(f"{where}: invalid parent_id {parent_id!r}")
    if parent_id == area_id:
        raise AreaFileError(f"{where}: an area cannot be its own parent")
    geometry = _geometry(where, feature.get("geometry"), on_repair)
    properties = {k: v for k, v in props.items() if k not in _RESERVED_PROPERTIES}
    return AreaRecord(area_id, name.strip(), area_level, parent_id, geometry, properties)


def _check_parents(areas: Sequence[AreaRecord]) -> None:
    """No cycles among the parents the file itself defines (others may already be stored)."""
    parents = {a.area_id: a.parent_id for a in areas}
    for index, area in enumerate(areas):
        seen = {area.area_id}
        parent = area.parent_id
        while parent is not None and parent in parents:
            if parent in seen:
                raise AreaFileError(
                    f"feature {index} ({area.area_id}): parent_id chain loops back on itself"
                )
            seen.add(parent)
            parent = parents[parent]


# --------------------------------------------------------------------------- geometry


def _geometry(where: str, geometry: Any, on_repair: Callable[[str], None] | None) -> MultiPolygon:
    if not isinstance(geometry, dict):
        raise AreaFileError(f"{where}: missing geometry")
    kind, coordinates = geometry.get("type"), geometry.get("coordinates")
    if kind == "Polygon":
        polygons = [_polygon(where, coordinates, "polygon")]
    elif kind == "MultiPolygon":
        if not isinstance(coordinates, list) or not coordinates:
            raise AreaFileError(f"{where}: a MultiPolygon needs a non-empty coordinates array")
        polygons = [_polygon(where, p, f"polygon {i}") for i, p in enumerate(coordinates)]
    else:
        raise AreaFileError(f"{where}: geometry must be a Polygon or MultiPolygon, got {kind!r}")
    shape = MultiPolygon(polygons)
    if not shape.is_valid:
        reason = shapely.is_valid_reason(shape)
        # "structure": shells are unioned and holes subtracted, so overlapping parts of a
        # MultiPolygon merge (the default "linework" method would cut their overlap out).
        repaired = _polygonal_part(
            shapely.make_valid(shape, method="structure", keep_collapsed=False)
        )
        if repaired is None:
            raise AreaFileError(f"{where}: invalid geometry that cannot be repaired ({reason})")
        if on_repair is not None:
            on_repair(f"{where}: repaired an invalid geometry ({reason})")
        shape = repaired
    if shape.is_empty or shape.area <= 0:
        raise AreaFileError(f"{where}: the geometry encloses no area")
    return shape


def _polygonal_part(geometry: Any) -> MultiPolygon | None:
    """The polygons of a repaired geometry, or None when the repair left no area at all."""
    if isinstance(geometry, Polygon):
        parts = [geometry]
    elif isinstance(geometry, MultiPolygon):
        parts = list(geometry.geoms)
    elif hasattr(geometry, "geoms"):  # a GeometryCollection: keep its polygons, drop lines
        parts = []
        for part in geometry.geoms:
            polygonal = _polygonal_part(part)
            if polygonal is not None:
                parts += list(polygonal.geoms)
    else:
        return None
    parts = [p for p in parts if not p.is_empty and p.area > 0]
    return MultiPolygon(parts) if parts else None


def _polygon(where: str, rings: Any, label: str) -> Polygon:
    if not isinstance(rings, list) or not rings:
        raise AreaFileError(f"{where}: {label} needs a non-empty array of linear rings")
    coords = [_ring(where, ring, f"{label}, ring {i}") for i, ring in enumerate(rings)]
    return Polygon(coords[0], coords[1:])


def _ring(where: str, ring: Any, label: str) -> list[tuple[float, float]]:
    if not isinstance(ring, list) or len(ring) < 4:
        raise AreaFileError(f"{where}: {label} needs at least 4 positions")
    points = [_position(where, p, f"{label}, position {i}") for i, p in enumerate(ring)]
    if points[0] != points[-1]:
        raise AreaFileError(f"{where}: {label} is not closed (first and last positions differ)")
    return points


def _position(where: str, position: Any, label: str) -> tuple[float, float]:
    if (
        not isinstance(position, list)
        or len(position) < 2
        or not all(is_number(c) and math.isfinite(c) for c in position[:3])
    ):
        raise AreaFileError(f"{where}: {label} is not a [longitude, latitude] pair of numbers")
    lon, lat = float(position[0]), float(position[1])
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        raise AreaFileError(
            f"{where}: {label} ({lon:g}, {lat:g}) is outside WGS 84 longitude/latitude range; "
            "coordinates must be EPSG:4326 [longitude, latitude] (reproject VN-2000/UTM data)"
        )
    return lon, lat


# --------------------------------------------------------------------------- locating


def level_tier(level: str) -> int:
    return LEVEL_TIERS.get(level, CUSTOM_TIER)


class AreaIndex:
    """Answers "which area is this point in?" for many points at once (see the module rule)."""

    def __init__(self, areas: Sequence[AreaRecord]) -> None:
        self.areas: tuple[AreaRecord, ...] = tuple(areas)
        geometries = [a.geometry for a in self.areas]
        self._geometries: npt.NDArray[np.object_] = np.array(geometries, dtype=object)
        shapely.prepare(self._geometries)  # prepared polygons answer point tests much faster
        self._tree = shapely.STRtree(self._geometries)
        # Position of each area in the specificity order: the smallest number wins.
        order = sorted(
            range(len(self.areas)),
            key=lambda i: (
                level_tier(self.areas[i].level),
                geometries[i].area,
                self.areas[i].area_id,
            ),
        )
        self._rank: npt.NDArray[np.int64] = np.empty(len(order), dtype=np.int64)
        self._rank[order] = np.arange(len(order), dtype=np.int64)
        # Area ids by rank, then None for "no area": indexing it with the best rank per point
        # turns ranks into answers in one step.
        self._answers: npt.NDArray[np.object_] = np.array(
            [self.areas[i].area_id for i in order] + [None], dtype=object
        )

    def __len__(self) -> int:
        return len(self.areas)

    def locate(
        self,
        lons: Sequence[float] | npt.NDArray[np.floating[Any]],
        lats: Sequence[float] | npt.NDArray[np.floating[Any]],
    ) -> list[str | None]:
        """The most specific area containing each (lon, lat) point, or None outside them all.

        Points on a boundary count as inside.  One spatial-index query for all points, one
        vectorised point-in-polygon test of the candidates (``shapely.intersects_xy`` on
        prepared polygons), then a vectorised minimum: no Python loop over points or polygons.
        Non-finite coordinates locate nowhere.
        """
        x = np.asarray(lons, dtype=np.float64)
        y = np.asarray(lats, dtype=np.float64)
        if x.shape != y.shape or x.ndim != 1:
            raise ValueError(f"lons and lats must be 1-d and equally long: {x.shape} {y.shape}")
        count = len(x)
        if count == 0 or not self.areas:
            return [None] * count
        finite = np.isfinite(x) & np.isfinite(y)
        x, y = np.where(finite, x, 0.0), np.where(finite, y, 0.0)
        # Candidates by bounding box from the tree, then the exact test on prepared polygons:
        # measured about twice as fast as the tree's own predicate on the shipped areas.
        point_idx, area_idx = self._tree.query(shapely.points(x, y))
        inside = shapely.intersects_xy(self._geometries[area_idx], x[point_idx], y[point_idx])
        point_idx, area_idx = point_idx[inside], area_idx[inside]
        none = len(self.areas)
        best = np.full(count, none, dtype=np.int64)
        np.minimum.at(best, point_idx, self._rank[area_idx])
        best[~finite] = none
        result: list[str | None] = self._answers[best].tolist()
        return result
