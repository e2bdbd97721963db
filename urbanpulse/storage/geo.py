"""Spatial read queries behind the geo API: filtered sensors, clusters by zoom, area summaries.

Every spatial filter runs in PostGIS on the ``sensors.location`` geography column, whose GiST
index serves ``&&`` (bounding box), ``ST_DWithin`` (radius, metres) and ``ST_Covers`` (polygon).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from urbanpulse.storage.scales import MAP_SCALES, severity_code_sql

# Sensor ids of an area and every area below it.
SUBTREE_SQL = """
    WITH RECURSIVE sub(area_id) AS (
        SELECT area_id FROM areas WHERE area_id = {param}
        UNION
        SELECT a.area_id FROM areas a JOIN sub ON a.parent_id = sub.area_id
    ) SELECT area_id FROM sub
"""


@dataclass(frozen=True)
class SensorFilter:
    kind: str | None = None
    area_id: str | None = None
    status: str | None = None
    bbox: tuple[float, float, float, float] | None = None  # minLon, minLat, maxLon, maxLat
    near: tuple[float, float] | None = None  # lon, lat
    radius_m: float | None = None
    within_geojson: str | None = None  # Polygon or MultiPolygon


@dataclass
class _Sql:
    """WHERE clauses with their positional parameters, numbered as they are added."""

    args: list[Any] = field(default_factory=list)
    clauses: list[str] = field(default_factory=list)

    def param(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def where(self) -> str:
        return " AND ".join(self.clauses) if self.clauses else "TRUE"


def _filter_sql(f: SensorFilter, sql: _Sql) -> None:
    if f.kind is not None:
        sql.clauses.append(f"s.kind = {sql.param(f.kind)}")
    if f.status is not None:
        sql.clauses.append(f"s.status = {sql.param(f.status)}")
    if f.area_id is not None:
        sql.clauses.append(f"s.area_id IN ({SUBTREE_SQL.format(param=sql.param(f.area_id))})")
    if f.bbox is not None:
        lo_x, lo_y, hi_x, hi_y = (sql.param(v) for v in f.bbox)
        # The geography index finds candidates; the exact box is checked on lon/lat.  Edges
        # cut to 1° follow the box's parallels: a geography edge is a great circle, so one of
        # 180° (a whole-world box) was refused ("Antipodal edge", a 500) and a wider one went
        # the short way round.
        envelope = f"ST_MakeEnvelope({lo_x}, {lo_y}, {hi_x}, {hi_y}, 4326)"
        sql.clauses.append(
            f"s.location && ST_Segmentize({envelope}, 1)::geography "
            f"AND ST_X(s.location::geometry) BETWEEN {lo_x} AND {hi_x} "
            f"AND ST_Y(s.location::geometry) BETWEEN {lo_y} AND {hi_y}"
        )
    if f.near is not None and f.radius_m is not None:
        point = _point_sql(f.near, sql)
        sql.clauses.append(f"ST_DWithin(s.location, {point}, {sql.param(f.radius_m)})")
    if f.within_geojson is not None:
        polygon = f"ST_GeomFromGeoJSON({sql.param(f.within_geojson)})::geography"
        sql.clauses.append(f"ST_Covers({polygon}, s.location)")


def _point_sql(point: tuple[float, float], sql: _Sql) -> str:
    lon, lat = point
    return f"ST_SetSRID(ST_MakePoint({sql.param(lon)}, {sql.param(lat)}), 4326)::geography"


async def area_exists(conn: asyncpg.Connection, area_id: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM areas WHERE area_id = $1", area_id))


def _json(value: Any) -> Any:
    return orjson.loads(value) if value is not None else None


async def find_sensors(
    conn: asyncpg.Connection, f: SensorFilter, limit: int, offset: int
) -> tuple[int, list[dict[str, Any]]]:
    """(total matching, one page of sensors with their latest reading), nearest first with
    ``near``, else by id."""
    sql = _Sql()
    _filter_sql(f, sql)
    distance = "NULL::float8"
    order = "s.sensor_id"
    if f.near is not None:
        distance = f"ST_Distance(s.location, {_point_sql(f.near, sql)})"
        order = "distance_m, s.sensor_id"
    rows = await conn.fetch(
        f"""
        SELECT s.sensor_id, s.kind, s.name, s.status, s.area_id, s.metadata,
               ST_X(s.location::geometry) AS lon, ST_Y(s.location::geometry) AS lat,
               l.ts, l.received_at, l."values", l.derived,
               {distance} AS distance_m, count(*) OVER () AS total
        FROM sensors s
        LEFT JOIN sensor_latest l USING (sensor_id)
        WHERE {sql.where()}
        ORDER BY {order}
        LIMIT {sql.param(limit)} OFFSET {sql.param(offset)}
        """,
        *sql.args,
    )
    total = int(rows[0]["total"]) if rows else await _count(conn, f) if offset else 0
    return total, [
        {
            **dict(row),
            "metadata": _json(row["metadata"]),
            "values": _json(row["values"]),
            "derived": _json(row["derived"]),
        }
        for row in rows
    ]


async def _count(conn: asyncpg.Connection, f: SensorFilter) -> int:
    sql = _Sql()
    _filter_sql(f, sql)
    count: int = await conn.fetchval(
        f"SELECT count(*) FROM sensors s WHERE {sql.where()}", *sql.args
    )
    return count


async def get_sensor(conn: asyncpg.Connection, sensor_id: str) -> dict[str, Any] | None:
    sql = _Sql()
    sql.clauses.append(f"s.sensor_id = {sql.param(sensor_id)}")
    rows = await conn.fetch(
        f"""
        SELECT s.sensor_id, s.kind, s.name, s.status, s.area_id, s.metadata,
               ST_X(s.location::geometry) AS lon, ST_Y(s.location::geometry) AS lat,
               l.ts, l.received_at, l."values", l.derived, NULL::float8 AS distance_m
        FROM sensors s LEFT JOIN sensor_latest l USING (sensor_id)
        WHERE {sql.where()}
        """,
        *sql.args,
    )
    if not rows:
        return None
    row = rows[0]
    return {
        **dict(row),
        "metadata": _json(row["metadata"]),
        "values": _json(row["values"]),
        "derived": _json(row["derived"]),
    }


async def sensor_clusters(
    conn: asyncpg.Connection, f: SensorFilter, cell_degrees: float
) -> list[dict[str, Any]]:
    """Sensors snapped to a grid of ``cell_degrees``: one row per occupied cell.

    Each row has count, the mean position, the cell's grid point (``cell_lon``, ``cell_lat``:
    grid points are one cell apart, so the map can draw clusters there without overlap), the
    worst severity code (see ``severity_code_sql``) and, for a cell holding one sensor, that
    sensor's id, kind and name.
    """
    sql = _Sql()
    _filter_sql(f, sql)
    sql.clauses.append("s.location IS NOT NULL")
    cell = sql.param(cell_degrees)
    rows = await conn.fetch(
        f"""
        WITH located AS (
            SELECT s.sensor_id, s.kind, s.name, s.location::geometry AS g,
                   ST_SnapToGrid(s.location::geometry, {cell}) AS grid_point,
                   {severity_code_sql("s", "l")} AS code, l.ts
            FROM sensors s LEFT JOIN sensor_latest l USING (sensor_id)
            WHERE {sql.where()}
        )
        SELECT count(*) AS count, avg(ST_X(g)) AS lon, avg(ST_Y(g)) AS lat,
               ST_X(grid_point) AS cell_lon, ST_Y(grid_point) AS cell_lat,
               max(code) AS code, min(sensor_id) AS sensor_id, min(kind) AS kind,
               min(name) AS name, count(ts) AS reporting,
               array_agg(DISTINCT kind) AS kinds
        FROM located
        GROUP BY ST_X(grid_point), ST_Y(grid_point)
        ORDER BY count DESC, sensor_id
        """,
        *sql.args,
    )
    return [dict(r) for r in rows]


def _summary_columns() -> str:
    parts = []
    for scale in MAP_SCALES:
        value = scale.sql_value("l")
        worst = scale.worst
        parts.append(
            f"avg({value}) FILTER (WHERE s.kind = '{scale.kind}') AS {scale.field}_mean, "
            f"{worst}({value}) FILTER (WHERE s.kind = '{scale.kind}') AS {scale.field}_worst"
        )
    parts.append(
        "count(*) FILTER (WHERE s.kind = 'waste_bin' AND (l.\"values\"->>'fill')::float8 > 90)"
        " AS bins_over_90"
    )
    return ",\n".join(parts)


async def area_summaries(
    conn: asyncpg.Connection,
    level: str | None,
    area_id: str | None,
    fresh_since: datetime,
    simplify_degrees: float,
) -> list[dict[str, Any]]:
    """Areas with their polygon and, per kind, a summary of the latest readings of the active
    sensors in the area or below it (readings older than ``fresh_since`` are left out)."""
    rows = await conn.fetch(
        f"""
        WITH RECURSIVE chosen AS (
            SELECT area_id FROM areas
            WHERE ($1::text IS NULL OR level = $1) AND ($2::text IS NULL OR area_id = $2)
        ),
        sub(root, area_id) AS (
            SELECT area_id, area_id FROM chosen
            UNION
            SELECT sub.root, a.area_id FROM sub JOIN areas a ON a.parent_id = sub.area_id
        ),
        per_kind AS (
            SELECT sub.root, s.kind, count(*) AS sensors, count(l.sensor_id) AS reporting,
                   max(l.ts) AS latest_ts,
                   {_summary_columns()}
            FROM sub
            JOIN sensors s ON s.area_id = sub.area_id AND s.status = 'active'
            LEFT JOIN sensor_latest l ON l.sensor_id = s.sensor_id AND l.ts >= $3
            GROUP BY sub.root, s.kind
        )
        SELECT a.area_id, a.name, a.level, a.parent_id, a.properties,
               ST_AsGeoJSON(CASE WHEN $4::float8 > 0
                                 THEN ST_SimplifyPreserveTopology(a.geom, $4) ELSE a.geom END,
                            6) AS geometry,
               ST_AsGeoJSON(ST_PointOnSurface(a.geom), 6) AS label_point,
               coalesce(jsonb_agg(to_jsonb(p) - 'root') FILTER (WHERE p.kind IS NOT NULL),
                        '[]'::jsonb) AS per_kind
        FROM chosen c JOIN areas a USING (area_id)
        LEFT JOIN per_kind p ON p.root = a.area_id
        GROUP BY a.area_id
        ORDER BY a.level, a.area_id
        """,
        level,
        area_id,
        fresh_since,
        simplify_degrees,
    )
    return [
        {
            "area_id": r["area_id"],
            "name": r["name"],
            "level": r["level"],
            "parent_id": r["parent_id"],
            "properties": _json(r["properties"]),
            "geometry": _json(r["geometry"]),
            "label_point": _json(r["label_point"]),
            "per_kind": _json(r["per_kind"]),
        }
        for r in rows
    ]


async def open_alerts_by_area(conn: asyncpg.Connection) -> dict[str, int] | None:
    """Open (not resolved) alerts per area, counting an area's subtree; None without alerts.

    The alerts table belongs to the alert engine; until it exists this returns None.
    """
    if not await conn.fetchval("SELECT to_regclass('alerts') IS NOT NULL"):
        return None
    try:
        rows = await conn.fetch(
            """
            WITH RECURSIVE up(area_id, root) AS (
                SELECT area_id, area_id FROM areas
                UNION
                SELECT up.area_id, a.parent_id FROM up JOIN areas a ON a.area_id = up.root
                WHERE a.parent_id IS NOT NULL
            )
            SELECT up.root AS area_id, count(*) AS n
            FROM alerts al JOIN up ON up.area_id = al.area_id
            WHERE al.state <> 'resolved'
            GROUP BY up.root
            """
        )
    except asyncpg.PostgresError:
        return None
    return {r["area_id"]: int(r["n"]) for r in rows}


async def map_extent(conn: asyncpg.Connection) -> list[float] | None:
    """[minLon, minLat, maxLon, maxLat] of the active located sensors, else of all areas.

    The sensors are the city the map watches; the areas may cover several cities."""
    for sql in (
        "SELECT ST_Extent(location::geometry) AS e FROM sensors WHERE status = 'active'",
        "SELECT ST_Extent(geom) AS e FROM areas",
    ):
        row = await conn.fetchrow(
            f"SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM ({sql}) x"
        )
        if row is not None and row[0] is not None:
            return [float(v) for v in row]
    return None


async def area_levels(conn: asyncpg.Connection) -> list[str]:
    """The levels areas are loaded at, broadest first (fewest areas first)."""
    rows = await conn.fetch("SELECT level FROM areas GROUP BY level ORDER BY count(*), level")
    return [r["level"] for r in rows]
