"""Conversion of stated units to the catalogue's canonical units.

Gateways state units in many spellings: SI text ("mg/m3", "degF"), and the UN/CEFACT common
codes that NGSI/FIWARE payloads carry in ``unitCode`` ("GP" = mg/m³, "FAH" = °F).  Each
canonical unit lists the spellings it accepts and how to convert them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

Converter = Callable[[float], float]


def _scale(factor: float) -> Converter:
    return lambda value: value * factor


_SAME: Converter = _scale(1.0)

# canonical unit -> {accepted spelling (normalised by _normalise) -> converter to canonical}
CONVERSIONS: Mapping[str, Mapping[str, Converter]] = {
    "µg/m³": {"ug/m3": _SAME, "gq": _SAME, "mg/m3": _scale(1000.0), "gp": _scale(1000.0)},
    "°C": {
        "c": _SAME,
        "degc": _SAME,
        "°c": _SAME,
        "cel": _SAME,
        "f": lambda f: (f - 32.0) * 5.0 / 9.0,
        "degf": lambda f: (f - 32.0) * 5.0 / 9.0,
        "°f": lambda f: (f - 32.0) * 5.0 / 9.0,
        "fah": lambda f: (f - 32.0) * 5.0 / 9.0,
        "k": lambda k: k - 273.15,
        "kel": lambda k: k - 273.15,
    },
    # "C62" is UN/CEFACT "one": a 0..1 fraction, as FIWARE states humidity and fill levels.
    "%": {
        "%": _SAME,
        "percent": _SAME,
        "p1": _SAME,
        "fraction": _scale(100.0),
        "c62": _scale(100.0),
    },
    "mg/L": {"mg/l": _SAME, "m1": _SAME, "g/m3": _SAME, "ug/l": _scale(0.001)},
    "µS/cm": {
        "us/cm": _SAME,
        "g42": _SAME,
        "ms/cm": _scale(1000.0),
        "h61": _scale(1000.0),
        "s/m": _scale(10_000.0),
        "d10": _scale(10_000.0),
    },
    "km/h": {"km/h": _SAME, "kmh": _SAME, "m/s": _scale(3.6), "mts": _scale(3.6)},
    "kg": {"kg": _SAME, "kgm": _SAME, "t": _scale(1000.0), "tne": _scale(1000.0)},
    "m": {"m": _SAME, "mtr": _SAME, "km": _scale(1000.0), "kmt": _scale(1000.0)},
    "°": {"°": _SAME, "deg": _SAME, "dd": _SAME},
    # Gas shares by volume: "% v/v" is the same thing, ppm(v) is 1/10 000 of a per cent.
    "% vol": {
        "%": _SAME,
        "%vol": _SAME,
        "%v/v": _SAME,
        "vol%": _SAME,
        "p1": _SAME,
        "ppm": _scale(1e-4),
        "ppmv": _scale(1e-4),
        "59": _scale(1e-4),  # UN/CEFACT "59" = parts per million
    },
    "ppm": {"ppm": _SAME, "ppmv": _SAME, "59": _SAME, "ppb": _scale(1e-3), "61": _scale(1e-3)},
    # Stack concentrations: "mg/m3" from a CEMS means normal cubic metres; µg/Nm³ and g/Nm³ scale.
    "mg/Nm³": {
        "mg/nm3": _SAME,
        "mg/m3": _SAME,
        "gp": _SAME,
        "ug/nm3": _scale(0.001),
        "g/nm3": _scale(1000.0),
    },
    "Nm³/h": {"nm3/h": _SAME, "m3/h": _SAME, "mqh": _SAME, "nm3/s": _scale(3600.0)},
    "NTU": {"ntu": _SAME},
    "pH": {"ph": _SAME},
}


def _normalise(unit: str) -> str:
    return (
        unit.strip()
        .lower()
        .replace("µ", "u")
        .replace("μ", "u")  # Greek mu, which keyboards produce too
        .replace("³", "3")
        .replace(" ", "")
    )


def converter_for(canonical: str, stated: str) -> Converter | None:
    """How to turn a value in ``stated`` units into ``canonical`` ones; None if unknown."""
    if _normalise(stated) == _normalise(canonical):
        return _SAME
    return CONVERSIONS.get(canonical, {}).get(_normalise(stated))


def accepted_units(canonical: str) -> list[str]:
    return [canonical, *CONVERSIONS.get(canonical, {})]
