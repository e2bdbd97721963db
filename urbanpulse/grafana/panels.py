"""Panel shapes shared by the boards, sized for a wall display read from three metres away."""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
from grafana_foundation_sdk.builders.common import (
    GraphThresholdsStyleConfig,
    ReduceDataOptions,
    StackingConfig,
    VizTextDisplayOptions,
)
from grafana_foundation_sdk.builders.dashboard import ThresholdsConfig
from grafana_foundation_sdk.models.common import (
    BigValueColorMode,
    BigValueGraphMode,
    BigValueTextMode,
    GraphThresholdsStyleMode,
    StackingMode,
    TableCellHeight,
    VizOrientation,
)
from grafana_foundation_sdk.models.dashboard import Threshold, ThresholdsMode

from urbanpulse.alerts.rules import Rule
from urbanpulse.core.catalogue import Metric
from urbanpulse.grafana.query import DATASOURCE, Sql
from urbanpulse.indices.bands import Band

# Any panel a board holds (they all take ``.id()``, which the SDK's Builder base lacks).
PanelBuilder = stat.Panel | timeseries.Panel | table.Panel | bargauge.Panel

# Grafana's own unit ids where one fits the catalogue's unit; any other shows as a suffix.
_GRAFANA_UNITS = {
    "%": "percent",
    "°C": "celsius",
    "km/h": "velocitykmh",
    "kg": "masskg",
    "m": "lengthm",
}

# Big numbers: a 96 px value and 28 px title stay legible on a 55" screen at 3 m.
WALL_TEXT = VizTextDisplayOptions().title_size(28).value_size(96)
NEUTRAL = "#5794f2"
# Show a text value (e.g. a pollutant's name) rather than only numeric fields.
TEXT_VALUE = ReduceDataOptions().calcs(["lastNotNull"]).values(False).fields("/.*/")


def unit_of(metric: Metric) -> str:
    return grafana_unit(metric.unit)


def grafana_unit(unit: str) -> str:
    """Grafana's name for a catalogue unit, or the unit itself as a suffix."""
    if not unit:
        return "none"
    return _GRAFANA_UNITS.get(unit, f"suffix: {unit}")


def band_thresholds(bands: Sequence[Band]) -> ThresholdsConfig:
    """Colour steps from an index scale (ascending bands, each from its ``low``)."""
    steps = [Threshold(None, bands[0].hex)]
    steps += [Threshold(float(band.low), band.hex) for band in bands[1:]]
    return ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(steps)


def rule_thresholds(rule: Rule) -> ThresholdsConfig:
    """Green on the good side of a rule's limit, red past it (as the alert engine compares)."""
    op, limit = rule.comparator
    if op in ("below", "at_most"):
        steps = [Threshold(None, "red"), Threshold(limit, "green")]
    else:
        steps = [Threshold(None, "green"), Threshold(limit, "red")]
    return ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(steps)


def rising_thresholds(limits: Sequence[tuple[float, str]]) -> ThresholdsConfig:
    """Green below the lowest limit, then each ``(limit, colour)`` from that limit up."""
    steps = [Threshold(None, "green")]
    steps += [Threshold(limit, colour) for limit, colour in sorted(limits)]
    return ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(steps)


def count_thresholds(colour: str) -> ThresholdsConfig:
    """Green at zero, ``colour`` from one up."""
    steps = [Threshold(None, "green"), Threshold(1.0, colour)]
    return ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(steps)


def plain_thresholds(color: str = NEUTRAL) -> ThresholdsConfig:
    return ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps([Threshold(None, color)])


def big_stat(
    title: str,
    sql: str,
    *,
    thresholds: ThresholdsConfig | None = None,
    unit: str = "none",
    width: int = 6,
    height: int = 6,
    description: str = "",
    per_row: bool = False,
) -> stat.Panel:
    """A wall-size number coloured by ``thresholds``; ``per_row`` shows one tile per row
    (the row's text column names the tile, e.g. one tile per area)."""
    reduce = ReduceDataOptions().calcs(["lastNotNull"]).values(per_row)
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(Sql(sql).table())
        .unit(unit)
        .thresholds(thresholds or plain_thresholds())
        .color_mode(BigValueColorMode.BACKGROUND)
        .graph_mode(BigValueGraphMode.NONE)
        .text_mode(BigValueTextMode.VALUE_AND_NAME if per_row else BigValueTextMode.AUTO)
        .orientation(VizOrientation.AUTO)
        .reduce_options(reduce)
        .text(WALL_TEXT)
        .no_value("-")
        .span(width)
        .height(height)
    )


def series(
    title: str,
    sql: str,
    *,
    unit: str = "none",
    thresholds: ThresholdsConfig | None = None,
    threshold_style: GraphThresholdsStyleMode = GraphThresholdsStyleMode.OFF,
    stacked: bool = False,
    width: int = 12,
    height: int = 9,
    description: str = "",
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(Sql(sql))
        .unit(unit)
        .thresholds(thresholds or plain_thresholds())
        .thresholds_style(GraphThresholdsStyleConfig().mode(threshold_style))
        .line_width(3)
        .fill_opacity(10)
        .span(width)
        .height(height)
    )
    if stacked:
        panel = panel.stacking(StackingConfig().mode(StackingMode.NORMAL)).fill_opacity(60)
    return panel


def bars(
    title: str,
    sql: str,
    *,
    thresholds: ThresholdsConfig,
    unit: str = "none",
    width: int = 12,
    height: int = 9,
    maximum: float | None = None,
) -> bargauge.Panel:
    """One bar per row (named by its text column), coloured by ``thresholds``."""
    panel = (
        bargauge.Panel()
        .title(title)
        .datasource(DATASOURCE)
        .with_target(Sql(sql).table())
        .unit(unit)
        .thresholds(thresholds)
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(True))
        .orientation(VizOrientation.HORIZONTAL)
        .text(VizTextDisplayOptions().title_size(20).value_size(28))
        .span(width)
        .height(height)
    )
    return panel.max(maximum) if maximum is not None else panel


def rows_table(
    title: str, sql: str, *, width: int = 24, height: int = 9, description: str = ""
) -> table.Panel:
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(Sql(sql).table())
        .thresholds(plain_thresholds("text"))
        .cell_height(TableCellHeight.LG)
        .span(width)
        .height(height)
    )
