"""The area / kind / sensor template variables every board has, and the SQL that reads them.

Grafana replaces ``$area`` with the chosen values quoted for SQL (``'a','b'``), or with the
variable's custom "All" value verbatim.  That value is the literal ``'__all'``, so each filter
is ``('__all' IN ($v) OR column IN ($v))``: "All" never expands to a long list, keeps sensors
without an area, and an empty option list (a fresh database) still gives valid SQL.
"""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders.dashboard import CustomVariable, QueryVariable
from grafana_foundation_sdk.models.dashboard import VariableOption, VariableRefresh, VariableSort

from urbanpulse.grafana.query import DATASOURCE

ALL_MARKER = "__all"
ALL_VALUE = f"'{ALL_MARKER}'"  # inserted verbatim by Grafana for "All"
ALL_OPTION = VariableOption(text="All", value="$__all", selected=True)


def chosen(column: str, variable: str) -> str:
    """SQL: ``column`` is one of the variable's values, or the variable is at "All"."""
    return f"({ALL_VALUE} IN (${variable}) OR {column} IN (${variable}))"


def in_areas(column: str) -> str:
    """SQL: ``column`` (an area id) is a chosen area or lies anywhere below one."""
    subtree = (
        "WITH RECURSIVE sub(area_id) AS (SELECT area_id FROM areas WHERE area_id IN ($area) "
        "UNION SELECT a.area_id FROM areas a JOIN sub ON a.parent_id = sub.area_id) "
        "SELECT area_id FROM sub"
    )
    return f"({ALL_VALUE} IN ($area) OR {column} IN ({subtree}))"


def kinds_sql(kinds: Sequence[str]) -> str:
    return ", ".join(f"'{kind}'" for kind in kinds)


def sensor_filter(kinds: Sequence[str], alias: str = "s") -> str:
    """SQL on the ``sensors`` table (as ``alias``): the board's kinds and the three variables."""
    return (
        f"{alias}.kind IN ({kinds_sql(kinds)}) AND {chosen(f'{alias}.kind', 'kind')} "
        f"AND {in_areas(f'{alias}.area_id')} AND {chosen(f'{alias}.sensor_id', 'sensor')}"
    )


def variables(kinds: Sequence[str]) -> list[QueryVariable | CustomVariable]:
    """area (with the areas below it), kind (the board's kinds), sensor (of those)."""
    area = (
        QueryVariable("area")
        .label("Khu vực / Area")
        .datasource(DATASOURCE)
        .query(
            "SELECT area_id AS __value, name || ' (' || level || ')' AS __text "
            "FROM areas ORDER BY level, name"
        )
    )
    kind = CustomVariable("kind").label("Loại / Kind").values(",".join(kinds))
    sensor = (
        QueryVariable("sensor")
        .label("Cảm biến / Sensor")
        .datasource(DATASOURCE)
        .query(
            f"SELECT s.sensor_id FROM sensors s WHERE s.kind IN ({kinds_sql(kinds)}) "
            f"AND {chosen('s.kind', 'kind')} AND {in_areas('s.area_id')} ORDER BY 1"
        )
    )
    for query_variable in (area, sensor):
        query_variable.refresh(VariableRefresh.ON_DASHBOARD_LOAD).sort(
            VariableSort.ALPHABETICAL_ASC
        )
    return [
        v.multi(True)
        .include_all(True)
        .all_value(ALL_VALUE)
        .current(ALL_OPTION)
        .allow_custom_value(False)  # pick from the list: a wall board needs no free text
        for v in (area, kind, sensor)
    ]
