"""Who is calling: API keys with roles, as ``Annotated`` dependencies.

Routes declare the role they need: ``principal: ViewerDep``, ``OperatorDep`` or ``AdminDep``.
A key is sent as ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``, never in a URL.  An
unknown or revoked key is a failed authentication: logged with the client's address and the
key's prefix, and counted against the client (:mod:`urbanpulse.api.guards`), which gets 429s
once it has too many.  Every write goes through :func:`audit`, which records who did what to
which target.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Header, HTTPException, Request, WebSocket

from urbanpulse.api.guards import Guards, retry_message
from urbanpulse.storage.keys import Actor, KeyOwner, Role, find_key, key_prefix, record_audit


@dataclass(frozen=True)
class Principal(Actor):
    # key_id None: anonymous public reads
    role: Role


ANONYMOUS = Principal(None, "anonymous", Role.VIEWER)


def client_address(connection: Request | WebSocket) -> str:
    return connection.client.host if connection.client else "unknown"


def presented_key(x_api_key: str | None, authorization: str | None) -> str | None:
    if x_api_key:
        return x_api_key.strip()
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


async def identify(request: Request, key: str) -> KeyOwner | None:
    """The owner of a presented key, or None (a failed authentication: logged and counted);
    an HTTP 429 when the client has failed too often lately."""
    guards: Guards = request.app.state.guards
    client = client_address(request)
    if (wait := guards.retry_after(client)) is not None:
        raise HTTPException(429, retry_message(wait), {"Retry-After": str(wait)})
    pool: asyncpg.Pool = request.app.state.pool
    async with pool.acquire() as conn:
        owner = await find_key(conn, key)
    if owner is None:
        guards.failed(client, "http", key_prefix(key), "unknown or revoked API key")
    return owner


def require(needed: Role, public_flag: str = "public_read") -> Callable[..., Awaitable[Principal]]:
    """A dependency needing ``needed``; reads are open when ``public_read`` or the
    ``public_flag`` setting (e.g. ``public_exports``) is set."""

    async def dependency(
        request: Request,
        x_api_key: Annotated[str | None, Header()] = None,
        authorization: Annotated[str | None, Header()] = None,
    ) -> Principal:
        key = presented_key(x_api_key, authorization)
        if key is None:
            api = request.app.state.settings.api
            if needed is Role.VIEWER and (api.public_read or getattr(api, public_flag)):
                return ANONYMOUS
            raise HTTPException(
                401,
                "missing API key: send it as 'X-API-Key: <key>' "
                "(an admin creates one with `urbanpulse keys create`)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        owner = await identify(request, key)
        if owner is None:
            raise HTTPException(401, "unknown or revoked API key", {"WWW-Authenticate": "Bearer"})
        if not owner.role.allows(needed):
            raise HTTPException(403, f"role {owner.role} may not do this; it needs {needed}")
        return Principal(owner.key_id, owner.name, owner.role)

    return dependency


ViewerDep = Annotated[Principal, Depends(require(Role.VIEWER))]
OperatorDep = Annotated[Principal, Depends(require(Role.OPERATOR))]
AdminDep = Annotated[Principal, Depends(require(Role.ADMIN))]
# Open-data exports: a viewer key, unless ``public_read`` or ``public_exports`` is set.
ExportReaderDep = Annotated[Principal, Depends(require(Role.VIEWER, "public_exports"))]


async def audit(
    conn: asyncpg.Connection,
    principal: Principal,
    action: str,
    target: str,
    detail: dict[str, Any] | None = None,
) -> None:
    """Record a write; call it in the same transaction as the write itself."""
    await record_audit(conn, principal.key_id, principal.name, action, target, detail)
