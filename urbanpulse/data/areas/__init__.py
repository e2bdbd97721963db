"""The shipped area sets: schematic stand-ins for the demo and tests, not legal boundaries.

See ``README.md`` beside this file for where the shapes come from, and ``generate.py`` for the
script that makes them.  Operators import official shapes with ``urbanpulse areas import``.
"""

from __future__ import annotations

from pathlib import Path

AREAS_DIR = Path(__file__).resolve().parent
SHIPPED_AREA_FILES: tuple[str, ...] = ("hcmc-central.geojson", "hanoi-central.geojson")


def shipped_area_paths() -> list[Path]:
    """The shipped GeoJSON files, provinces before their wards inside each file."""
    return [AREAS_DIR / name for name in SHIPPED_AREA_FILES]
