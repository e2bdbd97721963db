"""Vietnam's air quality index, VN_AQI (Decision 1459/QĐ-TCMT, 12 November 2019).

Hourly AQI: the gases from their 1-hour means, PM2.5 and PM10 from the NowCast of the last 12
hourly means.  Daily AQI: PM from the 24-hour mean, the gases from the day's highest 1-hour
mean, O3 from the larger of its 1-hour and 8-hour sub-indices.  The overall AQI is the highest
sub-index; the decision requires at least one of PM2.5 and PM10 for an AQI to be published.

Choices the decision leaves open, made here and relied on by the tests:

* Above a pollutant's top breakpoint (index 500) the sub-index is clamped to 500: the scale
  and its bands end there, and the concentration itself stays available to whoever reads it.
* The 8-hour O3 table stops at index 300 (400 µg/m³).  Above that ``sub_index`` raises
  :class:`BeyondTableError`; the daily AQI then uses the 1-hour O3 sub-index alone, as the
  decision prescribes.
* Sub-indices are rounded half up to integers (40.5 -> 41), so the overall AQI, their maximum,
  is an integer too.
* The NowCast weight is rounded to two decimals before use, as in the decision's worked
  example; ``nowcast(..., weight_decimals=None)`` keeps it exact (the US EPA practice).
* Daily coverage: a 24-hour mean or a day's maximum needs at least 18 of the 24 hourly means
  (75 %); an 8-hour O3 mean needs at least 6 of its 8 hours.  Fewer and the pollutant is
  left out of that day's AQI.
"""

from __future__ import annotations

import contextlib
from array import array
from collections.abc import Mapping, Sequence

from urbanpulse.indices.bands import (
    AqiResult,
    Band,
    Table,
    band_for_value,
    interpolate,
    round_half_up,
)

PM = ("pm25", "pm10")
GASES = ("o3", "co", "so2", "no2")
POLLUTANTS = (*PM, *GASES)

# Decision 1459/QĐ-TCMT, breakpoint table: concentrations in µg/m³ for index 0, 50, 100, 150,
# 200, 300, 400, 500.  The breakpoints are continuous (no +0.1 steps between categories).
_INDEX_STEPS = (0, 50, 100, 150, 200, 300, 400, 500)
_BREAKPOINTS: dict[str, tuple[float, ...]] = {
    "o3_1h": (0, 160, 200, 300, 400, 800, 1000, 1200),
    "o3_8h": (0, 100, 120, 170, 210, 400),  # undefined above index 300
    "co": (0, 10000, 30000, 45000, 60000, 90000, 120000, 150000),
    "so2": (0, 125, 350, 550, 800, 1600, 2100, 2630),
    "no2": (0, 100, 200, 700, 1200, 2350, 3100, 3850),
    "pm10": (0, 50, 150, 250, 350, 420, 500, 600),
    "pm25": (0, 25, 50, 80, 150, 250, 350, 500),
}
TABLES: dict[str, Table] = {
    name: tuple(zip(concentrations, _INDEX_STEPS, strict=False))
    for name, concentrations in _BREAKPOINTS.items()
}

# Decision 1459/QĐ-TCMT, AQI ranges, quality and RGB colours.
BANDS: tuple[Band, ...] = (
    Band("good", "Tốt", "Good", (0, 228, 0), 0, 50),
    Band("moderate", "Trung bình", "Moderate", (255, 255, 0), 51, 100),
    Band("poor", "Kém", "Poor", (255, 126, 0), 101, 150),
    Band("bad", "Xấu", "Bad", (255, 0, 0), 151, 200),
    Band("very_bad", "Rất xấu", "Very bad", (143, 63, 151), 201, 300),
    Band("hazardous", "Nguy hại", "Hazardous", (126, 0, 35), 301, 500),
)

NOWCAST_HOURS = 12
DAILY_MIN_HOURS = 18
EIGHT_HOUR_MIN = 6


class BeyondTableError(ValueError):
    """The concentration lies above the last breakpoint of a table that must not be clamped."""


def band_for(value: int) -> Band:
    return band_for_value(BANDS, value)


def sub_index(pollutant: str, concentration: float, averaging: str) -> int:
    """The VN_AQI sub-index of one concentration (µg/m³).

    ``averaging``: "1h" for the gases' 1-hour means and for PM NowCast values, "8h" for O3
    8-hour means, "24h" for PM 24-hour means.
    """
    if not concentration >= 0:  # also refuses NaN
        raise ValueError(f"{pollutant} concentration must be >= 0, got {concentration!r}")
    table = TABLES[_table_name(pollutant, averaging)]
    if averaging == "8h" and concentration > table[-1][0]:
        raise BeyondTableError(
            f"O3 8-hour mean {concentration:g} µg/m³ is above the 8-hour table "
            f"({table[-1][0]:g}); the decision uses the 1-hour sub-index instead"
        )
    return round_half_up(interpolate(table, concentration))


def _table_name(pollutant: str, averaging: str) -> str:
    if pollutant in PM and averaging in ("1h", "24h"):
        return pollutant  # the NowCast is scored on the 24-hour table
    if pollutant == "o3" and averaging in ("1h", "8h"):
        return f"o3_{averaging}"
    if pollutant in GASES and averaging == "1h":
        return pollutant
    raise ValueError(f"no VN_AQI table for {pollutant!r} with averaging {averaging!r}")


def nowcast(
    hourly_means: Sequence[float | None], *, weight_decimals: int | None = 2
) -> float | None:
    """NowCast of up to 12 hourly means, newest first (index 0 is c1); None marks a gap.

    w* = min/max over the hours present, w = max(w*, 1/2), NowCast = Σ w^(i-1)·c_i / Σ w^(i-1)
    over the hours present.  None unless at least two of c1, c2, c3 are present.
    """
    newest = hourly_means[0] if hourly_means else None
    return NowCastPast(hourly_means[1:NOWCAST_HOURS], weight_decimals).nowcast(newest)


class NowCastPast:
    """The hours of a NowCast before the newest one (c2..c12), prepared once.

    While readings arrive, only the current hour's mean moves: the processor prepares the
    earlier hours once per hour and computes each reading's NowCast from the current mean.
    :func:`nowcast` is this used once: the arithmetic and its order are the same either way.
    The weight is rounded to two decimals, so it seldom changes from one reading to the next:
    the weighted terms of the earlier hours are kept for the last weight used.
    """

    __slots__ = (
        "_decimals",
        "_highest",
        "_indices",
        "_invalid",
        "_lowest",
        "_recent",
        "_terms",
        "_values",
        "_weight",
        "_weights_with_newest",
        "_weights_without",
    )

    def __init__(self, earlier: Sequence[float | None], weight_decimals: int | None = 2) -> None:
        """``earlier``: c2, c3, ... newest first, None marking a gap; beyond c12 is ignored."""
        hours = list(earlier[: NOWCAST_HOURS - 1])
        present = [(i, c) for i, c in enumerate(hours, start=1) if c is not None]
        self._decimals = weight_decimals
        self._indices = bytes(i for i, _ in present)  # each present hour's i - 1 (c2 is 1)
        self._values = array("d", (c for _, c in present))  # doubles: 8 bytes each
        self._recent = sum(c is not None for c in hours[:2])  # of c2 and c3
        self._invalid = any(not c >= 0 for c in self._values)  # raised when a NowCast is due
        valid = self._values and not self._invalid
        self._lowest = min(self._values) if valid else 0.0
        self._highest = max(self._values) if valid else 0.0
        self._weight: float | None = None  # the weight the next three were computed for
        self._terms = array("d")  # w^(i-1)·c_i of each present hour, in order
        self._weights_with_newest = 0.0  # Σ w^(i-1) over c1 and the present hours
        self._weights_without = 0.0  # the same without c1

    def nowcast(self, newest: float | None) -> float | None:
        """The NowCast with ``newest`` as c1 (None: no mean for the current hour yet)."""
        if (newest is not None) + self._recent < 2:
            return None
        if self._invalid or (newest is not None and not newest >= 0):
            raise ValueError("hourly means must be >= 0")
        lowest, highest = self._lowest, self._highest
        if newest is not None:  # c1 first, as max() and min() over c1..c12 would see it
            lowest, highest = min(newest, lowest), max(newest, highest)
        if highest == 0:
            return 0.0
        weight = max(lowest / highest, 0.5)
        if self._decimals is not None:
            weight = round(weight, self._decimals)
        if weight != self._weight:
            self._weigh(weight)
        if newest is None:
            return sum(self._terms) / self._weights_without
        # 1.0 * c1 is w^0·c1: the sums run over the same terms in the same order as c1..c12's.
        return sum((1.0 * newest, *self._terms)) / self._weights_with_newest

    def _weigh(self, weight: float) -> None:
        powers = [weight**i for i in self._indices]
        self._weight = weight
        self._terms = array("d", (w * c for w, c in zip(powers, self._values, strict=True)))
        self._weights_with_newest = sum((weight**0, *powers))
        self._weights_without = sum(powers)


def hourly_aqi(
    hours: Mapping[str, Sequence[float | None]], *, require_pm: bool = True
) -> AqiResult | None:
    """Hourly VN_AQI from each pollutant's last 12 hourly means (µg/m³), newest first.

    None when no sub-index can be computed, or (``require_pm``, the decision's rule) when
    neither PM2.5 nor PM10 can.
    """
    newest = {pollutant: series[0] if series else None for pollutant, series in hours.items()}
    past = {p: NowCastPast(series[1:NOWCAST_HOURS]) for p, series in hours.items() if p in PM}
    return hourly_aqi_of(newest, past, require_pm=require_pm)


def hourly_aqi_of(
    newest: Mapping[str, float | None],
    past: Mapping[str, NowCastPast],
    *,
    require_pm: bool = True,
) -> AqiResult | None:
    """:func:`hourly_aqi` from each pollutant's current hourly mean (None: none yet) and, for
    PM2.5 and PM10, the earlier hours of their NowCast as prepared before."""
    subs: dict[str, int] = {}
    for pollutant, mean in newest.items():
        if pollutant in PM:
            value = past[pollutant].nowcast(mean)
            if value is not None:
                subs[pollutant] = sub_index(pollutant, value, "1h")
        elif pollutant in GASES:
            if mean is not None:
                subs[pollutant] = sub_index(pollutant, mean, "1h")
        else:
            raise ValueError(f"unknown pollutant {pollutant!r}; expected one of {POLLUTANTS}")
    return _combine(subs, require_pm)


def daily_aqi(
    day: Mapping[str, Sequence[float | None]], *, require_pm: bool = True
) -> AqiResult | None:
    """Daily VN_AQI from each pollutant's 24 hourly means (µg/m³), in time order (00h first).

    Missing hours are None.  See the module docstring for the coverage each figure needs.
    """
    subs: dict[str, int] = {}
    for pollutant, series in day.items():
        present = [c for c in series if c is not None]
        if pollutant not in POLLUTANTS:
            raise ValueError(f"unknown pollutant {pollutant!r}; expected one of {POLLUTANTS}")
        if len(present) < DAILY_MIN_HOURS:
            continue
        if pollutant in PM:
            subs[pollutant] = sub_index(pollutant, sum(present) / len(present), "24h")
            continue
        subs[pollutant] = sub_index(pollutant, max(present), "1h")
        if pollutant == "o3":
            eight = max_rolling_mean(series, 8, EIGHT_HOUR_MIN)
            if eight is not None:
                # The decision: above the 8-hour table the 1-hour sub-index alone counts.
                with contextlib.suppress(BeyondTableError):
                    subs["o3"] = max(subs["o3"], sub_index("o3", eight, "8h"))
    return _combine(subs, require_pm)


def max_rolling_mean(series: Sequence[float | None], window: int, min_present: int) -> float | None:
    """The highest mean over ``window`` consecutive hours with at least ``min_present`` values."""
    best: float | None = None
    for start in range(len(series) - window + 1):
        values = [c for c in series[start : start + window] if c is not None]
        if len(values) >= min_present:
            mean = sum(values) / len(values)
            best = mean if best is None else max(best, mean)
    return best


def _combine(subs: dict[str, int], require_pm: bool) -> AqiResult | None:
    if not subs or (require_pm and not any(p in subs for p in PM)):
        return None
    # Ties go to the pollutant listed first in POLLUTANTS (PM before the gases).
    dominant = max(POLLUTANTS, key=lambda p: subs.get(p, -1))
    value = subs[dominant]
    return AqiResult(value, dominant, dict(subs), band_for(value))
