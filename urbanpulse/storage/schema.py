"""Schema migrations, generated from the kind catalogue and safe to run again and again.

Every statement is idempotent (IF NOT EXISTS), so ``migrate`` brings any earlier version of the
schema up to date; a catalogue metric added later becomes ``ADD COLUMN IF NOT EXISTS``.
All parts may call it at start-up: an advisory lock serialises concurrent runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from urbanpulse.core.catalogue import KINDS, Kind
from urbanpulse.forecast.schema import migrate_forecasts
from urbanpulse.storage.alerts import ALERTS_SCHEMA
from urbanpulse.storage.gateways import GATEWAYS_SCHEMA
from urbanpulse.storage.keys import KEYS_SCHEMA
from urbanpulse.storage.outbox import OUTBOX_SCHEMA
from urbanpulse.storage.rollups import migrate_rollups

log = logging.getLogger(__name__)

# Any fixed number: it names the lock that serialises concurrent migrations.
MIGRATION_LOCK_ID = 70_312_025

BASE_SCHEMA = """
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE IF NOT EXISTS areas (
    area_id     text PRIMARY KEY,
    name        text NOT NULL,
    level       text NOT NULL,
    parent_id   text REFERENCES areas (area_id) ON DELETE SET NULL,
    geom        geometry(MultiPolygon, 4326) NOT NULL,
    properties  jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS areas_geom_gix ON areas USING gist (geom);
CREATE INDEX IF NOT EXISTS areas_level_idx ON areas (level);

CREATE TABLE IF NOT EXISTS sensors (
    sensor_id   text PRIMARY KEY,
    kind        text NOT NULL,
    name        text,
    location    geography(Point, 4326),
    area_id     text REFERENCES areas (area_id) ON DELETE SET NULL,
    status      text NOT NULL DEFAULT 'active'
                CHECK (status IN ('active', 'pending', 'retired')),
    metadata    jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS sensors_location_gix ON sensors USING gist (location);
CREATE INDEX IF NOT EXISTS sensors_kind_idx ON sensors (kind);

-- Newest reading per sensor by event time; kept in the same transaction as the readings so the
-- map never scans hypertables, and guarded so late or replayed readings never move it back.
CREATE TABLE IF NOT EXISTS sensor_latest (
    sensor_id   text PRIMARY KEY,
    kind        text NOT NULL,
    ts          timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    "values"    jsonb NOT NULL
);
ALTER TABLE sensor_latest ADD COLUMN IF NOT EXISTS derived jsonb NOT NULL DEFAULT '{}';
"""


def kind_table_ddl(kind: Kind) -> list[str]:
    table = kind.table
    statements = [
        f"""CREATE TABLE IF NOT EXISTS {table} (
            sensor_id   text NOT NULL,
            ts          timestamptz NOT NULL,
            received_at timestamptz NOT NULL,
            seq         bigint,
            PRIMARY KEY (sensor_id, ts)
        )""",
    ]
    statements += [
        f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column.column} {column.sql_type}"
        for column in kind.stored_fields
    ]
    statements.append(
        f"SELECT create_hypertable('{table}', by_range('ts', INTERVAL '1 day'), "
        "if_not_exists => TRUE)"
    )
    return statements


@dataclass(frozen=True)
class DatabaseCapabilities:
    timescaledb_version: str
    license: str  # "apache" (Debian build) or "timescale" (community edition)

    @property
    def has_community_features(self) -> bool:
        """Continuous aggregates, compression and policies exist only in the community edition."""
        return self.license == "timescale"


async def migrate(conn: asyncpg.Connection) -> DatabaseCapabilities:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_ID)
        await conn.execute(BASE_SCHEMA)
        await conn.execute(KEYS_SCHEMA)
        await conn.execute(GATEWAYS_SCHEMA)
        await conn.execute(ALERTS_SCHEMA)
        await conn.execute(OUTBOX_SCHEMA)
        for kind in KINDS.values():
            for statement in kind_table_ddl(kind):
                await conn.execute(statement)
        await migrate_rollups(conn, await detect_capabilities(conn))
        await migrate_forecasts(conn)
    capabilities = await detect_capabilities(conn)
    log.info(
        "database schema up to date (TimescaleDB %s, %s licence)",
        capabilities.timescaledb_version,
        capabilities.license,
    )
    return capabilities


async def detect_capabilities(conn: asyncpg.Connection) -> DatabaseCapabilities:
    version = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname='timescaledb'")
    license_ = await conn.fetchval("SELECT current_setting('timescaledb.license', true)")
    return DatabaseCapabilities(str(version), str(license_ or "apache"))
