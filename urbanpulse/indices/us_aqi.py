"""The US EPA Air Quality Index, for comparing our stations with figures published abroad.

Breakpoints: EPA Technical Assistance Document for the Reporting of Daily Air Quality
(EPA-454/B-24-002, May 2024): the 2024 PM2.5 revision, the other pollutants as in the 2018
document (EPA-454/B-18-007), with the 2024 document's single 301-500 "Hazardous" row.

Inputs are µg/m³ (our canonical unit), keyed by pollutant and averaging period:
``pm25``, ``pm10`` (24-hour means), ``o3_8h``, ``o3_1h``, ``co_8h``, ``so2_1h``, ``no2_1h``.
The gases are converted to ppm/ppb at 25 °C and 1 atm (molar volume 24.45 L):
ppb = µg/m³ * 24.45 / molar mass.  Each concentration is then truncated as the EPA requires
(PM2.5 and CO to 0.1, O3 to 0.001 ppm, PM10, SO2 and NO2 to integers).

Documented choices where the EPA table has gaps:

* Above the top breakpoint the sub-index is clamped to 500 ("beyond the AQI").
* 1-hour O3 below 0.125 ppm defines no index; it is then left out (8-hour O3 governs).
* 8-hour O3 above 0.200 ppm defines no index (the EPA uses 1-hour O3): we score it on the
  1-hour table, a lower bound, since an 8-hour mean never exceeds that period's worst hour.
* 1-hour SO2 above 304 ppb defines no index (the EPA uses 24-hour SO2): we apply the 24-hour
  rows to the value given, and say so here rather than drop a hazardous reading.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from urbanpulse.indices.bands import AqiResult, Band, band_for_value, round_half_up, truncate
from urbanpulse.indices.vn_aqi import DAILY_MIN_HOURS, EIGHT_HOUR_MIN, max_rolling_mean, nowcast

MOLAR_VOLUME_L = 24.45  # litres per mole at 25 °C and 1 atm
MOLAR_MASS_G = {"o3": 48.00, "co": 28.01, "so2": 64.07, "no2": 46.01}

# A row: (C_lo, C_hi, I_lo, I_hi) in the pollutant's EPA unit.
Row = tuple[float, float, int, int]

# EPA-454/B-24-002 (May 2024), "Breakpoints for the AQI".
_TABLES: dict[str, tuple[Row, ...]] = {
    "pm25": (  # µg/m³, 24-hour, 2024 revision
        (0.0, 9.0, 0, 50),
        (9.1, 35.4, 51, 100),
        (35.5, 55.4, 101, 150),
        (55.5, 125.4, 151, 200),
        (125.5, 225.4, 201, 300),
        (225.5, 325.4, 301, 500),
    ),
    "pm10": (  # µg/m³, 24-hour
        (0, 54, 0, 50),
        (55, 154, 51, 100),
        (155, 254, 101, 150),
        (255, 354, 151, 200),
        (355, 424, 201, 300),
        (425, 604, 301, 500),
    ),
    "o3_8h": (  # ppm, 8-hour
        (0.000, 0.054, 0, 50),
        (0.055, 0.070, 51, 100),
        (0.071, 0.085, 101, 150),
        (0.086, 0.105, 151, 200),
        (0.106, 0.200, 201, 300),
    ),
    "o3_1h": (  # ppm, 1-hour; no rows below index 101
        (0.125, 0.164, 101, 150),
        (0.165, 0.204, 151, 200),
        (0.205, 0.404, 201, 300),
        (0.405, 0.604, 301, 500),
    ),
    "co_8h": (  # ppm, 8-hour
        (0.0, 4.4, 0, 50),
        (4.5, 9.4, 51, 100),
        (9.5, 12.4, 101, 150),
        (12.5, 15.4, 151, 200),
        (15.5, 30.4, 201, 300),
        (30.5, 50.4, 301, 500),
    ),
    "so2_1h": (  # ppb, 1-hour up to index 200, then the 24-hour rows (see module docstring)
        (0, 35, 0, 50),
        (36, 75, 51, 100),
        (76, 185, 101, 150),
        (186, 304, 151, 200),
        (305, 604, 201, 300),
        (605, 1004, 301, 500),
    ),
    "no2_1h": (  # ppb, 1-hour
        (0, 53, 0, 50),
        (54, 100, 51, 100),
        (101, 360, 101, 150),
        (361, 649, 151, 200),
        (650, 1249, 201, 300),
        (1250, 2049, 301, 500),
    ),
}

# How each input is converted and truncated: (gas for the ppb conversion or None, ppb -> unit
# factor, decimals kept).
_UNITS: dict[str, tuple[str | None, float, int]] = {
    "pm25": (None, 1.0, 1),
    "pm10": (None, 1.0, 0),
    "o3_8h": ("o3", 1e-3, 3),
    "o3_1h": ("o3", 1e-3, 3),
    "co_8h": ("co", 1e-3, 1),
    "so2_1h": ("so2", 1.0, 0),
    "no2_1h": ("no2", 1.0, 0),
}
INPUTS = tuple(_UNITS)

# EPA-454/B-24-002: category names and colours.  The Vietnamese names are those the
# VN_AQI uses for the same colours, which is how Vietnamese portals show US figures.
BANDS: tuple[Band, ...] = (
    Band("good", "Tốt", "Good", (0, 228, 0), 0, 50),
    Band("moderate", "Trung bình", "Moderate", (255, 255, 0), 51, 100),
    Band("usg", "Kém", "Unhealthy for Sensitive Groups", (255, 126, 0), 101, 150),
    Band("unhealthy", "Xấu", "Unhealthy", (255, 0, 0), 151, 200),
    Band("very_unhealthy", "Rất xấu", "Very Unhealthy", (143, 63, 151), 201, 300),
    Band("hazardous", "Nguy hại", "Hazardous", (126, 0, 35), 301, 500),
)


def ugm3_to_ppb(gas: str, ugm3: float) -> float:
    """µg/m³ -> ppb at 25 °C and 1 atm."""
    return ugm3 * MOLAR_VOLUME_L / MOLAR_MASS_G[gas]


def epa_concentration(key: str, ugm3: float) -> float:
    """The concentration in the EPA's unit for ``key``, truncated as the EPA requires."""
    gas, factor, decimals = _UNITS[key]
    value = ugm3 if gas is None else ugm3_to_ppb(gas, ugm3) * factor
    return truncate(value, decimals)


def us_sub_index(key: str, ugm3: float) -> int | None:
    """EPA sub-index for one input (µg/m³), or None where the EPA table defines none."""
    if key not in _UNITS:
        raise ValueError(f"unknown US AQI input {key!r}; expected one of {INPUTS}")
    if not ugm3 >= 0:
        raise ValueError(f"{key} concentration must be >= 0, got {ugm3!r}")
    concentration = epa_concentration(key, ugm3)
    table = _TABLES[key]
    if key == "o3_8h" and concentration > table[-1][1]:
        table = _TABLES["o3_1h"]
    if concentration < table[0][0]:
        return None
    for c_lo, c_hi, i_lo, i_hi in table:
        if concentration <= c_hi:
            return round_half_up((i_hi - i_lo) / (c_hi - c_lo) * (concentration - c_lo) + i_lo)
    return 500


def us_band_for(value: int) -> Band:
    return band_for_value(BANDS, value)


def us_aqi(concentrations: Mapping[str, float]) -> AqiResult | None:
    """The US AQI of whatever inputs are given (see the module docstring for the keys).

    None when no input defines a sub-index.  For O3 the larger of the 8-hour and 1-hour
    sub-indices counts, as the EPA recommends where both exist.
    """
    subs: dict[str, int] = {}
    for key, ugm3 in concentrations.items():
        value = us_sub_index(key, ugm3)
        if value is not None:
            subs[key] = value
    if not subs:
        return None
    dominant = max(INPUTS, key=lambda k: subs.get(k, -1))
    return AqiResult(subs[dominant], dominant, subs, us_band_for(subs[dominant]))


def inputs_for_hour(window: Mapping[str, Sequence[float | None]]) -> dict[str, float]:
    """US AQI inputs for the newest hour of per-pollutant hourly means (newest first).

    PM: NowCast with an unrounded weight (the EPA's practice); O3 and CO: the mean of the last
    8 hours (at least 6 present); O3, SO2, NO2: the newest 1-hour mean.
    """
    inputs: dict[str, float] = {}
    for pollutant, values in window.items():
        if pollutant in ("pm25", "pm10"):
            value = nowcast(values, weight_decimals=None)
            if value is not None:
                inputs[pollutant] = value
            continue
        if pollutant != "co" and values and values[0] is not None:
            inputs[f"{pollutant}_1h"] = values[0]
        if pollutant in ("o3", "co"):
            mean = max_rolling_mean(values[:8], 8, EIGHT_HOUR_MIN)
            if mean is not None:
                inputs[f"{pollutant}_8h"] = mean
    return inputs


def inputs_for_day(day: Mapping[str, Sequence[float | None]]) -> dict[str, float]:
    """US AQI inputs for a day of hourly means (in time order), with the VN daily coverage.

    PM: the 24-hour mean; O3 and CO: the day's highest 8-hour mean; O3, SO2, NO2: the day's
    highest 1-hour mean.  A pollutant with fewer than 18 hourly means is left out.
    """
    inputs: dict[str, float] = {}
    for pollutant, values in day.items():
        present = [v for v in values if v is not None]
        if len(present) < DAILY_MIN_HOURS:
            continue
        if pollutant in ("pm25", "pm10"):
            inputs[pollutant] = sum(present) / len(present)
            continue
        if pollutant != "co":
            inputs[f"{pollutant}_1h"] = max(present)
        if pollutant in ("o3", "co"):
            mean = max_rolling_mean(values, 8, EIGHT_HOUR_MIN)
            if mean is not None:
                inputs[f"{pollutant}_8h"] = mean
    return inputs
