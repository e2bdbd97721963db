"""How the API presents a reading's derived indices: value, band name and colour."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from urbanpulse.indices import vn_aqi, vn_wqi
from urbanpulse.indices.bands import Band

# derived field -> the scale whose bands it is read on
SCALES: Mapping[str, Callable[[int], Band]] = {
    "vn_aqi": vn_aqi.band_for,
    "wqi": vn_wqi.band_for,
}


def present_derived(derived: Mapping[str, Any] | None) -> dict[str, Any]:
    """Derived values as stored, plus ``<index>_band`` for each index that has a scale."""
    if not derived:
        return {}
    shown = dict(derived)
    for name, band_of in SCALES.items():
        value = derived.get(name)
        if isinstance(value, int):
            shown[f"{name}_band"] = band_of(value).to_json()
    return shown
