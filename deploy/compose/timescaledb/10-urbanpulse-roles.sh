#!/bin/bash
# First start of the database only: the platform's database and its four login roles (README,
# "Security").  Extensions need the superuser, so they are created here rather than by
# migrations; every migration (the `migrate` service, as the owner) grants the other roles
# their rights.
set -euo pipefail
: "${URBANPULSE_DB_OWNER_PASSWORD:?}" "${URBANPULSE_DB_WRITER_PASSWORD:?}"
: "${URBANPULSE_DB_API_PASSWORD:?}" "${URBANPULSE_DB_READER_PASSWORD:?}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
     -v owner_password="$URBANPULSE_DB_OWNER_PASSWORD" \
     -v writer_password="$URBANPULSE_DB_WRITER_PASSWORD" \
     -v api_password="$URBANPULSE_DB_API_PASSWORD" \
     -v reader_password="$URBANPULSE_DB_READER_PASSWORD" <<'SQL'
CREATE ROLE urbanpulse LOGIN PASSWORD :'owner_password';
CREATE ROLE urbanpulse_writer LOGIN PASSWORD :'writer_password';
CREATE ROLE urbanpulse_api LOGIN PASSWORD :'api_password';
CREATE ROLE urbanpulse_reader LOGIN PASSWORD :'reader_password';
CREATE DATABASE urbanpulse OWNER urbanpulse;
\connect urbanpulse
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE EXTENSION IF NOT EXISTS timescaledb;
SQL
