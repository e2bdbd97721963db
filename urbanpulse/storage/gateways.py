"""The gateway registry: which gateways exist and which sensors each one speaks for.

A sensor belongs to at most one gateway at a time (``gateway_sensors`` is keyed by sensor).  A
revoked gateway keeps its row and its bindings, for the record; its sensors may be bound to
another gateway.  The broker's credentials and ACLs are derived from these rows
(``urbanpulse/gateways/``); no password is stored here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from urbanpulse.gateways.acl import BoundSensor

GATEWAYS_SCHEMA = """
CREATE TABLE IF NOT EXISTS gateways (
    gateway_id  text PRIMARY KEY,
    name        text,
    -- The topic root its ACLs were written for (the settings' topic_root at creation).
    topic_root  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE TABLE IF NOT EXISTS gateway_sensors (
    sensor_id   text PRIMARY KEY REFERENCES sensors (sensor_id) ON DELETE CASCADE,
    gateway_id  text NOT NULL REFERENCES gateways (gateway_id),
    bound_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS gateway_sensors_gateway_idx ON gateway_sensors (gateway_id);
"""


@dataclass(frozen=True)
class Gateway:
    gateway_id: str
    name: str | None
    topic_root: str
    created_at: datetime
    revoked_at: datetime | None
    sensors: tuple[str, ...]

    @property
    def active(self) -> bool:
        return self.revoked_at is None


_SELECT = """
SELECT g.gateway_id, g.name, g.topic_root, g.created_at, g.revoked_at,
       coalesce(array_agg(b.sensor_id ORDER BY b.sensor_id)
                FILTER (WHERE b.sensor_id IS NOT NULL), '{}') AS sensors
FROM gateways g LEFT JOIN gateway_sensors b USING (gateway_id)
"""


def _gateway(row: asyncpg.Record) -> Gateway:
    return Gateway(
        row["gateway_id"],
        row["name"],
        row["topic_root"],
        row["created_at"],
        row["revoked_at"],
        tuple(row["sensors"]),
    )


async def insert_gateway(
    conn: asyncpg.Connection, gateway_id: str, name: str | None, topic_root: str
) -> bool:
    """Add a gateway; False if one with that id exists (revoked ones included)."""
    status: str = await conn.execute(
        "INSERT INTO gateways (gateway_id, name, topic_root) VALUES ($1, $2, $3) "
        "ON CONFLICT (gateway_id) DO NOTHING",
        gateway_id,
        name,
        topic_root,
    )
    return status.endswith(" 1")


async def get_gateway(conn: asyncpg.Connection, gateway_id: str) -> Gateway | None:
    row = await conn.fetchrow(
        _SELECT + " WHERE g.gateway_id = $1 GROUP BY g.gateway_id", gateway_id
    )
    return None if row is None else _gateway(row)


async def list_gateways(conn: asyncpg.Connection) -> list[Gateway]:
    rows = await conn.fetch(_SELECT + " GROUP BY g.gateway_id ORDER BY g.gateway_id")
    return [_gateway(row) for row in rows]


async def mark_revoked(conn: asyncpg.Connection, gateway_id: str) -> bool:
    status: str = await conn.execute(
        "UPDATE gateways SET revoked_at = now() WHERE gateway_id = $1 AND revoked_at IS NULL",
        gateway_id,
    )
    return status.endswith(" 1")


@dataclass(frozen=True)
class BindingPlan:
    """What binding some sensors to a gateway would do, or why it cannot."""

    new: list[BoundSensor]  # not bound to this gateway yet
    unknown: list[str]  # not in the registry
    taken: dict[str, str]  # sensor -> the other active gateway that owns it


async def plan_binding(
    conn: asyncpg.Connection, gateway_id: str, sensor_ids: list[str]
) -> BindingPlan:
    rows = await conn.fetch(
        """
        SELECT s.sensor_id, s.kind, b.gateway_id AS owner, g.revoked_at AS owner_revoked
        FROM sensors s
        LEFT JOIN gateway_sensors b USING (sensor_id)
        LEFT JOIN gateways g ON g.gateway_id = b.gateway_id
        WHERE s.sensor_id = ANY($1::text[])
        FOR UPDATE OF s
        """,
        sensor_ids,
    )
    found = {row["sensor_id"]: row for row in rows}
    unknown = [sensor for sensor in dict.fromkeys(sensor_ids) if sensor not in found]
    taken = {
        sensor: row["owner"]
        for sensor, row in found.items()
        if row["owner"] not in (None, gateway_id) and row["owner_revoked"] is None
    }
    new = [
        BoundSensor(sensor, row["kind"])
        for sensor, row in sorted(found.items())
        if row["owner"] != gateway_id and sensor not in taken
    ]
    return BindingPlan(new, unknown, taken)


async def bind_sensors(
    conn: asyncpg.Connection, gateway_id: str, sensors: list[BoundSensor]
) -> None:
    await conn.execute(
        """
        INSERT INTO gateway_sensors (sensor_id, gateway_id) SELECT unnest($1::text[]), $2
        ON CONFLICT (sensor_id) DO UPDATE SET gateway_id = EXCLUDED.gateway_id, bound_at = now()
        """,
        [sensor.sensor_id for sensor in sensors],
        gateway_id,
    )
