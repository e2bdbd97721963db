"""FIWARE Smart Data Models (NGSI key-values or normalized form) as a second payload format.

Many vendors' gateways already speak these models, so a gateway may publish an
AirQualityObserved, WaterQualityObserved, WasteContainer or TrafficFlowObserved entity on the
usual ``<root>/<kind>/<sensor_id>/data`` topic.  This module only maps an entity to a
:class:`Candidate`; validation (ranges, timestamps, units) is the same as for our own format.

Decisions, each tested against the real examples in tests/fixtures/smart-data-models:
- Landfills and incinerators have no entity here: no Smart Data Model describes a landfill gas
  probe or a stack emission monitor (dataModel.Environment, .WasteManagement and .WasteWater
  were checked; WasteWater's OffGasStack is a wastewater plant's stack), and carrying stack
  concentrations in AirQualityObserved would mix them up with ambient air.  Those gateways
  publish our own format.
- Attributes the catalogue does not hold (no, nox, co2, tsp, metals, wind, ...) are ignored and
  reported in ``Candidate.ignored``: they are not faults, and dead-lettering every message from
  such a gateway would drown the real faults.
- ``relativeHumidity``, ``fillingLevel`` and ``occupancy`` are 0..1 fractions in the models;
  they become percentages.  ``conductivity`` is in S/m in the model.
- Pollutants without a ``unitCode`` are taken as µg/m³, the models' documented default; a
  normalized attribute's ``unitCode`` (UN/CEFACT, e.g. GP = mg/m³) overrides it.
- Nitrogen and phosphorus species are converted to "as N" / "as P", as Vietnamese limits state them.
- An ISO 8601 interval as ``dateObserved`` ("start/end") is timed at its end: the counts of a
  traffic interval are known only when it closes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from urbanpulse.core.untrusted import is_number
from urbanpulse.ingest.candidate import Candidate

# Molar-mass ratios: a species' concentration expressed as its nitrogen or phosphorus content.
N_PER_NH4 = 14.007 / 18.038
N_PER_NO3 = 14.007 / 62.004
N_PER_NO2 = 14.007 / 46.005
P_PER_PO4 = 30.974 / 94.971


@dataclass(frozen=True)
class Mapped:
    metric: str
    unit: str  # the model's default unit for the attribute
    factor: float = 1.0  # species conversion, applied after the unit conversion


@dataclass(frozen=True)
class Model:
    kind: str
    attributes: Mapping[str, Mapped]
    time_attributes: tuple[str, ...]


TIME_OBSERVED = ("dateObservedTo", "dateObserved", "dateModified", "dateUpdated")

MODELS: Mapping[str, Model] = {
    "AirQualityObserved": Model(
        "air",
        {
            "pm25": Mapped("pm25", "µg/m³"),
            "pm10": Mapped("pm10", "µg/m³"),
            "no2": Mapped("no2", "µg/m³"),
            "o3": Mapped("o3", "µg/m³"),
            "so2": Mapped("so2", "µg/m³"),
            "co": Mapped("co", "µg/m³"),
            "temperature": Mapped("temperature", "°C"),
            "relativeHumidity": Mapped("humidity", "fraction"),
        },
        TIME_OBSERVED,
    ),
    "WaterQualityObserved": Model(
        "water",
        {
            "pH": Mapped("ph", "pH"),
            "O2": Mapped("do", "mg/L"),
            "temperature": Mapped("temperature", "°C"),
            "Tur": Mapped("turbidity", "NTU"),
            "conductivity": Mapped("conductivity", "S/m"),
            "BOD": Mapped("bod5", "mg/L"),
            "COD": Mapped("cod", "mg/L"),
            "NH4": Mapped("nh4_n", "mg/L", N_PER_NH4),
            "NO3": Mapped("no3_n", "mg/L", N_PER_NO3),
            "NO2": Mapped("no2_n", "mg/L", N_PER_NO2),
            "P-PO4": Mapped("po4_p", "mg/L"),
            "PO4": Mapped("po4_p", "mg/L", P_PER_PO4),
        },
        TIME_OBSERVED,
    ),
    "WasteContainer": Model(
        "waste_bin",
        {
            "fillingLevel": Mapped("fill", "fraction"),
            "temperature": Mapped("temperature", "°C"),
        },
        # binLoggedTime is not in the model's schema, but the published example times itself so.
        (*TIME_OBSERVED, "binLoggedTime"),
    ),
    "TrafficFlowObserved": Model(
        "traffic_camera",
        {
            "intensity": Mapped("vehicles", "vehicles"),
            "occupancy": Mapped("occupancy", "fraction"),
            "averageVehicleSpeed": Mapped("avg_speed", "km/h"),
        },
        TIME_OBSERVED,
    ),
}

# TrafficFlowObserved.vehicleType (the model's enum, plus common spellings) -> catalogue class
VEHICLE_CLASSES = {
    "motorcycle": "motorbike",
    "motorbike": "motorbike",
    "moped": "motorbike",
    "scooter": "motorbike",
    "car": "car",
    "bus": "bus",
    "minibus": "bus",
    "lorry": "truck",
    "truck": "truck",
    "van": "truck",
    "bicycle": "bicycle",
}


def is_fiware_entity(item: Any) -> bool:
    return isinstance(item, dict) and item.get("type") in MODELS


def candidate_from_entity(entity: dict[str, Any], topic_kind: str) -> Candidate | str:
    """The entity as a candidate reading, or why it cannot be one."""
    model = MODELS[entity["type"]]
    if model.kind != topic_kind:
        return f"FIWARE {entity['type']} is kind {model.kind!r}, but the topic says {topic_kind!r}"
    attributes = {name: _attribute(value) for name, value in entity.items()}
    candidate = Candidate(ts=_observed_at(attributes, model), values={})
    location = attributes.get("location")
    candidate.location = location[0] if location else None
    values: dict[str, Any] = {}
    units: dict[str, str] = {}
    factors: dict[str, float] = {}
    for name, (value, unit_code) in attributes.items():
        mapped = model.attributes.get(name)
        if mapped is None:
            if is_number(value):
                candidate.ignored.append(name)
            continue
        metric = mapped.metric
        if name == "intensity" and isinstance(attributes.get("vehicleType", (None,))[0], str):
            vehicle_type = attributes["vehicleType"][0]
            metric = VEHICLE_CLASSES.get(vehicle_type.lower(), "vehicles")
        values[metric] = value
        units[metric] = unit_code or mapped.unit
        if mapped.factor != 1.0:
            factors[metric] = mapped.factor
    if not values:
        expected = ", ".join(model.attributes)
        return f"{entity['type']} carries no measurement we store (expected any of {expected})"
    candidate.values, candidate.units, candidate.factors = values, units, factors
    return candidate


def _attribute(raw: Any) -> tuple[Any, str | None]:
    """(value, unitCode) of a key-values or a normalized attribute."""
    if isinstance(raw, dict) and "value" in raw:
        metadata = raw.get("metadata")
        unit = metadata.get("unitCode") if isinstance(metadata, dict) else None
        if isinstance(unit, dict):
            unit = unit.get("value")
        return raw["value"], unit if isinstance(unit, str) else None
    return raw, None


def _observed_at(attributes: Mapping[str, tuple[Any, str | None]], model: Model) -> Any:
    for name in model.time_attributes:
        if name in attributes:
            value = attributes[name][0]
            if isinstance(value, str) and "/" in value:
                return value.rsplit("/", 1)[1]  # an interval is timed at its end
            return value
    return None
