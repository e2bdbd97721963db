"""Gateway administration: the registry rows and the broker's users changed together.

Each operation changes the registry in a transaction and, before it commits, the broker; a
broker that refuses or cannot be reached rolls the registry back, so the registry never grants
what the broker does not enforce.  The API and ``urbanpulse gateways`` call these functions.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from urbanpulse.core.settings import MqttSettings
from urbanpulse.gateways import broker
from urbanpulse.gateways.acl import check_gateway_id, gateway_acls
from urbanpulse.storage import gateways as store

_PASSWORD_BYTES = 24


class GatewayError(Exception):
    """A request the registry refuses; ``status`` is the HTTP status that fits it."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class IssuedCredentials:
    """What a gateway logs in with; the password is shown once and stored only hashed."""

    gateway_id: str
    username: str
    client_id: str
    password: str


async def _broker(settings: MqttSettings, commands: Sequence[dict[str, Any]]) -> None:
    if commands:
        await asyncio.to_thread(broker.execute, settings, commands)


async def create_gateway(
    conn: asyncpg.Connection, settings: MqttSettings, gateway_id: str, name: str | None
) -> IssuedCredentials:
    try:
        check_gateway_id(gateway_id, settings)
    except ValueError as exc:
        raise GatewayError(str(exc), 422) from None
    password = secrets.token_urlsafe(_PASSWORD_BYTES)
    async with conn.transaction():
        if not await store.insert_gateway(conn, gateway_id, name, settings.topic_root):
            raise GatewayError(f"gateway {gateway_id!r} exists already (ids are never reused)", 409)
        await _broker(settings, broker.create_gateway_commands(gateway_id, name, password))
    return IssuedCredentials(gateway_id, gateway_id, gateway_id, password)


async def _active(conn: asyncpg.Connection, gateway_id: str) -> store.Gateway:
    gateway = await store.get_gateway(conn, gateway_id)
    if gateway is None:
        raise GatewayError(f"unknown gateway {gateway_id!r}", 404)
    if not gateway.active:
        raise GatewayError(f"gateway {gateway_id!r} is revoked", 409)
    return gateway


async def revoke_gateway(
    conn: asyncpg.Connection, settings: MqttSettings, gateway_id: str
) -> store.Gateway:
    """Revoke: the broker deletes the gateway's user and role and disconnects it at once."""
    async with conn.transaction():
        await _active(conn, gateway_id)
        await store.mark_revoked(conn, gateway_id)
        await _broker(settings, broker.delete_gateway_commands(gateway_id))
        revoked = await store.get_gateway(conn, gateway_id)
    assert revoked is not None
    return revoked


async def bind_sensors(
    conn: asyncpg.Connection, settings: MqttSettings, gateway_id: str, sensor_ids: list[str]
) -> tuple[store.Gateway, list[str]]:
    """Let the gateway publish for these registered sensors; returns it and the newly bound."""
    async with conn.transaction():
        gateway = await _active(conn, gateway_id)
        plan = await store.plan_binding(conn, gateway_id, sensor_ids)
        if plan.unknown:
            raise GatewayError(f"unknown sensors: {', '.join(plan.unknown[:20])}", 404)
        if plan.taken:
            owned = ", ".join(f"{s} (by {g})" for s, g in list(plan.taken.items())[:20])
            raise GatewayError(f"sensors bound to another gateway: {owned}", 409)
        await store.bind_sensors(conn, gateway_id, plan.new)
        acls = gateway_acls(gateway.topic_root, plan.new)
        await _broker(settings, broker.add_acl_commands(gateway_id, acls))
        bound = await store.get_gateway(conn, gateway_id)
    assert bound is not None
    return bound, [sensor.sensor_id for sensor in plan.new]
