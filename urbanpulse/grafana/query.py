"""A typed query for Grafana's PostgreSQL data source, which the foundation SDK does not ship.

The SDK supports such additions through its ``Dataquery`` variant (see its "custom query type"
how-to); this is the model Grafana stores for a raw-SQL query of ``grafana-postgresql-datasource``.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from grafana_foundation_sdk.cog import builder, variants
from grafana_foundation_sdk.models.dashboard import DataSourceRef

# Grafana 11's type id of the core PostgreSQL plugin; the provisioned data source has this uid.
DATASOURCE_TYPE = "grafana-postgresql-datasource"
DATASOURCE_UID = "urbanpulse-timescaledb"
DATASOURCE = DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)

Format = Literal["time_series", "table"]


class SqlQuery(variants.Dataquery):
    def __init__(
        self, raw_sql: str = "", ref_id: str = "A", format_val: Format = "time_series"
    ) -> None:
        self.raw_sql = raw_sql
        self.ref_id = ref_id
        self.format_val = format_val

    def to_json(self) -> dict[str, object]:
        return {
            "refId": self.ref_id,
            "datasource": DATASOURCE,
            "editorMode": "code",
            "format": self.format_val,
            "rawQuery": True,
            "rawSql": self.raw_sql,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(data.get("rawSql", ""), data.get("refId", "A"), data.get("format", "table"))


class Sql(builder.Builder[variants.Dataquery]):
    """``Sql("SELECT ...").table()``: a raw SQL target for a panel."""

    def __init__(self, raw_sql: str) -> None:
        self._internal = SqlQuery(raw_sql)

    def build(self) -> SqlQuery:
        return self._internal

    def ref_id(self, ref_id: str) -> Self:
        self._internal.ref_id = ref_id
        return self

    def table(self) -> Self:
        self._internal.format_val = "table"
        return self
