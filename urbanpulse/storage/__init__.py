"""TimescaleDB + PostGIS: schema, idempotent batch writes, the sensor registry and queries."""
