"""The forecast tables (kept apart from the learner so that migrations import no numpy)."""

from __future__ import annotations

import asyncpg

FORECASTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS forecasts (
    subject_kind text NOT NULL CHECK (subject_kind IN ('sensor', 'area')),
    subject_id   text NOT NULL,
    horizon_h    integer NOT NULL CHECK (horizon_h BETWEEN 1 AND 24),
    issued_at    timestamptz NOT NULL,
    origin       timestamptz NOT NULL,
    valid_at     timestamptz NOT NULL,
    method       text NOT NULL,
    skill        double precision,
    pm25         double precision NOT NULL,
    pm25_lower   double precision NOT NULL,
    pm25_upper   double precision NOT NULL,
    vn_aqi       integer,
    vn_aqi_lower integer,
    vn_aqi_upper integer,
    PRIMARY KEY (subject_kind, subject_id, horizon_h)
);
CREATE TABLE IF NOT EXISTS bin_forecasts (
    sensor_id     text PRIMARY KEY,
    issued_at     timestamptz NOT NULL,
    observed_at   timestamptz NOT NULL,
    fill          double precision NOT NULL,
    slope_per_h   double precision,
    hours_to_full double precision,
    full_at       timestamptz
);
"""


async def migrate_forecasts(conn: asyncpg.Connection) -> None:
    await conn.execute(FORECASTS_SCHEMA)
