"""Parsing and validating area files, and locating points among areas."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
from shapely.geometry import MultiPolygon, Point, box

from urbanpulse.core.areas import (
    AreaFileError,
    AreaIndex,
    AreaRecord,
    areas_from_geojson,
    level_tier,
)
from urbanpulse.data.areas import generate, shipped_area_paths
from urbanpulse.simulators.fleet import CENTRAL_HCMC

# --------------------------------------------------------------------------- helpers


def square(x0: float, y0: float, size: float) -> list[list[list[float]]]:
    return [[[x0, y0], [x0 + size, y0], [x0 + size, y0 + size], [x0, y0 + size], [x0, y0]]]


def feature(
    area_id: Any = "a1",
    name: Any = "Phường Một",
    level: Any = "ward",
    geometry: Any = None,
    **extra: Any,
) -> dict[str, Any]:
    props: dict[str, Any] = {"area_id": area_id, "name": name, "level": level, **extra}
    props = {k: v for k, v in props.items() if v is not None}
    if geometry is None:
        geometry = {"type": "Polygon", "coordinates": square(106.70, 10.77, 0.01)}
    return {"type": "Feature", "properties": props, "geometry": geometry}


def collection(*features: Any) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}


def record(area_id: str, level: str, geometry: Any) -> AreaRecord:
    multi = geometry if isinstance(geometry, MultiPolygon) else MultiPolygon([geometry])
    return AreaRecord(area_id, area_id, level, None, multi, {})


def shipped_areas() -> list[AreaRecord]:
    return [
        area
        for path in shipped_area_paths()
        for area in areas_from_geojson(json.loads(path.read_text(encoding="utf-8")))
    ]


# --------------------------------------------------------------------------- parsing


def test_parses_a_feature_collection() -> None:
    doc = collection(
        feature("vn-x", "Tỉnh X", "province"),
        feature("vn-x-a", "Phường A", "ward", parent_id="vn-x", population=12000),
        {
            "type": "Feature",
            "properties": {"id": "vn-x-b", "name": "Phường B", "level": "Ward"},
            "geometry": {"type": "MultiPolygon", "coordinates": [square(106.7, 10.7, 0.01)]},
        },
    )
    areas = areas_from_geojson(doc)
    assert [a.area_id for a in areas] == ["vn-x", "vn-x-a", "vn-x-b"]
    assert [a.level for a in areas] == ["province", "ward", "ward"]
    assert areas[1].parent_id == "vn-x" and areas[0].parent_id is None
    assert areas[1].properties == {"population": 12000}
    assert areas[1].name == "Phường A"
    assert all(isinstance(a.geometry, MultiPolygon) for a in areas)


def test_a_polygon_becomes_a_multipolygon_with_its_holes() -> None:
    outer = square(106.70, 10.77, 0.04)[0]
    hole = [[106.71, 10.78], [106.71, 10.79], [106.72, 10.79], [106.72, 10.78], [106.71, 10.78]]
    [area] = areas_from_geojson(
        collection(feature(geometry={"type": "Polygon", "coordinates": [outer, hole]}))
    )
    assert area.geometry.geom_type == "MultiPolygon"
    assert len(area.geometry.geoms) == 1
    assert area.geometry.area == pytest.approx(0.04**2 - 0.01**2)
    assert not area.geometry.contains(Point(106.715, 10.785))


def test_the_level_argument_overrides_and_fills_levels() -> None:
    doc = collection(feature("a", level="province"), feature("b", level=None))
    assert [a.level for a in areas_from_geojson(doc, level="former district")] == [
        "former_district",
        "former_district",
    ]
    with pytest.raises(AreaFileError, match=r"feature 1 \(b\): invalid or missing level None"):
        areas_from_geojson(doc)


def test_numeric_ids_are_accepted_as_text() -> None:
    [area] = areas_from_geojson(collection(feature(area_id=26734, parent_id=79)))
    assert (area.area_id, area.parent_id) == ("26734", "79")


def test_an_invalid_polygon_is_repaired_when_the_repair_is_polygonal() -> None:
    bowtie = [[106.70, 10.77], [106.72, 10.79], [106.72, 10.77], [106.70, 10.79], [106.70, 10.77]]
    notes: list[str] = []
    [area] = areas_from_geojson(
        collection(feature("bow", geometry={"type": "Polygon", "coordinates": [bowtie]})),
        on_repair=notes.append,
    )
    assert area.geometry.is_valid
    assert area.geometry.geom_type == "MultiPolygon"
    assert len(area.geometry.geoms) == 2
    assert area.geometry.area == pytest.approx(2 * 0.5 * 0.02 * 0.01)
    assert len(notes) == 1 and "feature 0 (bow)" in notes[0] and "Self-intersection" in notes[0]


def test_overlapping_parts_of_a_multipolygon_are_merged() -> None:
    geometry = {
        "type": "MultiPolygon",
        "coordinates": [square(106.70, 10.77, 0.02), square(106.71, 10.78, 0.02)],
    }
    [area] = areas_from_geojson(collection(feature(geometry=geometry)))
    assert area.geometry.is_valid
    assert area.geometry.area == pytest.approx(2 * 0.02**2 - 0.01**2)


def bad(document: Any, **kwargs: Any) -> str:
    with pytest.raises(AreaFileError) as info:
        areas_from_geojson(document, **kwargs)
    return str(info.value)


GOOD = feature()


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "expected a GeoJSON FeatureCollection"),
        ({"type": "Feature"}, "expected a GeoJSON FeatureCollection"),
        ({"type": "FeatureCollection"}, "'features' must be an array"),
        (collection(GOOD, "nope"), "feature 1: not a GeoJSON Feature"),
        (collection({"type": "Feature", "geometry": None}), "feature 0: missing 'properties'"),
        (collection(feature(area_id=None)), "feature 0: invalid or missing area_id None"),
        (collection(feature(area_id="bad id!")), "feature 0: invalid or missing area_id 'bad id!'"),
        (collection(feature(area_id=True)), "feature 0: invalid or missing area_id True"),
        (collection(feature(name="  ")), "feature 0 (a1): invalid or missing name '  '"),
        (collection(feature(name=None)), "feature 0 (a1): invalid or missing name None"),
        (collection(feature(level="ward!")), "feature 0 (a1): invalid or missing level 'ward!'"),
        (collection(feature(parent_id=["x"])), "feature 0 (a1): invalid parent_id ['x']"),
        (collection(feature(parent_id="a1")), "feature 0 (a1): an area cannot be its own parent"),
        (
            collection(GOOD, feature("b"), feature("a1")),
            "feature 2 (a1): duplicate area_id, already used by feature 0",
        ),
        (
            collection(feature("a", parent_id="b"), feature("b", parent_id="a")),
            "feature 0 (a): parent_id chain loops back on itself",
        ),
        (
            collection({"type": "Feature", "properties": {"area_id": "a", "name": "A"}}),
            "feature 0 (a): invalid or missing level None",
        ),
        (
            collection({"type": "Feature", "properties": GOOD["properties"]}),
            "feature 0 (a1): missing geometry",
        ),
        (
            collection(feature(geometry={"type": "Point", "coordinates": [106.7, 10.7]})),
            "feature 0 (a1): geometry must be a Polygon or MultiPolygon, got 'Point'",
        ),
        (
            collection(feature(geometry={"type": "Polygon", "coordinates": []})),
            "feature 0 (a1): polygon needs a non-empty array of linear rings",
        ),
        (
            collection(feature(geometry={"type": "MultiPolygon", "coordinates": []})),
            "feature 0 (a1): a MultiPolygon needs a non-empty coordinates array",
        ),
        (
            collection(
                feature(geometry={"type": "Polygon", "coordinates": [[[1, 1], [2, 2], [1, 1]]]})
            ),
            "feature 0 (a1): polygon, ring 0 needs at least 4 positions",
        ),
        (
            collection(
                feature(
                    geometry={
                        "type": "Polygon",
                        "coordinates": [[[1, 1], [2, 1], [2, 2], [1, 2], [1, 1.5]]],
                    }
                )
            ),
            "feature 0 (a1): polygon, ring 0 is not closed",
        ),
        (
            collection(
                feature(
                    geometry={
                        "type": "Polygon",
                        "coordinates": [[[1, 1], [2, 1], ["2", 2], [1, 1]]],
                    }
                )
            ),
            "feature 0 (a1): polygon, ring 0, position 2 is not a [longitude, latitude] pair",
        ),
        (
            collection(
                feature(
                    geometry={
                        "type": "Polygon",
                        "coordinates": [[[1, 1], [2, 1], [2, float("nan")], [1, 1]]],
                    }
                )
            ),
            "position 2 is not a [longitude, latitude] pair of numbers",
        ),
        (
            collection(
                feature(
                    "utm",
                    geometry={
                        "type": "MultiPolygon",
                        "coordinates": [square(106.7, 10.7, 0.1), square(680000, 1190000, 500)],
                    },
                )
            ),
            "feature 0 (utm): polygon 1, ring 0, position 0 (680000, 1.19e+06) is outside WGS 84 "
            "longitude/latitude range",
        ),
        (
            collection(
                feature(
                    geometry={
                        "type": "Polygon",
                        "coordinates": [
                            [[106.7, 10.7], [106.8, 10.7], [106.9, 10.7], [106.7, 10.7]]
                        ],
                    }
                )
            ),
            "feature 0 (a1): invalid geometry that cannot be repaired (",
        ),
        (
            {**collection(GOOD), "crs": {"type": "name", "properties": {"name": "EPSG:3405"}}},
            "coordinate reference system 'EPSG:3405'",
        ),
    ],
)
def test_every_problem_names_the_feature_and_the_fault(document: Any, message: str) -> None:
    assert message in bad(document)


def test_a_bad_level_argument_is_refused() -> None:
    assert "the level argument: invalid or missing level '9'" in bad(collection(GOOD), level="9")


def test_a_wgs84_crs_member_is_accepted() -> None:
    crs = {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}}
    assert len(areas_from_geojson({**collection(GOOD), "crs": crs})) == 1


def test_parsing_does_not_change_the_document() -> None:
    doc = collection(feature("a", parent_id="p"), feature("p", level="province"))
    before = copy.deepcopy(doc)
    areas_from_geojson(doc, level="ward")
    assert doc == before


# --------------------------------------------------------------------------- locating


def nested_index() -> AreaIndex:
    province = record("p", "province", box(0, 0, 10, 10))
    district = record("d", "former_district", box(0, 0, 5, 10))
    ward_a = record("w-a", "ward", box(0, 0, 5, 5))
    ward_b = record("w-b", "ward", box(5, 0, 10, 5))
    zone = record("z", "flood_zone", box(1, 6, 3, 8))
    return AreaIndex([province, zone, ward_b, district, ward_a])  # order must not matter


def test_locate_picks_the_most_specific_level() -> None:
    index = nested_index()
    lons = [1, 7, 1, 7, 2]
    lats = [1, 1, 9, 9, 7]
    assert index.locate(lons, lats) == ["w-a", "w-b", "d", "p", "z"]


def test_points_outside_everything_and_non_finite_points_are_none() -> None:
    index = nested_index()
    assert index.locate([-1, 11, 5, np.nan, 1], [5, 5, -0.5, 1, np.inf]) == [None] * 5
    assert index.locate([], []) == []
    assert AreaIndex([]).locate([1.0], [1.0]) == [None]


def test_locate_refuses_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="equally long"):
        nested_index().locate([1, 2], [1])


def test_specificity_rule() -> None:
    assert level_tier("ward") == level_tier("commune") == level_tier("special_zone") == 0
    assert level_tier("former_district") == level_tier("anything_custom") == 1
    assert level_tier("province") == 2
    # Among custom levels (and former districts) the smallest polygon wins.
    index = AreaIndex(
        [
            record("big", "zone", box(0, 0, 4, 4)),
            record("small", "cluster", box(1, 1, 2, 2)),
            record("old", "former_district", box(0, 0, 3, 3)),
        ]
    )
    assert index.locate([1.5, 2.5, 3.5], [1.5, 2.5, 3.5]) == ["small", "old", "big"]


def test_points_on_shared_borders_are_deterministic() -> None:
    left = record("w-left", "ward", box(0, 0, 1, 1))
    right = record("w-right", "ward", box(1, 0, 2, 1))
    bigger = record("w-bigger", "ward", box(1, 1, 3, 3))
    border = ([1.0, 1.0, 1.0, 0.0], [0.5, 1.0, 0.0, 0.5])
    answers = {
        tuple(AreaIndex(order).locate(*border))
        for order in ([left, right, bigger], [bigger, right, left], [right, bigger, left])
    }
    # Equal areas: the smaller id; a corner shared with a larger ward: the smaller ward; the
    # outer edge counts as inside.
    assert answers == {("w-left", "w-left", "w-left", "w-left")}
    assert AreaIndex([right, bigger]).locate([2.0], [1.0]) == ["w-right"]


def naive_locate(areas: list[AreaRecord], lon: float, lat: float) -> str | None:
    """One point at a time, one polygon at a time: the reference for the vectorised index."""
    point = Point(lon, lat)
    candidates = [a for a in areas if a.geometry.intersects(point)]
    if not candidates:
        return None
    best = min(candidates, key=lambda a: (level_tier(a.level), a.geometry.area, a.area_id))
    return best.area_id


def test_vectorised_locate_agrees_with_a_naive_check_on_10000_points() -> None:
    rng = np.random.default_rng(7)
    # The shipped wards and provinces, plus overlapping custom zones and former districts.
    extra = [
        record(f"x{i}", level, box(x, y, x + w, y + h))
        for i, (level, x, y, w, h) in enumerate(
            zip(
                rng.choice(["former_district", "flood_zone", "province"], 30),
                rng.uniform(106.62, 106.72, 30),
                rng.uniform(10.72, 10.82, 30),
                rng.uniform(0.005, 0.05, 30),
                rng.uniform(0.005, 0.05, 30),
                strict=True,
            )
        )
    ]
    areas = shipped_areas() + extra
    index = AreaIndex(areas)
    lons = np.concatenate([rng.uniform(106.62, 106.75, 5000), rng.uniform(105.78, 105.89, 5000)])
    lats = np.concatenate([rng.uniform(10.72, 10.84, 5000), rng.uniform(20.97, 21.09, 5000)])
    # Exact vertices of the shapes: points on borders and corners.
    vertices = shapely.get_coordinates([a.geometry for a in areas])
    lons[: len(vertices)], lats[: len(vertices)] = vertices[:, 0], vertices[:, 1]
    located = index.locate(lons, lats)
    expected = [naive_locate(areas, x, y) for x, y in zip(lons, lats, strict=True)]
    assert located == expected
    assert None in located  # the sample reaches beyond the envelopes too
    assert sum(a is not None and "-ward-" in a for a in located) > 5000
    assert sum(a is not None and a.startswith("x") for a in located) > 100


# How fast locating is: bench/area_locate.py prints it (against a naive check), untested here.


# --------------------------------------------------------------------------- shipped sets


def test_shipped_files_parse_with_provinces_and_wards() -> None:
    by_file = {
        path.name: areas_from_geojson(json.loads(path.read_text(encoding="utf-8")))
        for path in shipped_area_paths()
    }
    for name, province_id, minimum in [
        ("hcmc-central.geojson", "vn-hcm", 12),
        ("hanoi-central.geojson", "vn-hn", 10),
    ]:
        areas = by_file[name]
        [province] = [a for a in areas if a.level == "province"]
        wards = [a for a in areas if a.level == "ward"]
        assert province.area_id == province_id
        assert len(wards) >= minimum
        for ward in wards:
            assert ward.parent_id == province_id
            assert ward.area_id.startswith(f"{province_id}-ward-")
            assert ward.area_id.isascii()
            assert ward.properties["source"].startswith("schematic")
            assert province.geometry.buffer(1e-6).contains(ward.geometry)
            lon, lat = ward.properties["centre"]
            assert AreaIndex(areas).locate([lon], [lat]) == [ward.area_id]
    names = {a.name for areas in by_file.values() for a in areas}
    assert {"Bến Thành", "Sài Gòn", "Chợ Lớn", "Phú Nhuận", "Hoàn Kiếm", "Ô Chợ Dừa"} <= names


def test_shipped_hcmc_wards_cover_the_simulator_box() -> None:
    index = AreaIndex(shipped_areas())
    lons, lats = np.meshgrid(
        np.linspace(CENTRAL_HCMC.west, CENTRAL_HCMC.east, 151),
        np.linspace(CENTRAL_HCMC.south, CENTRAL_HCMC.north, 141),
    )
    located = index.locate(lons.ravel(), lats.ravel())
    missing = [
        (x, y)
        for x, y, a in zip(lons.ravel(), lats.ravel(), located, strict=True)
        if a is None or not a.startswith("vn-hcm-ward-")
    ]
    assert not missing, f"{len(missing)} points without a ward, e.g. {missing[:3]}"
    assert len(set(located)) >= 25


def test_shipped_files_are_reproducible(tmp_path: Path) -> None:
    assert generate.main(["--out", str(tmp_path)]) == 0
    for path in shipped_area_paths():
        assert (tmp_path / path.name).read_text(encoding="utf-8") == path.read_text(
            encoding="utf-8"
        ), f"{path.name} differs from what generate.py makes"


def test_slugs_are_ascii() -> None:
    assert generate.slug("Văn Miếu - Quốc Tử Giám") == "van-mieu-quoc-tu-giam"
    assert generate.slug("Đống Đa") == "dong-da"
    assert generate.slug("Ô Chợ Dừa") == "o-cho-dua"
