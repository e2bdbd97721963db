"""Open-data exports: readings of one kind in an area and time range, read with a cursor.

Rows stream from a server-side cursor in batches, so an export of millions of readings holds
one batch in memory, not the whole answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import asyncpg

from urbanpulse.core.catalogue import Kind
from urbanpulse.storage.geo import SUBTREE_SQL

BATCH_ROWS = 2000


def export_sql(kind: Kind, by_area: bool) -> str:
    columns = ", ".join(f"r.{f.column}" for f in kind.stored_fields)
    area = f"AND s.area_id IN ({SUBTREE_SQL.format(param='$3')})" if by_area else ""
    return f"""
        SELECT r.sensor_id, r.ts, r.received_at, s.area_id,
               ST_X(s.location::geometry) AS lon, ST_Y(s.location::geometry) AS lat, {columns}
        FROM {kind.table} r JOIN sensors s USING (sensor_id)
        WHERE r.ts >= $1 AND r.ts < $2 {area}
        ORDER BY r.ts, r.sensor_id
    """


async def stream_readings(
    pool: asyncpg.Pool, kind: Kind, area_id: str | None, start: datetime, end: datetime
) -> AsyncIterator[list[asyncpg.Record]]:
    """Batches of export rows, oldest first, from a cursor on a connection of its own."""
    args: list[object] = [start, end] + ([area_id] if area_id is not None else [])
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        cursor = await conn.cursor(export_sql(kind, area_id is not None), *args)
        while True:
            batch = await cursor.fetch(BATCH_ROWS)
            if not batch:
                return
            yield batch
