"""Databases of a test's own on the session's server, and the superuser that makes them.

The local stack's superuser is reached over its Unix socket (a directory only the stack's user
can open); creating a database and the PostGIS / TimescaleDB extensions needs it.  Everything
else connects as one of the platform's roles (``urbanpulse.storage.db.connect``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg

from urbanpulse.core.settings import Settings
from urbanpulse.kafka_access import provision
from urbanpulse.stack import LocalStack
from urbanpulse.stack.services.postgres import SUPERUSER, socket_dir
from urbanpulse.storage.schema import migrate_as_owner


@contextlib.asynccontextmanager
async def superuser(
    stack: LocalStack, database: str = "postgres"
) -> AsyncIterator[asyncpg.Connection]:
    socket = str(socket_dir(stack.data_dir.resolve()))
    port = stack.settings.database.port
    conn = await asyncpg.connect(host=socket, port=port, user=SUPERUSER, database=database)
    try:
        yield conn
    finally:
        await conn.close()


async def create_database(stack: LocalStack, settings: Settings, name: str) -> Settings:
    """A new database ``name`` owned by the platform's owner role and migrated by it, and the
    Kafka topics of the settings' prefix with their ACLs; the returned settings point at it."""
    async with superuser(stack) as admin:
        await admin.execute(f'CREATE DATABASE "{name}" OWNER "{settings.database.user}"')
    async with superuser(stack, name) as admin:
        await admin.execute("CREATE EXTENSION postgis; CREATE EXTENSION timescaledb;")
    own = settings.model_copy(
        update={"database": settings.database.model_copy(update={"name": name})}
    )
    await migrate_as_owner(own)
    await provision(own)
    return own


async def drop_database(stack: LocalStack, settings: Settings) -> None:
    async with superuser(stack) as admin:
        await admin.execute(f'DROP DATABASE IF EXISTS "{settings.database.name}" WITH (FORCE)')
