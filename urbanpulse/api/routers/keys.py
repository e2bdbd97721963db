"""API keys: create, list and revoke (admin; every change audited).

A new key is shown once, in the response that creates it; only its hash is stored.  Revoking
a key also closes its live-feed sockets, in every API process (``storage.keys.REVOKED_CHANNEL``).
"""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from urbanpulse.api.auth import AdminDep
from urbanpulse.api.deps import ConnectionDep
from urbanpulse.api.errors import ApiError, error_responses
from urbanpulse.storage.keys import (
    KEY_NAME_SCHEMA_PATTERN,
    Role,
    issue_key,
    list_api_keys,
    withdraw_key,
)

router = APIRouter(prefix="/v1/keys", tags=["admin"])


class KeyCreate(BaseModel):
    name: str = Field(pattern=KEY_NAME_SCHEMA_PATTERN, description="Who or what holds the key")
    role: Role


@router.post(
    "",
    status_code=201,
    summary="Create an API key (admin; audited); the key is returned only this once",
    responses=error_responses(401, 403, 409, 422),
)
async def create_key(conn: ConnectionDep, caller: AdminDep, body: KeyCreate) -> dict[str, Any]:
    try:
        key = await issue_key(conn, caller, body.name, body.role)
    except asyncpg.UniqueViolationError:
        raise ApiError(409, f"a key named {body.name!r} exists already") from None
    return {"name": body.name, "role": body.role.value, "key": key}


@router.get(
    "",
    summary="List API keys (admin): names, roles, dates; never the keys",
    responses=error_responses(401, 403),
)
async def list_keys(conn: ConnectionDep, _caller: AdminDep) -> dict[str, Any]:
    return {"keys": await list_api_keys(conn)}


@router.delete(
    "/{name}",
    summary="Revoke an API key (admin; audited); its live-feed connections are closed",
    responses=error_responses(401, 403, 404, 422),
)
async def revoke_key(
    conn: ConnectionDep, caller: AdminDep, name: Annotated[str, Path(max_length=128)]
) -> dict[str, Any]:
    if await withdraw_key(conn, caller, name) is None:
        raise ApiError(404, f"no active key named {name!r}")
    return {"name": name, "revoked": True}
