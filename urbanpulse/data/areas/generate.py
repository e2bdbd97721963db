"""Make the shipped SCHEMATIC area sets: ``python -m urbanpulse.data.areas.generate``.

The shapes are stand-ins for the demo and the tests, NOT legal boundaries.  No official
boundary data could be downloaded where this was written, so each city is drawn like this:

1. a hand-drawn envelope polygon around the central city (``ENVELOPES``);
2. an approximate centre for each post-2025 ward, typed in from general knowledge of the city
   (``WARDS``); centres are good to roughly 0.5-1 km, those marked ``rough`` to 1-2 km;
3. a Voronoi tessellation of the centres (``shapely.voronoi_polygons``, computed with longitude
   scaled by cos(latitude) so that cells follow ground distance), clipped to the envelope: every
   point of the envelope lies in exactly one ward cell, borders are straight lines halfway
   between neighbouring centres, and rivers, canals and real streets are ignored;
4. coordinates are snapped to a 1e-6 degree grid (about 0.1 m) and the province polygon is the
   union of its ward cells (the envelope, give or take that snapping), so it only covers the
   central part of the city drawn here.

Options: ``--check`` exits 1 when the files on disk differ from what this script makes (CI can
run it); ``--out DIR`` writes elsewhere.  The output is deterministic: same script, same bytes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import MultiPoint, MultiPolygon, Polygon
from shapely.geometry.polygon import orient

from urbanpulse.data.areas import AREAS_DIR

SOURCE = (
    "schematic: Voronoi cells around approximate ward centres, clipped to a hand-drawn envelope "
    "of the central city; a stand-in for the demo and tests, not a legal boundary "
    "(urbanpulse/data/areas/generate.py); import official shapes with `urbanpulse areas import`"
)
PRECISION = 1e-6  # degrees, about 0.1 m: coordinates are written with six decimals


@dataclass(frozen=True)
class Ward:
    name: str
    lat: float
    lon: float
    former_district: str  # the pre-2025 district most of the ward lies in
    rough: bool = False  # centre known only to 1-2 km


@dataclass(frozen=True)
class City:
    code: str  # "hcm" → area ids "vn-hcm", "vn-hcm-ward-<slug>"
    province_name: str
    file_name: str
    envelope: tuple[tuple[float, float], ...]  # (lon, lat), hand-drawn, counter-clockwise
    wards: tuple[Ward, ...]


HCMC = City(
    code="hcm",
    province_name="Thành phố Hồ Chí Minh",
    file_name="hcmc-central.geojson",
    # Around the simulator's box (lat 10.745-10.815, lon 106.650-106.725) with a margin.
    envelope=(
        (106.638, 10.738),
        (106.690, 10.734),
        (106.735, 10.742),
        (106.740, 10.790),
        (106.728, 10.826),
        (106.690, 10.828),
        (106.640, 10.824),
        (106.634, 10.780),
    ),
    wards=(
        Ward("Sài Gòn", 10.7780, 106.7020, "Quận 1"),
        Ward("Tân Định", 10.7905, 106.6915, "Quận 1"),
        Ward("Bến Thành", 10.7700, 106.6945, "Quận 1"),
        Ward("Cầu Ông Lãnh", 10.7640, 106.6930, "Quận 1"),
        Ward("Bàn Cờ", 10.7730, 106.6820, "Quận 3"),
        Ward("Xuân Hòa", 10.7820, 106.6895, "Quận 3"),
        Ward("Nhiêu Lộc", 10.7870, 106.6790, "Quận 3"),
        Ward("Vĩnh Hội", 10.7590, 106.7010, "Quận 4"),
        Ward("Khánh Hội", 10.7545, 106.7045, "Quận 4"),
        Ward("Xóm Chiếu", 10.7590, 106.7120, "Quận 4"),
        Ward("Chợ Quán", 10.7560, 106.6850, "Quận 5"),
        Ward("An Đông", 10.7575, 106.6730, "Quận 5"),
        Ward("Chợ Lớn", 10.7540, 106.6600, "Quận 5"),
        Ward("Vườn Lài", 10.7660, 106.6745, "Quận 10"),
        Ward("Diên Hồng", 10.7710, 106.6630, "Quận 10"),
        Ward("Hòa Hưng", 10.7805, 106.6735, "Quận 10"),
        Ward("Minh Phụng", 10.7580, 106.6480, "Quận 11", rough=True),
        Ward("Phú Thọ", 10.7700, 106.6525, "Quận 11", rough=True),
        Ward("Bình Tây", 10.7495, 106.6480, "Quận 6", rough=True),
        Ward("Chánh Hưng", 10.7440, 106.6840, "Quận 8", rough=True),
        Ward("Tân Hưng", 10.7460, 106.7020, "Quận 7", rough=True),
        Ward("Tân Thuận", 10.7520, 106.7250, "Quận 7", rough=True),
        Ward("An Khánh", 10.7800, 106.7255, "Thành phố Thủ Đức", rough=True),
        Ward("Gia Định", 10.8005, 106.6955, "Quận Bình Thạnh"),
        Ward("Bình Thạnh", 10.8070, 106.7020, "Quận Bình Thạnh"),
        Ward("Thạnh Mỹ Tây", 10.7985, 106.7165, "Quận Bình Thạnh"),
        Ward("Bình Lợi Trung", 10.8160, 106.7100, "Quận Bình Thạnh", rough=True),
        Ward("Đức Nhuận", 10.8020, 106.6830, "Quận Phú Nhuận"),
        Ward("Cầu Kiệu", 10.7935, 106.6860, "Quận Phú Nhuận"),
        Ward("Phú Nhuận", 10.7985, 106.6745, "Quận Phú Nhuận"),
        Ward("Tân Sơn Hòa", 10.7975, 106.6655, "Quận Tân Bình"),
        Ward("Tân Sơn Nhất", 10.8080, 106.6620, "Quận Tân Bình", rough=True),
        Ward("Tân Hòa", 10.7870, 106.6570, "Quận Tân Bình", rough=True),
        Ward("Bảy Hiền", 10.7900, 106.6460, "Quận Tân Bình", rough=True),
        Ward("Hạnh Thông", 10.8200, 106.6860, "Quận Gò Vấp", rough=True),
    ),
)

HANOI = City(
    code="hn",
    province_name="Thành phố Hà Nội",
    file_name="hanoi-central.geojson",
    envelope=(
        (105.792, 20.985),
        (105.850, 20.980),
        (105.880, 20.990),
        (105.878, 21.030),
        (105.868, 21.060),
        (105.835, 21.078),
        (105.800, 21.070),
        (105.788, 21.030),
    ),
    wards=(
        Ward("Hoàn Kiếm", 21.0285, 105.8525, "Quận Hoàn Kiếm"),
        Ward("Cửa Nam", 21.0250, 105.8440, "Quận Hoàn Kiếm"),
        Ward("Hồng Hà", 21.0330, 105.8590, "Quận Hoàn Kiếm", rough=True),
        Ward("Ba Đình", 21.0385, 105.8370, "Quận Ba Đình"),
        Ward("Ngọc Hà", 21.0400, 105.8240, "Quận Ba Đình"),
        Ward("Giảng Võ", 21.0275, 105.8210, "Quận Ba Đình"),
        Ward("Văn Miếu - Quốc Tử Giám", 21.0265, 105.8345, "Quận Đống Đa"),
        Ward("Ô Chợ Dừa", 21.0190, 105.8240, "Quận Đống Đa"),
        Ward("Láng", 21.0150, 105.8080, "Quận Đống Đa"),
        Ward("Đống Đa", 21.0105, 105.8250, "Quận Đống Đa", rough=True),
        Ward("Kim Liên", 21.0075, 105.8370, "Quận Đống Đa"),
        Ward("Hai Bà Trưng", 21.0135, 105.8555, "Quận Hai Bà Trưng"),
        Ward("Bạch Mai", 21.0015, 105.8490, "Quận Hai Bà Trưng"),
        Ward("Vĩnh Tuy", 20.9995, 105.8720, "Quận Hai Bà Trưng"),
        Ward("Tây Hồ", 21.0660, 105.8250, "Quận Tây Hồ", rough=True),
        Ward("Thanh Xuân", 20.9960, 105.8120, "Quận Thanh Xuân", rough=True),
        Ward("Tương Mai", 20.9880, 105.8450, "Quận Hoàng Mai", rough=True),
        Ward("Cầu Giấy", 21.0320, 105.7990, "Quận Cầu Giấy", rough=True),
    ),
)

CITIES = (HCMC, HANOI)


def slug(name: str) -> str:
    """ASCII slug of a Vietnamese name: ``"Cầu Ông Lãnh"`` → ``"cau-ong-lanh"``."""
    text = name.replace("đ", "d").replace("Đ", "D")
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return "-".join("".join(c if c.isalnum() else " " for c in ascii_text).split())


def ward_cells(city: City) -> list[MultiPolygon]:
    """One clipped Voronoi cell per ward, in the order of ``city.wards``."""
    envelope = Polygon(city.envelope)
    scale = math.cos(math.radians(envelope.centroid.y))  # to make degrees of lon ≈ degrees of lat

    def squash(geometry: Any) -> Any:
        return shapely.transform(geometry, lambda xy: xy * [scale, 1.0])

    def unsquash(geometry: Any) -> Any:
        return shapely.transform(geometry, lambda xy: xy / [scale, 1.0])

    sites = MultiPoint([(w.lon, w.lat) for w in city.wards])
    diagram = shapely.voronoi_polygons(squash(sites), extend_to=squash(envelope), ordered=True)
    cells = []
    for ward, cell in zip(city.wards, diagram.geoms, strict=True):
        clipped = shapely.set_precision(unsquash(cell).intersection(envelope), PRECISION)
        polygons = [clipped] if isinstance(clipped, Polygon) else list(clipped.geoms)
        multi = MultiPolygon([orient(p, 1.0) for p in polygons if isinstance(p, Polygon)])
        if (
            not multi.is_valid
            or multi.is_empty
            or not multi.covers(shapely.Point(ward.lon, ward.lat))
        ):
            raise AssertionError(f"{city.code}: bad cell for {ward.name}")
        cells.append(multi)
    return cells


def city_collection(city: City) -> dict[str, Any]:
    province_id = f"vn-{city.code}"
    cells = ward_cells(city)
    _check_coverage(city, cells)
    union = shapely.set_precision(shapely.coverage_union_all(cells), PRECISION)
    province = MultiPolygon([orient(union, 1.0)])
    features = [
        _feature(
            province_id,
            city.province_name,
            "province",
            None,
            province,
            {"coverage": "only the central part of the city drawn here, not the whole province"},
        )
    ]
    for ward, cell in zip(city.wards, cells, strict=True):
        features.append(
            _feature(
                f"{province_id}-ward-{slug(ward.name)}",
                ward.name,
                "ward",
                province_id,
                cell,
                {
                    "former_district": ward.former_district,
                    "centre": [ward.lon, ward.lat],
                    "centre_uncertainty_km": "1-2" if ward.rough else "0.5-1",
                },
            )
        )
    return {
        "type": "FeatureCollection",
        "name": f"{city.province_name} (central part): SCHEMATIC wards, not legal boundaries",
        "features": features,
    }


def _feature(
    area_id: str,
    name: str,
    level: str,
    parent_id: str | None,
    shape: MultiPolygon,
    extra: dict[str, Any],
) -> dict[str, Any]:
    properties: dict[str, Any] = {"area_id": area_id, "name": name, "level": level}
    if parent_id is not None:
        properties["parent_id"] = parent_id
    properties.update(extra)
    properties["source"] = SOURCE
    geometry = shapely.geometry.mapping(shape)
    coordinates = [
        [[[round(x, 6), round(y, 6)] for x, y in ring] for ring in polygon]
        for polygon in geometry["coordinates"]
    ]
    return {
        "type": "Feature",
        "properties": properties,
        "geometry": {"type": "MultiPolygon", "coordinates": coordinates},
    }


def _check_coverage(city: City, cells: Sequence[MultiPolygon]) -> None:
    """The cells tile the envelope: no overlaps, no gaps beyond the snapping of step 4."""
    if not shapely.coverage_is_valid(cells):
        raise AssertionError(f"{city.code}: ward cells overlap or leave slivers between them")
    union = shapely.coverage_union_all(cells)
    if not isinstance(union, Polygon) or union.interiors:
        raise AssertionError(f"{city.code}: ward cells do not form one polygon without holes")
    envelope = Polygon(city.envelope)
    difference = union.symmetric_difference(envelope).area
    if difference > envelope.length * PRECISION:  # slivers thinner than the snapping grid
        raise AssertionError(f"{city.code}: ward cells differ from the envelope by {difference}")


def render(collection: dict[str, Any]) -> str:
    """Pretty enough to diff: one feature per line, names in UTF-8."""
    head = {k: v for k, v in collection.items() if k != "features"}
    lines = [json.dumps(head, ensure_ascii=False)[:-1] + ', "features": [']
    features = [json.dumps(f, ensure_ascii=False) for f in collection["features"]]
    lines += [f + ("," if i < len(features) - 1 else "") for i, f in enumerate(features)]
    lines.append("]}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=AREAS_DIR, help="output directory")
    parser.add_argument(
        "--check", action="store_true", help="only compare with the files on disk; exit 1 if stale"
    )
    args = parser.parse_args(argv)
    stale = []
    for city in CITIES:
        text = render(city_collection(city))
        path = args.out / city.file_name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(path)
        else:
            path.write_text(text, encoding="utf-8")
            sys.stdout.write(f"wrote {path} ({len(city.wards)} wards)\n")
    for path in stale:
        sys.stderr.write(f"{path} is out of date: run python -m urbanpulse.data.areas.generate\n")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
