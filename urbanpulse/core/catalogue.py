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
class Label:
    """What operators call a kind or a field, in Vietnamese and in English (alerts, boards)."""

    vi: str
    en: str


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    minimum: float
    maximum: float
    description: str
    label: Label
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
    label: Label
    unit: str = ""

    @property
    def column(self) -> str:
        return self.name


@dataclass(frozen=True)
class Kind:
    name: str
    label: Label
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

    def field_label(self, name: str) -> Label | None:
        """The label of a measured or derived field of this kind, if it has one by that name."""
        return next((f.label for f in self.stored_fields if f.name == name), None)

    def field_unit(self, name: str) -> str:
        """The unit of a measured or derived field ("" for unitless indices and codes)."""
        found = next((f for f in self.stored_fields if f.name == name), None)
        unit = found.unit if found else ""
        return "" if unit == "code" else unit

    @property
    def table(self) -> str:
        """The hypertable holding this kind's readings."""
        return f"readings_{self.name}"


UG = "µg/m³"
MG_L = "mg/L"
VOL = "% vol"
MG_NM3 = "mg/Nm³"  # dry flue gas at 0 °C and 101.325 kPa, as measured (O2 not corrected)

# Stack pollutants whose concentration is also stored at the reference oxygen of QCVN
# 61-MT:2016/BTNMT (see urbanpulse/indices/stack_oxygen.py): (metric, description, short label).
STACK_POLLUTANTS: tuple[tuple[str, str, Label], ...] = (
    ("dust", "Total suspended particulate (dust)", Label("Bụi tổng", "Total dust")),
    ("so2", "Sulphur dioxide", Label("SO2", "SO2")),
    ("nox", "Nitrogen oxides as NO2", Label("NOx (tính theo NO2)", "NOx as NO2")),
    ("co", "Carbon monoxide", Label("CO", "CO")),
    ("hcl", "Hydrogen chloride", Label("HCl", "HCl")),
    ("hf", "Hydrogen fluoride", Label("HF", "HF")),
    (
        "toc",
        "Total organic carbon",
        Label("Tổng cacbon hữu cơ (TOC)", "Total organic carbon (TOC)"),
    ),
)

KINDS: Mapping[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind(
            "air",
            Label("không khí", "air"),
            "Ambient air quality station or low-cost sensor",
            (
                Metric(
                    "pm25",
                    UG,
                    0,
                    2000,
                    "Fine particulate matter PM2.5",
                    Label("Bụi PM2.5", "PM2.5"),
                ),
                Metric("pm10", UG, 0, 3000, "Particulate matter PM10", Label("Bụi PM10", "PM10")),
                Metric("no2", UG, 0, 10000, "Nitrogen dioxide", Label("NO2", "NO2")),
                Metric("o3", UG, 0, 5000, "Ozone", Label("O3", "O3")),
                Metric("so2", UG, 0, 10000, "Sulphur dioxide", Label("SO2", "SO2")),
                Metric("co", UG, 0, 500000, "Carbon monoxide", Label("CO", "CO")),
                Metric(
                    "temperature",
                    "°C",
                    -40,
                    85,
                    "Air temperature",
                    Label("Nhiệt độ", "Temperature"),
                ),
                Metric("humidity", "%", 0, 100, "Relative humidity", Label("Độ ẩm", "Humidity")),
            ),
            (
                DerivedField(
                    "vn_aqi",
                    "integer",
                    "Hourly VN_AQI (Decision 1459/QĐ-TCMT)",
                    Label("Chỉ số VN_AQI", "VN_AQI"),
                ),
                DerivedField(
                    "vn_aqi_pollutant",
                    "text",
                    "Pollutant that sets the VN_AQI",
                    Label("Chất quyết định VN_AQI", "Dominant pollutant"),
                ),
            ),
        ),
        Kind(
            "water",
            Label("nước", "water"),
            "Surface-water quality probe (rivers, canals, lakes)",
            (
                Metric("ph", "pH", 0, 14, "Acidity", Label("pH", "pH")),
                Metric(
                    "do",
                    MG_L,
                    0,
                    25,
                    "Dissolved oxygen",
                    Label("Oxy hòa tan (DO)", "Dissolved oxygen (DO)"),
                    column_name="dissolved_oxygen",
                ),
                Metric(
                    "temperature",
                    "°C",
                    -5,
                    60,
                    "Water temperature",
                    Label("Nhiệt độ", "Temperature"),
                ),
                Metric("turbidity", "NTU", 0, 4000, "Turbidity", Label("Độ đục", "Turbidity")),
                Metric(
                    "conductivity",
                    "µS/cm",
                    0,
                    200000,
                    "Electrical conductivity",
                    Label("Độ dẫn điện", "Conductivity"),
                ),
                Metric(
                    "bod5",
                    MG_L,
                    0,
                    2000,
                    "Biochemical oxygen demand (5 days)",
                    Label("BOD5", "BOD5"),
                ),
                Metric("cod", MG_L, 0, 10000, "Chemical oxygen demand", Label("COD", "COD")),
                Metric(
                    "nh4_n",
                    MG_L,
                    0,
                    1000,
                    "Ammonium as nitrogen",
                    Label("Amoni (N-NH4)", "Ammonium (NH4-N)"),
                ),
                Metric(
                    "no3_n",
                    MG_L,
                    0,
                    500,
                    "Nitrate as nitrogen",
                    Label("Nitrat (N-NO3)", "Nitrate (NO3-N)"),
                ),
                Metric(
                    "no2_n",
                    MG_L,
                    0,
                    100,
                    "Nitrite as nitrogen",
                    Label("Nitrit (N-NO2)", "Nitrite (NO2-N)"),
                ),
                Metric(
                    "po4_p",
                    MG_L,
                    0,
                    500,
                    "Phosphate as phosphorus",
                    Label("Phosphat (P-PO4)", "Phosphate (PO4-P)"),
                ),
                Metric(
                    "coliform",
                    "MPN/100 mL",
                    0,
                    1e9,
                    "Total coliform",
                    Label("Coliform", "Total coliform"),
                ),
            ),
            (
                DerivedField(
                    "wqi",
                    "integer",
                    "VN_WQI (Decision 1460/QĐ-TCMT)",
                    Label("Chỉ số VN_WQI", "VN_WQI"),
                ),
            ),
        ),
        Kind(
            "waste_bin",
            Label("thùng rác", "waste bin"),
            "Fill-level sensor in a public waste container",
            (
                Metric(
                    "fill", "%", 0, 100, "Fill level", Label("Mức đầy thùng rác", "Bin fill level")
                ),
                Metric(
                    "temperature",
                    "°C",
                    -20,
                    400,
                    "Inside temperature (fire detection)",
                    Label("Nhiệt độ", "Temperature"),
                ),
                Metric("tilt", "°", 0, 180, "Tilt from upright", Label("Độ nghiêng", "Tilt")),
                Metric("battery", "%", 0, 100, "Battery charge", Label("Pin", "Battery")),
            ),
        ),
        Kind(
            "waste_truck",
            Label("xe rác", "waste truck"),
            "Waste-collection truck tracker",
            (
                Metric("lat", "°", -90, 90, "Latitude (WGS 84)", Label("Vĩ độ", "Latitude")),
                Metric("lon", "°", -180, 180, "Longitude (WGS 84)", Label("Kinh độ", "Longitude")),
                Metric("speed", "km/h", 0, 200, "Ground speed", Label("Tốc độ", "Speed")),
                Metric("load", "kg", 0, 50000, "Load carried", Label("Tải trọng", "Load")),
            ),
        ),
        Kind(
            "landfill",
            Label("bãi chôn lấp", "landfill"),
            "Sanitary landfill monitoring point: gas probe, leachate well and pond",
            (
                Metric(
                    "ch4",
                    VOL,
                    0,
                    100,
                    "Methane in landfill gas (probe)",
                    Label("Khí mê-tan (CH4)", "Methane (CH4)"),
                ),
                Metric(
                    "co2",
                    VOL,
                    0,
                    100,
                    "Carbon dioxide in landfill gas (probe)",
                    Label("Khí CO2", "Carbon dioxide (CO2)"),
                ),
                Metric(
                    "o2",
                    VOL,
                    0,
                    25,
                    "Oxygen in landfill gas (probe)",
                    Label("Oxy (O2)", "Oxygen (O2)"),
                ),
                Metric(
                    "h2s",
                    "ppm",
                    0,
                    10000,
                    "Hydrogen sulphide in landfill gas (probe)",
                    Label("Khí H2S", "Hydrogen sulphide (H2S)"),
                ),
                Metric(
                    "leachate_level",
                    "m",
                    0,
                    50,
                    "Leachate head above the liner",
                    Label("Mực nước rỉ rác", "Leachate level"),
                ),
                Metric(
                    "leachate_ph",
                    "pH",
                    0,
                    14,
                    "Leachate acidity",
                    Label("pH nước rỉ rác", "Leachate pH"),
                ),
                Metric(
                    "leachate_cod",
                    MG_L,
                    0,
                    100000,
                    "Leachate chemical oxygen demand",
                    Label("COD nước rỉ rác", "Leachate COD"),
                ),
                Metric(
                    "temperature",
                    "°C",
                    -10,
                    100,
                    "Gas temperature in the probe",
                    Label("Nhiệt độ", "Temperature"),
                ),
            ),
        ),
        Kind(
            "incinerator",
            Label("lò đốt rác", "incinerator"),
            "Continuous emission monitor on a waste incinerator stack",
            (
                *(
                    Metric(
                        name,
                        MG_NM3,
                        0,
                        20000,
                        f"{text}, as measured",
                        Label(f"{short.vi} (đo thực tế)", f"{short.en} (as measured)"),
                    )
                    for name, text, short in STACK_POLLUTANTS
                ),
                Metric(
                    "o2",
                    VOL,
                    0,
                    21,
                    "Oxygen in the flue gas",
                    Label("Oxy trong khí thải", "Flue-gas oxygen"),
                ),
                Metric(
                    "temperature",
                    "°C",
                    0,
                    1400,
                    "Flue-gas temperature at the stack",
                    Label("Nhiệt độ khí thải", "Flue-gas temperature"),
                ),
                Metric(
                    "flow",
                    "Nm³/h",
                    0,
                    5e6,
                    "Flue-gas flow",
                    Label("Lưu lượng khí thải", "Flue-gas flow"),
                ),
            ),
            tuple(
                DerivedField(
                    f"{name}_ref",
                    "double precision",
                    f"{text} at the reference O2 of QCVN 61-MT:2016/BTNMT, mg/Nm³",
                    Label(f"{short.vi} (quy về O2 chuẩn)", f"{short.en} (at reference O2)"),
                    MG_NM3,
                )
                for name, text, short in STACK_POLLUTANTS
            ),
        ),
        Kind(
            "traffic_camera",
            Label("camera giao thông", "traffic camera"),
            "Traffic camera analytics, one record per counting interval",
            (
                Metric(
                    "vehicles",
                    "vehicles",
                    0,
                    500000,
                    "All vehicles counted (any class)",
                    Label("Tổng số xe", "All vehicles"),
                    integer=True,
                ),
                Metric(
                    "motorbike",
                    "vehicles",
                    0,
                    100000,
                    "Motorbikes counted",
                    Label("Xe máy", "Motorbikes"),
                    integer=True,
                ),
                Metric(
                    "car",
                    "vehicles",
                    0,
                    100000,
                    "Cars counted",
                    Label("Ô tô", "Cars"),
                    integer=True,
                ),
                Metric(
                    "bus",
                    "vehicles",
                    0,
                    100000,
                    "Buses counted",
                    Label("Xe buýt", "Buses"),
                    integer=True,
                ),
                Metric(
                    "truck",
                    "vehicles",
                    0,
                    100000,
                    "Trucks counted",
                    Label("Xe tải", "Trucks"),
                    integer=True,
                ),
                Metric(
                    "bicycle",
                    "vehicles",
                    0,
                    100000,
                    "Bicycles counted",
                    Label("Xe đạp", "Bicycles"),
                    integer=True,
                ),
                Metric(
                    "avg_speed",
                    "km/h",
                    0,
                    250,
                    "Mean speed of counted vehicles",
                    Label("Tốc độ trung bình", "Average speed"),
                ),
                Metric(
                    "occupancy",
                    "%",
                    0,
                    100,
                    "Share of time the detection zone is occupied",
                    Label("Độ chiếm dụng làn", "Lane occupancy"),
                ),
                Metric(
                    "queue_length",
                    "m",
                    0,
                    20000,
                    "Queue length",
                    Label("Chiều dài hàng chờ", "Queue length"),
                ),
                Metric(
                    "incident",
                    "code",
                    0,
                    999,
                    "Incident code (0 = none)",
                    Label("Mã sự cố", "Incident code"),
                    integer=True,
                ),
            ),
        ),
    )
}

# Sensor ids become MQTT topic levels, Kafka keys and URL path segments: keep them plain.
# Check an id with ``SENSOR_ID_PATTERN.fullmatch``: a ``$`` anchor would also match just before a
# trailing newline.
SENSOR_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
# The same rule as a pydantic / JSON Schema ``pattern`` (the API's models, hence OpenAPI). Those
# search the text instead of matching all of it, so this one is anchored; their ``$`` (Rust
# regex, ECMA-262) is the very end of the text.
SENSOR_ID_SCHEMA_PATTERN = f"^{SENSOR_ID_PATTERN.pattern}$"


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
