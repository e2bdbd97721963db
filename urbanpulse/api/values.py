"""How the API shows measured values: as the kind catalogue types them.

Readings travel as JSON numbers and the processor holds them as floats, so a count arrives
at the API as ``17.0``; a metric the catalogue marks ``integer`` is shown as ``17``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from urbanpulse.core.catalogue import KINDS

_INTEGER_METRICS: Mapping[str, frozenset[str]] = {
    kind.name: frozenset(m.name for m in kind.metrics if m.integer) for kind in KINDS.values()
}


def present_values(kind: str, values: Mapping[str, Any] | None) -> dict[str, Any]:
    """``values`` of a reading of ``kind`` with each integer metric's whole float as an int.

    A fractional value (the mean of counts over a bucket) stays as it is: it is not a count.
    """
    if not values:
        return {}
    integers = _INTEGER_METRICS.get(kind, frozenset())
    return {
        name: int(value)
        if name in integers and isinstance(value, float) and value.is_integer()
        else value
        for name, value in values.items()
    }
