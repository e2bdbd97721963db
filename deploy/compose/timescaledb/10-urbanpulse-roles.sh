#!/bin/bash
# First start of the database only: the platform's database, its owner and Grafana's read-only
# role.  Extensions need the superuser, so they are created here rather than by migrations.
set -euo pipefail
: "${URBANPULSE_DB_PASSWORD:?}" "${GRAFANA_DB_PASSWORD:?}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
     -v app_password="$URBANPULSE_DB_PASSWORD" -v reader_password="$GRAFANA_DB_PASSWORD" <<'SQL'
CREATE ROLE urbanpulse LOGIN PASSWORD :'app_password';
CREATE ROLE grafana_reader LOGIN PASSWORD :'reader_password';
CREATE DATABASE urbanpulse OWNER urbanpulse;
\connect urbanpulse
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE EXTENSION IF NOT EXISTS timescaledb;
GRANT CONNECT ON DATABASE urbanpulse TO grafana_reader;
GRANT USAGE ON SCHEMA public TO grafana_reader;
-- SELECT on the tables follows each migration (the grafana-grants service, grafana-grants.sql).
SQL
