"""The platform's database roles on the real server: each may do what its processes need, and
PostgreSQL refuses the rest (README, "Security").

Refusals are checked with the project's client library (asyncpg) and with psql, the outside
client an intruder would use.  The tests run in a database of their own, created by the local
stack's superuser and migrated by the owner role like any other.
"""

from __future__ import annotations

import os
import stat
import subprocess
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.e2e.databases import create_database, drop_database, superuser
from urbanpulse.core.secrets import secrets_dir
from urbanpulse.core.settings import FORMER_DEFAULT_PASSWORD, DbRole, Settings
from urbanpulse.runtime import StartupError
from urbanpulse.stack import LocalStack
from urbanpulse.stack._layout import Layout
from urbanpulse.stack.services.postgres import PG_BIN
from urbanpulse.storage import alerts, keys, registry
from urbanpulse.storage.db import DatabaseLogin, connect, login
from urbanpulse.storage.schema import migrate_as_owner, require_schema

REFUSED = (
    asyncpg.InsufficientPrivilegeError
)  # SQLSTATE 42501, "permission denied" / "must be owner"


@pytest.fixture(scope="module")
async def database(local_stack: LocalStack) -> AsyncIterator[Settings]:
    name = f"roles{uuid.uuid4().hex[:10]}"
    settings = await create_database(local_stack, local_stack.settings, name)
    owner = await connect(settings, DbRole.OWNER)
    try:
        await registry.upsert(owner, [registry.SensorRecord("roles-air-1", "air", 10.77, 106.70)])
        await owner.execute(
            "INSERT INTO alerts (alert_id, rule_id, subject, sensor_id, kind, severity, state, "
            "opened_at, last_triggered_at, message_vi, message_en) VALUES ('roles-alert-1', "
            "'pm25-high', 'roles-air-1', 'roles-air-1', 'air', 'warning', 'open', now(), now(), "
            "'x', 'x')"
        )
    finally:
        await owner.close()
    yield settings
    await drop_database(local_stack, settings)


async def refused(settings: Settings, role: DbRole, statements: list[str]) -> list[str]:
    """The statements that ``role`` was NOT refused (each tried in its own transaction)."""
    conn = await connect(settings, role)
    allowed = []
    try:
        for statement in statements:
            try:
                async with conn.transaction():
                    await conn.execute(statement)
            except REFUSED:
                continue
            allowed.append(statement)
    finally:
        await conn.close()
    return allowed


READING = (
    "INSERT INTO readings_air (sensor_id, ts, received_at) "
    "VALUES ('roles-air-1', '2030-01-01T00:00:00Z', now())"
)


async def test_the_reader_reads_and_is_refused_everything_else(database: Settings) -> None:
    conn = await connect(database, DbRole.READER)
    try:
        assert await conn.fetchval("SELECT count(*) FROM sensors") == 1
        assert await conn.fetchval("SELECT count(*) FROM alerts") == 1
    finally:
        await conn.close()
    assert (
        await refused(
            database,
            DbRole.READER,
            [
                "INSERT INTO sensors (sensor_id, kind) VALUES ('intruder-1', 'air')",
                READING,
                "UPDATE alerts SET state = 'resolved'",
                "DELETE FROM sensors",
                "TRUNCATE readings_air",
                "CREATE TABLE intruder (x int)",
                "CREATE TEMP TABLE intruder (x int)",
                "SELECT * FROM api_keys",
                "SELECT * FROM audit_log",
                "SELECT * FROM live_tickets",
            ],
        )
        == []
    )


async def test_the_writer_writes_rows_but_never_the_schema_nor_the_keys(
    database: Settings,
) -> None:
    conn = await connect(database, DbRole.WRITER)
    try:
        async with conn.transaction():
            # A new day's chunk of the hypertable is created on the writer's insert.
            await conn.execute(READING)
            await conn.execute("DELETE FROM readings_air WHERE sensor_id = 'roles-air-1'")
    finally:
        await conn.close()
    assert (
        await refused(
            database,
            DbRole.WRITER,
            [
                "CREATE TABLE intruder (x int)",
                "ALTER TABLE sensors ADD COLUMN intruder int",
                "DROP TABLE bulletins",
                "CREATE INDEX intruder_idx ON sensors (name)",
                "TRUNCATE sensors",
                "SELECT * FROM api_keys",
                "INSERT INTO api_keys (name, role, key_hash) VALUES ('mine', 'admin', 'x')",
                "UPDATE api_keys SET revoked_at = NULL",
                "INSERT INTO audit_log (actor, action, target) VALUES ('me', 'x', 'y')",
                "SELECT * FROM audit_log",
                "DELETE FROM live_tickets",
                "INSERT INTO gateways (gateway_id, topic_root) VALUES ('rogue', 'x/v1')",
                "UPDATE gateway_sensors SET gateway_id = 'rogue'",
            ],
        )
        == []
    )


async def test_the_api_writes_only_registry_alert_states_keys_and_audit(
    database: Settings,
) -> None:
    conn = await connect(database, DbRole.API)
    try:
        async with conn.transaction():
            key = await keys.create_api_key(conn, f"roles-{uuid.uuid4().hex[:6]}", keys.Role.ADMIN)
            owner = await keys.find_key(conn, key)
            assert owner is not None
            await keys.record_audit(conn, owner.key_id, owner.name, "test", "roles")
            await registry.upsert(conn, [registry.SensorRecord("roles-air-2", "air", 10.7, 106.6)])
            acknowledged = await alerts.acknowledge(conn, "roles-alert-1", owner.name, "on it")
            assert acknowledged is not None and acknowledged["state"] == "acknowledged"
            assert await keys.revoke_api_key(conn, owner.name)
            raise _Rollback  # leave the shared rows as they were for the other tests
    except _Rollback:
        pass
    finally:
        await conn.close()
    assert (
        await refused(
            database,
            DbRole.API,
            [
                READING,
                "DELETE FROM alerts",
                "UPDATE alerts SET severity = 'info'",
                "DELETE FROM sensors",
                "DELETE FROM api_keys",
                "UPDATE audit_log SET actor = 'someone else'",
                "DELETE FROM audit_log",
                "INSERT INTO bulletins (day, body) VALUES ('2030-01-01', '{}')",
                "CREATE TABLE intruder (x int)",
            ],
        )
        == []
    )


class _Rollback(Exception):
    pass


async def test_a_table_added_later_follows_the_grants(database: Settings) -> None:
    owner = await connect(database, DbRole.OWNER)
    try:
        await owner.execute("CREATE TABLE later_rows (x int)")
    finally:
        await owner.close()
    # Default privileges: readable by the reader at once, writable by the writer.
    reader = await connect(database, DbRole.READER)
    writer = await connect(database, DbRole.WRITER)
    try:
        await writer.execute("INSERT INTO later_rows VALUES (1)")
        assert await reader.fetchval("SELECT count(*) FROM later_rows") == 1
        await migrate_as_owner(database)  # the next migration keeps them
        await writer.execute("INSERT INTO later_rows VALUES (2)")
        assert await reader.fetchval("SELECT count(*) FROM later_rows") == 2
    finally:
        await reader.close()
        await writer.close()
    assert await refused(database, DbRole.READER, ["INSERT INTO later_rows VALUES (3)"]) == []


def psql(target: DatabaseLogin, password: str, sql: str) -> subprocess.CompletedProcess[str]:
    """The outside client, given its password as libpq reads it (never on the command line)."""
    return subprocess.run(
        [
            str(PG_BIN / "psql"),
            "-X",
            "-w",
            "-tA",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            target.host,
            "-p",
            str(target.port),
            "-U",
            target.user,
            "-d",
            target.database,
            "-c",
            sql,
        ],
        env={**os.environ, "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "10"},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


async def test_psql_needs_the_right_password_and_then_reads_only(database: Settings) -> None:
    reader = login(database, DbRole.READER)
    assert psql(reader, reader.password, "SELECT count(*) FROM sensors").stdout.strip() == "1"
    denied = psql(reader, reader.password, "DELETE FROM sensors")
    assert denied.returncode != 0 and "permission denied" in denied.stderr, denied
    for wrong in ("wrong-" + reader.password, FORMER_DEFAULT_PASSWORD, ""):
        attempt = psql(reader, wrong, "SELECT 1")
        assert attempt.returncode != 0, f"{wrong!r} let psql in"
        assert "password authentication failed" in attempt.stderr or "no password" in (
            attempt.stderr
        ), attempt.stderr
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(**{**login(database, DbRole.OWNER).connect_args(), "password": "x"})


async def test_a_processor_refuses_a_database_that_was_not_migrated(
    local_stack: LocalStack,
) -> None:
    name = f"bare{uuid.uuid4().hex[:10]}"
    async with superuser(local_stack) as admin:
        await admin.execute(
            f'CREATE DATABASE "{name}" OWNER "{local_stack.settings.database.user}"'
        )
    bare = local_stack.settings.model_copy(
        update={"database": local_stack.settings.database.model_copy(update={"name": name})}
    )
    try:
        conn = await connect(bare, DbRole.OWNER)
        try:
            with pytest.raises(StartupError, match="urbanpulse db migrate"):
                await require_schema(conn)
        finally:
            await conn.close()
    finally:
        await drop_database(local_stack, bare)


def test_the_stack_keeps_each_password_in_a_0600_file_and_out_of_its_logs(
    local_stack: LocalStack,
) -> None:
    secrets = secrets_dir(local_stack.settings.stack.data_dir)
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    passwords = {}
    for role in DbRole:
        path = secrets / role.secret_name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        passwords[role] = path.read_text().strip()
    assert len(set(passwords.values())) == len(DbRole)
    assert FORMER_DEFAULT_PASSWORD not in passwords.values()
    assert all(len(password) >= 40 for password in passwords.values())
    logs = Layout(local_stack.data_dir.resolve()).logs
    assert (logs / "postgres.log").is_file()
    for log in logs.iterdir():
        text = log.read_text(errors="replace")
        assert not [role for role, p in passwords.items() if p in text], log
