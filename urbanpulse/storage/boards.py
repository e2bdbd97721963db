"""Facility boards: each site of a kind with its latest reading and its active alerts.

The map shows kinds without a colour scale (landfills, incinerators) as boards: a few sites,
each read against its limits rather than on an index.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson


def _json(value: Any) -> Any:
    return None if value is None else orjson.loads(value)


async def board_sites(conn: asyncpg.Connection, kind: str) -> list[dict[str, Any]]:
    """Active sensors of ``kind`` with location, latest reading and active (unresolved)
    alerts, newest alert first."""
    alerts_exist = await conn.fetchval("SELECT to_regclass('alerts') IS NOT NULL")
    alerts = (
        """(SELECT coalesce(jsonb_agg(jsonb_build_object(
                'alert_id', a.alert_id, 'rule_id', a.rule_id, 'metric', a.metric,
                'severity', a.severity, 'state', a.state, 'opened_at', a.opened_at,
                'value', a.value, 'threshold', a.threshold,
                'message_vi', a.message_vi, 'message_en', a.message_en)
                ORDER BY a.opened_at DESC), '[]'::jsonb)
            FROM alerts a WHERE a.sensor_id = s.sensor_id AND a.state <> 'resolved')"""
        if alerts_exist
        else "'[]'::jsonb"
    )
    rows = await conn.fetch(
        f"""
        SELECT s.sensor_id, s.name, s.area_id,
               ST_X(s.location::geometry) AS lon, ST_Y(s.location::geometry) AS lat,
               l.ts, l."values", l.derived, {alerts} AS alerts
        FROM sensors s LEFT JOIN sensor_latest l USING (sensor_id)
        WHERE s.kind = $1 AND s.status = 'active'
        ORDER BY s.sensor_id
        """,
        kind,
    )
    return [
        {
            "sensor_id": r["sensor_id"],
            "name": r["name"],
            "area_id": r["area_id"],
            "location": None if r["lon"] is None else [r["lon"], r["lat"]],
            "ts": r["ts"],
            "values": _json(r["values"]) or {},
            "derived": _json(r["derived"]) or {},
            "alerts": _json(r["alerts"]),
        }
        for r in rows
    ]
