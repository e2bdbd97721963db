"""Congestion index of a traffic camera's counting interval, on a level-of-service (LOS) scale.

There is no Vietnamese decision for a congestion index, so this one borrows the Highway Capacity
Manual's levels of service (HCM 2010) and puts them on a 0-100 score with six equal bands,
A (free flow, 0-16) to F (breakdown, 84-100), so that the map reads it like the air index.
Two measurements of one interval each give a score; the index is the worse of the two:

- **Speed**: HCM 2010 Exhibit 16-4 grades an urban street by its travel speed as a share of the
  base free-flow speed: A > 85 %, B > 67 %, C > 50 %, D > 40 %, E > 30 %, F <= 30 %.
  ``FREE_FLOW_KMH`` is 40 km/h, a typical uncongested speed on motorbike-dominated arterials of
  Ho Chi Minh City and Hanoi (their urban speed limit is 50-60 km/h).  Speed says nothing when
  nothing passed (a quiet street at night reports 0 km/h), so it counts only with vehicles.
- **Occupancy**: HCM basic segments grade density: A <= 11, B <= 18, C <= 26, D <= 35,
  E <= 45 passenger cars per mile per lane, jam density about 190.  A detector's occupancy is
  density x (vehicle length + zone length); with 4.5 m + 2 m = 6.5 m that is 0.404 % per car/mi:
  A <= 4.4 %, B <= 7.3 %, C <= 10.5 %, D <= 14.1 %, E <= 18.2 %, jam at 77 %.

Both tables are interpolated linearly between band edges (``bands.interpolate``), as the AQI is.
"""

from __future__ import annotations

from collections.abc import Mapping

from urbanpulse.indices.bands import Band, Table, interpolate, round_half_up

FREE_FLOW_KMH = 40.0
_EDGES = (0.0, 100 / 6, 200 / 6, 50.0, 400 / 6, 500 / 6, 100.0)  # A|B|C|D|E|F|jam on 0-100

# Travel speed as % of free flow -> score (ascending speed share: descending score).
SPEED_TABLE: Table = tuple(
    zip((0.0, 30.0, 40.0, 50.0, 67.0, 85.0, 100.0), reversed(_EDGES), strict=True)
)
# Occupancy % -> score.
OCCUPANCY_TABLE: Table = tuple(zip((0.0, 4.4, 7.3, 10.5, 14.1, 18.2, 77.0), _EDGES, strict=True))

BANDS: tuple[Band, ...] = (
    Band("los_a", "A · Thông thoáng", "A · Free flow", (0, 228, 0), 0, 16),
    Band("los_b", "B · Khá thông thoáng", "B · Reasonably free", (146, 208, 80), 17, 33),
    Band("los_c", "C · Ổn định", "C · Stable", (255, 255, 0), 34, 50),
    Band("los_d", "D · Đông", "D · Dense", (255, 126, 0), 51, 66),
    Band("los_e", "E · Rất đông", "E · At capacity", (255, 0, 0), 67, 83),
    Band("los_f", "F · Ùn tắc", "F · Congested", (126, 0, 35), 84, 100),
)


def congestion_index(values: Mapping[str, float]) -> int | None:
    """0-100 from ``avg_speed`` (km/h, with vehicles counted) and ``occupancy`` (%); None
    when the interval has neither."""
    scores: list[float] = []
    speed, vehicles = values.get("avg_speed"), _vehicles(values)
    if speed is not None and (vehicles is None or vehicles > 0):
        share = min(100.0, 100.0 * speed / FREE_FLOW_KMH)
        scores.append(interpolate(SPEED_TABLE, share))
    occupancy = values.get("occupancy")
    if occupancy is not None:
        scores.append(interpolate(OCCUPANCY_TABLE, occupancy))
    return round_half_up(max(scores)) if scores else None


def _vehicles(values: Mapping[str, float]) -> float | None:
    """Vehicles counted in the interval: the total, else the sum of the classes given."""
    if "vehicles" in values:
        return values["vehicles"]
    classes = [values[c] for c in ("motorbike", "car", "bus", "truck", "bicycle") if c in values]
    return sum(classes) if classes else None
