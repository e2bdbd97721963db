"""How the API presents a reading's derived indices: value, band name and colour."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from urbanpulse.storage.scales import SCALE_OF_DERIVED_FIELD


def present_derived(derived: Mapping[str, Any] | None) -> dict[str, Any]:
    """Derived values as stored, plus ``<index>_band`` for each index that has a scale."""
    if not derived:
        return {}
    shown = dict(derived)
    for name, scale in SCALE_OF_DERIVED_FIELD.items():
        value = derived.get(name)
        if isinstance(value, int):
            shown[f"{name}_band"] = scale.bands[scale.band_index(value)].to_json()
    return shown
