"""What each database role may do, applied by every migration (README, "Security").

The migration runs as the owner.  It first sets default privileges, so that a table the owner
creates later starts with its role's rights, and at its end resets every table's grants to the
rules below: a table added to the schema, or a rule changed here, takes effect with the next
``urbanpulse db migrate``.  Only the owner changes the schema (the others have no CREATE on it,
and PostgreSQL 15 gives PUBLIC none either); the database itself is closed to PUBLIC.
"""

from __future__ import annotations

import logging

import asyncpg

from urbanpulse.core.settings import DbRole

log = logging.getLogger(__name__)

# Who may use the API (key hashes, live-feed tickets) and what was done with it: the API's alone.
SECRET_TABLES = ("api_keys", "audit_log", "live_tickets")

# Which gateway speaks for which sensor: changed only by the API and the CLI's `gateways` (the
# broker's ACLs follow them), read by everyone.
GATEWAY_TABLES = ("gateways", "gateway_sensors")

# Every other table: the writer's rows (the processor deletes sent outbox rows, forecasts
# replace their predecessors), read by the API and the reader.  Nobody but the owner has DDL.
DATA_TABLE_RIGHTS = {
    DbRole.WRITER: "SELECT, INSERT, UPDATE, DELETE",
    DbRole.API: "SELECT",
    DbRole.READER: "SELECT",
}

# The API reads every table; it writes only these (sensor registry admin, alert
# acknowledge/resolve, API keys, the audit log, live-feed tickets, which are deleted when
# redeemed or expired); it deletes nothing else.
API_WRITES: dict[str, str] = {
    "sensors": "INSERT, UPDATE",
    "alerts": (
        "UPDATE (state, acknowledged_at, acknowledged_by, acknowledged_note, "
        "resolved_at, resolved_by, resolved_note, updated_at)"
    ),
    "api_keys": "INSERT, UPDATE (revoked_at)",
    "audit_log": "INSERT",
    "live_tickets": "INSERT, DELETE",
    "gateways": "INSERT, UPDATE (revoked_at)",
    "gateway_sensors": "INSERT, UPDATE (gateway_id, bound_at)",
}

GRANTEES = (DbRole.WRITER, DbRole.API, DbRole.READER)


def default_privileges(roles: list[DbRole]) -> list[str]:
    """Rights of tables and sequences the owner creates from now on in schema public."""
    statements = [
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT {DATA_TABLE_RIGHTS[role]} ON TABLES "
        f"TO {role.grantee}"
        for role in roles
    ]
    if DbRole.WRITER in roles:
        statements.append(
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES "
            f"TO {DbRole.WRITER.grantee}"
        )
    return statements


def table_grants(role: DbRole, table: str) -> list[str]:
    """What ``role`` may do on ``table``, after its earlier rights are revoked."""
    statements = [f"REVOKE ALL ON {table} FROM {role.grantee}"]
    rights: str | None = DATA_TABLE_RIGHTS[role]
    if table in SECRET_TABLES:
        rights = "SELECT" if role is DbRole.API else None
    elif table in GATEWAY_TABLES:
        rights = "SELECT"
    if rights:
        statements.append(f"GRANT {rights} ON {table} TO {role.grantee}")
    if role is DbRole.API and table in API_WRITES:
        statements.append(f"GRANT {API_WRITES[table]} ON {table} TO {role.grantee}")
    return statements


def sequence_grants(role: DbRole, sequence: str, table: str | None) -> list[str]:
    """Sequences serve inserts: the writer's tables' and the API's own."""
    statements = [f"REVOKE ALL ON SEQUENCE {sequence} FROM {role.grantee}"]
    may_insert = (
        table not in SECRET_TABLES
        if role is DbRole.WRITER
        else role is DbRole.API and table in API_WRITES
    )
    if may_insert:
        statements.append(f"GRANT USAGE, SELECT ON SEQUENCE {sequence} TO {role.grantee}")
    return statements


async def existing_grantees(conn: asyncpg.Connection) -> list[DbRole]:
    """The platform's roles that exist on this server; grants to the others are skipped."""
    names = {
        row["rolname"]
        for row in await conn.fetch(
            "SELECT rolname FROM pg_roles WHERE rolname = ANY($1::text[])",
            [role.grantee for role in GRANTEES],
        )
    }
    missing = [role.grantee for role in GRANTEES if role.grantee not in names]
    if missing:
        log.warning(
            "database roles %s do not exist: no grants for them (the local stack and the "
            'compose deployment create them; README, "Security")',
            ", ".join(missing),
        )
    return [role for role in GRANTEES if role.grantee in names]


async def set_default_privileges(conn: asyncpg.Connection, roles: list[DbRole]) -> None:
    await conn.execute(";\n".join(default_privileges(roles)))


async def apply_grants(conn: asyncpg.Connection, roles: list[DbRole]) -> None:
    """Reset ``roles``' rights on the owner's tables and sequences in schema public."""
    database = await conn.fetchval("SELECT quote_ident(current_database())")
    relations = await conn.fetch(
        "SELECT quote_ident(c.relname) AS name, c.relkind = 'S' AS is_sequence, "
        "t.relname AS serves "
        "FROM pg_class c "
        "LEFT JOIN pg_depend d ON c.relkind = 'S' AND d.objid = c.oid "
        "AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') "
        "LEFT JOIN pg_class t ON t.oid = d.refobjid "
        "WHERE c.relnamespace = 'public'::regnamespace AND c.relowner = current_user::regrole "
        "AND c.relkind IN ('r', 'p', 'v', 'm', 'S') ORDER BY c.relname"
    )
    statements = [f"REVOKE ALL ON DATABASE {database} FROM PUBLIC"]
    for role in roles:
        statements += [
            f"GRANT CONNECT ON DATABASE {database} TO {role.grantee}",
            f"GRANT USAGE ON SCHEMA public TO {role.grantee}",
        ]
        for row in relations:
            if row["is_sequence"]:
                statements += sequence_grants(role, row["name"], row["serves"])
            else:
                statements += table_grants(role, row["name"])
    await conn.execute(";\n".join(statements))
