"""The kind catalogue: the one source of truth for what each sensor family measures.

Validation, storage columns, API fields and simulators all read this module; adding a metric is
one edit here (the next migration adds its column).

Ranges are what a working sensor can physically report, not what is healthy: a reading outside
them is a broken or misconfigured device, so it is dead-lettered rather than stored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    minimum: float
    maximum: float
    description: str
    integer: bool = False
    # The storage column; differs from ``name`` only where the name is an SQL keyword.
    column_name: str | None = None

    @property
    def column(self) -> str:
        return self.column_name or self.name

    @property
    def sql_type(self) -> str:
        return "integer" if self.integer else "double precision"

    def problem_with(self, value: float) -> str | None:
        """Why ``value`` cannot be stored for this metric, or None when it can."""
        if not self.minimum <= value <= self.maximum:
            return (
                f"{self.name}={value!r} outside the possible range "
                f"{self.minimum:g}..{self.maximum:g} {self.unit}"
            )
        if self.integer and not float(value).is_integer():
            return f"{self.name}={value!r} must be a whole number"
        return None


@dataclass(frozen=True)
class DerivedField:
    """A value the stream processor computes for each reading of a kind (an index)."""

    name: str
    sql_type: str
    description: str

    @property
    def column(self) -> str:
        return self.name


@dataclass(frozen=True)
class Kind:
    name: str
    description: str
    metrics: tuple[Metric, ...]
    derived: tuple[DerivedField, ...] = ()
    by_name: Mapping[str, Metric] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {m.name: m for m in self.metrics})

    @property
    def stored_fields(self) -> tuple[Metric | DerivedField, ...]:
        """Every per-reading column of the kind's table, measured then derived."""
        return (*self.metrics, *self.derived)

    @property
    def table(self) -> str:
        """The hypertable holding this kind's readings."""
        return f"readings_{self.name}"


UG = "µg/m³"
MG_L = "mg/L"
VOL = "% vol"
MG_NM3 = "mg/Nm³"  # dry flue gas at 0 °C and 101.325 kPa, as measured (O2 not corrected)

# Stack pollutants whose concentration is also stored at the reference oxygen of QCVN
# 61-MT:2016/BTNMT (see urbanpulse/indices/stack_oxygen.py): (metric, description).
STACK_POLLUTANTS: tuple[tuple[str, str], ...] = (
    ("dust", "Total suspended particulate (dust)"),
    ("so2", "Sulphur dioxide"),
    ("nox", "Nitrogen oxides as NO2"),
    ("co", "Carbon monoxide"),
    ("hcl", "Hydrogen chloride"),
    ("hf", "Hydrogen fluoride"),
    ("toc", "Total organic carbon"),
)

KINDS: Mapping[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind(
            "air",
            "Ambient air quality station or low-cost sensor",
            (
                Metric("pm25", UG, 0, 2000, "Fine particulate matter PM2.5"),
                Metric("pm10", UG, 0, 3000, "Particulate matter PM10"),
                Metric("no2", UG, 0, 10000, "Nitrogen dioxide"),
                Metric("o3", UG, 0, 5000, "Ozone"),
                Metric("so2", UG, 0, 10000, "Sulphur dioxide"),
                Metric("co", UG, 0, 500000, "Carbon monoxide"),
                Metric("temperature", "°C", -40, 85, "Air temperature"),
                Metric("humidity", "%", 0, 100, "Relative humidity"),
            ),
            (
                DerivedField("vn_aqi", "integer", "Hourly VN_AQI (Decision 1459/QĐ-TCMT)"),
                DerivedField("vn_aqi_pollutant", "text", "Pollutant that sets the VN_AQI"),
            ),
        ),
        Kind(
            "water",
            "Surface-water quality probe (rivers, canals, lakes)",
            (
                Metric("ph", "pH", 0, 14, "Acidity"),
                Metric("do", MG_L, 0, 25, "Dissolved oxygen", column_name="dissolved_oxygen"),
                Metric("temperature", "°C", -5, 60, "Water temperature"),
                Metric("turbidity", "NTU", 0, 4000, "Turbidity"),
                Metric("conductivity", "µS/cm", 0, 200000, "Electrical conductivity"),
                Metric("bod5", MG_L, 0, 2000, "Biochemical oxygen demand (5 days)"),
                Metric("cod", MG_L, 0, 10000, "Chemical oxygen demand"),
                Metric("nh4_n", MG_L, 0, 1000, "Ammonium as nitrogen"),
                Metric("no3_n", MG_L, 0, 500, "Nitrate as nitrogen"),
                Metric("no2_n", MG_L, 0, 100, "Nitrite as nitrogen"),
                Metric("po4_p", MG_L, 0, 500, "Phosphate as phosphorus"),
                Metric("coliform", "MPN/100 mL", 0, 1e9, "Total coliform"),
            ),
            (DerivedField("wqi", "integer", "VN_WQI (Decision 1460/QĐ-TCMT)"),),
        ),
        Kind(
            "waste_bin",
            "Fill-level sensor in a public waste container",
            (
                Metric("fill", "%", 0, 100, "Fill level"),
                Metric("temperature", "°C", -20, 400, "Inside temperature (fire detection)"),
                Metric("tilt", "°", 0, 180, "Tilt from upright"),
                Metric("battery", "%", 0, 100, "Battery charge"),
            ),
        ),
        Kind(
            "waste_truck",
            "Waste-collection truck tracker",
            (
                Metric("lat", "°", -90, 90, "Latitude (WGS 84)"),
                Metric("lon", "°", -180, 180, "Longitude (WGS 84)"),
                Metric("speed", "km/h", 0, 200, "Ground speed"),
                Metric("load", "kg", 0, 50000, "Load carried"),
            ),
        ),
        Kind(
            "landfill",
            "Sanitary landfill monitoring point: gas probe, leachate well and pond",
            (
                Metric("ch4", VOL, 0, 100, "Methane in landfill gas (probe)"),
                Metric("co2", VOL, 0, 100, "Carbon dioxide in landfill gas (probe)"),
                Metric("o2", VOL, 0, 25, "Oxygen in landfill gas (probe)"),
                Metric("h2s", "ppm", 0, 10000, "Hydrogen sulphide in landfill gas (probe)"),
                Metric("leachate_level", "m", 0, 50, "Leachate head above the liner"),
                Metric("leachate_ph", "pH", 0, 14, "Leachate acidity"),
                Metric("leachate_cod", MG_L, 0, 100000, "Leachate chemical oxygen demand"),
                Metric("temperature", "°C", -10, 100, "Gas temperature in the probe"),
            ),
        ),
        Kind(
            "incinerator",
            "Continuous emission monitor on a waste incinerator stack",
            (
                *(
                    Metric(name, MG_NM3, 0, 20000, f"{text}, as measured")
                    for name, text in STACK_POLLUTANTS
                ),
                Metric("o2", VOL, 0, 21, "Oxygen in the flue gas"),
                Metric("temperature", "°C", 0, 1400, "Flue-gas temperature at the stack"),
                Metric("flow", "Nm³/h", 0, 5e6, "Flue-gas flow"),
            ),
            tuple(
                DerivedField(
                    f"{name}_ref",
                    "double precision",
                    f"{text} at the reference O2 of QCVN 61-MT:2016/BTNMT, mg/Nm³",
                )
                for name, text in STACK_POLLUTANTS
            ),
        ),
        Kind(
            "traffic_camera",
            "Traffic camera analytics, one record per counting interval",
            (
                Metric(
                    "vehicles",
                    "vehicles",
                    0,
                    500000,
                    "All vehicles counted (any class)",
                    integer=True,
                ),
                Metric("motorbike", "vehicles", 0, 100000, "Motorbikes counted", integer=True),
                Metric("car", "vehicles", 0, 100000, "Cars counted", integer=True),
                Metric("bus", "vehicles", 0, 100000, "Buses counted", integer=True),
                Metric("truck", "vehicles", 0, 100000, "Trucks counted", integer=True),
                Metric("bicycle", "vehicles", 0, 100000, "Bicycles counted", integer=True),
                Metric("avg_speed", "km/h", 0, 250, "Mean speed of counted vehicles"),
                Metric("occupancy", "%", 0, 100, "Share of time the detection zone is occupied"),
                Metric("queue_length", "m", 0, 20000, "Queue length"),
                Metric("incident", "code", 0, 999, "Incident code (0 = none)", integer=True),
            ),
        ),
    )
}

# Sensor ids become MQTT topic levels, Kafka keys and URL path segments: keep them plain.
SENSOR_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


class UnknownKindError(KeyError):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind

    def __str__(self) -> str:
        return f"unknown kind {self.kind!r}; known kinds: {', '.join(KINDS)}"


def get_kind(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise UnknownKindError(name) from None
