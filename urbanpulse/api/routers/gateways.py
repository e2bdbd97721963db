"""Gateways: create (MQTT credentials shown once), list, revoke, bind sensors (admin; audited).

Every change is applied to the broker's users before the registry commits (see
``urbanpulse/gateways/service.py``): a broker that cannot be reached answers 503 and changes
nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from urbanpulse.api.auth import AdminDep, audit
from urbanpulse.api.deps import ConnectionDep, SettingsDep
from urbanpulse.api.errors import ApiError, error_responses
from urbanpulse.core.catalogue import SENSOR_ID_SCHEMA_PATTERN
from urbanpulse.core.mqtt_login import MqttLoginError
from urbanpulse.gateways import service
from urbanpulse.gateways.acl import GATEWAY_ID_SCHEMA_PATTERN
from urbanpulse.gateways.broker import BrokerAdminError
from urbanpulse.storage import gateways as store

router = APIRouter(prefix="/v1/gateways", tags=["admin"])

GatewayIdPath = Annotated[str, Path(max_length=64, description="Gateway id")]
WRITE_ERRORS = error_responses(401, 403, 404, 409, 422, 503)
MAX_BIND = 10_000  # sensors per request


class GatewayCreate(BaseModel):
    gateway_id: str = Field(
        pattern=GATEWAY_ID_SCHEMA_PATTERN,
        description="Its MQTT username and client id: letters, digits, '_', '.', ':', '-'",
    )
    name: str | None = Field(default=None, max_length=200)


class GatewayBind(BaseModel):
    sensor_ids: list[Annotated[str, Field(pattern=SENSOR_ID_SCHEMA_PATTERN)]] = Field(
        min_length=1, max_length=MAX_BIND
    )


def gateway_json(gateway: store.Gateway) -> dict[str, Any]:
    return {
        "gateway_id": gateway.gateway_id,
        "name": gateway.name,
        "topic_root": gateway.topic_root,
        "status": "active" if gateway.active else "revoked",
        "created_at": gateway.created_at,
        "revoked_at": gateway.revoked_at,
        "sensors": list(gateway.sensors),
    }


@asynccontextmanager
async def _answered() -> AsyncIterator[None]:
    """Registry refusals as 4xx, an unreachable or refusing broker as 503."""
    try:
        yield
    except service.GatewayError as exc:
        raise ApiError(exc.status, str(exc)) from None
    except (BrokerAdminError, MqttLoginError) as exc:
        raise ApiError(503, f"the MQTT broker did not take the change: {exc}") from None


@router.post(
    "",
    status_code=201,
    summary="Create a gateway (admin; audited); its MQTT password is returned only this once",
    responses=WRITE_ERRORS,
)
async def create_gateway(
    conn: ConnectionDep, settings: SettingsDep, caller: AdminDep, body: GatewayCreate
) -> dict[str, Any]:
    async with _answered(), conn.transaction():
        issued = await service.create_gateway(conn, settings.mqtt, body.gateway_id, body.name)
        await audit(conn, caller, "gateway.create", body.gateway_id, {"name": body.name})
    return {
        "gateway_id": issued.gateway_id,
        "mqtt": {
            "username": issued.username,
            "client_id": issued.client_id,
            "password": issued.password,
        },
    }


@router.get(
    "", summary="List gateways and their sensors (admin)", responses=error_responses(401, 403)
)
async def list_gateways(conn: ConnectionDep, _caller: AdminDep) -> dict[str, Any]:
    return {"gateways": [gateway_json(g) for g in await store.list_gateways(conn)]}


@router.get(
    "/{gateway_id}", summary="One gateway (admin)", responses=error_responses(401, 403, 404)
)
async def get_gateway(
    conn: ConnectionDep, _caller: AdminDep, gateway_id: GatewayIdPath
) -> dict[str, Any]:
    gateway = await store.get_gateway(conn, gateway_id)
    if gateway is None:
        raise ApiError(404, f"unknown gateway {gateway_id!r}")
    return gateway_json(gateway)


@router.post(
    "/{gateway_id}/sensors",
    summary="Bind registered sensors to a gateway: it may publish their data and status "
    "(admin; audited)",
    responses=WRITE_ERRORS,
)
async def bind_sensors(
    conn: ConnectionDep,
    settings: SettingsDep,
    caller: AdminDep,
    gateway_id: GatewayIdPath,
    body: GatewayBind,
) -> dict[str, Any]:
    async with _answered(), conn.transaction():
        gateway, bound = await service.bind_sensors(
            conn, settings.mqtt, gateway_id, body.sensor_ids
        )
        await audit(conn, caller, "gateway.bind", gateway_id, {"sensors": bound})
    return {**gateway_json(gateway), "newly_bound": bound}


@router.delete(
    "/{gateway_id}",
    summary="Revoke a gateway: its credentials stop working and it is disconnected at once "
    "(admin; audited)",
    responses=WRITE_ERRORS,
)
async def revoke_gateway(
    conn: ConnectionDep, settings: SettingsDep, caller: AdminDep, gateway_id: GatewayIdPath
) -> dict[str, Any]:
    async with _answered(), conn.transaction():
        gateway = await service.revoke_gateway(conn, settings.mqtt, gateway_id)
        await audit(conn, caller, "gateway.revoke", gateway_id)
    return gateway_json(gateway)
