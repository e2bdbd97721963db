"""Shared by the tests of the README's API promises: the error shape, alerts stored through the
storage layer's own writer, who holds a key, and the audit rows a test left (no tests here)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson

from urbanpulse.alerts.model import Alert, AlertEvent, AlertState, EventType
from urbanpulse.core.vocabulary import Severity
from urbanpulse.storage import alerts as alert_store
from urbanpulse.storage.keys import KeyOwner, find_key


def assert_error(response: httpx.Response, status: int, fragment: str = "") -> dict[str, Any]:
    """The response is ``status`` with the one error shape the README promises."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == {"status", "message", "details"}, error
    assert error["status"] == status
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], list)
    assert fragment.lower() in error["message"].lower(), error["message"]
    return error


async def open_alert(
    conn: asyncpg.Connection,
    rule_id: str,
    sensor_id: str,
    *,
    kind: str = "air",
    severity: Severity = Severity.WARNING,
    opened_at: datetime | None = None,
) -> str:
    """An open alert on ``sensor_id``, stored the way the processor stores one; its id."""
    at = opened_at or datetime.now(UTC) - timedelta(minutes=1)
    alert = Alert(
        alert_id=str(uuid.uuid4()),
        rule_id=rule_id,
        subject=sensor_id,
        kind=kind,
        severity=severity,
        state=AlertState.OPEN,
        opened_at=at,
        last_triggered_at=at,
        value=180.0,
        threshold=100.0,
        message_vi="Thử nghiệm",
        message_en="Test alert",
        sensor_id=sensor_id,
    )
    async with conn.transaction():
        applied = await alert_store.apply_events(conn, [AlertEvent(EventType.OPENED, alert)])
    assert len(applied) == 1
    return alert.alert_id


async def key_owner(conn: asyncpg.Connection, key: str) -> KeyOwner:
    owner = await find_key(conn, key)
    assert owner is not None, "the test's key is not in api_keys"
    return owner


async def last_audit_id(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT coalesce(max(audit_id), 0) FROM audit_log"))


async def audit_rows_since(
    conn: asyncpg.Connection, audit_id: int, actors: list[str]
) -> list[dict[str, Any]]:
    """Audit rows by ``actors`` written after ``audit_id``, oldest first, ``detail`` decoded."""
    rows = await conn.fetch(
        "SELECT key_id, actor, action, target, detail FROM audit_log "
        "WHERE audit_id > $1 AND actor = ANY($2::text[]) ORDER BY audit_id",
        audit_id,
        actors,
    )
    return [{**dict(r), "detail": orjson.loads(r["detail"])} for r in rows]
