"""A truck round's collection list: the most urgent bins first, the nearest first among equals."""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass

# Urgency classes by hours until 90 %: full now, within 2 h, within 6 h, later in the round.
URGENCY_LIMITS_H = (0.0, 2.0, 6.0)


@dataclass(frozen=True)
class BinStop:
    sensor_id: str
    hours_to_full: float | None
    distance_m: float  # from the truck


def urgency(hours_to_full: float) -> int:
    """0 for a full bin, then 1, 2, ... for each class boundary the time exceeds."""
    return bisect.bisect_left(URGENCY_LIMITS_H, hours_to_full)


def collection_order(bins: Iterable[BinStop], within_h: float) -> list[BinStop]:
    """The bins due within ``within_h`` hours, by urgency class, then distance."""
    due = [b for b in bins if b.hours_to_full is not None and b.hours_to_full <= within_h]
    return sorted(due, key=lambda b: (urgency(b.hours_to_full or 0.0), b.distance_m, b.sensor_id))
