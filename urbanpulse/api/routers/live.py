"""``/v1/live``: the WebSocket feed of new readings (latest per sensor) and alert events.

No secret goes in the URL (proxies and servers log URLs).  A client that can send headers
connects with ``X-API-Key: <key>``; a browser first asks ``POST /v1/live/tickets`` (with its key
in the header) for a ticket, good for one connection within ``api.live_ticket_ttl_s``, and sends
``{"type": "auth", "ticket": "..."}`` as its first message (within ``AUTH_TIMEOUT_S``).  With
``public_read`` no key is needed.  A ``key`` or ``ticket`` in the query string is refused
(close 4401), as are unknown, used or expired tickets and unknown or revoked keys (4401, each
a failed authentication of the client: too many and it is refused with 4429).  Revoking the key
closes its sockets (4401, "API key revoked").  Connections are capped in all and per key
(close 1013).  Optional query parameters ``kinds``, ``areas`` (comma-separated) and ``bbox``
choose what to receive; send ``{"type": "subscribe", "kinds": [...], "areas": [...],
"bbox": [minLon, minLat, maxLon, maxLat], "readings": true, "alerts": true}`` to change them.
The server sends ``{"type": "alerts", "alerts": [...]}`` as alerts change, each item a lifecycle
event as the processor publishes it: ``{"event": "opened" | "reopened" | "acknowledged" |
"resolved", "at": ..., "alert": {"alert_id", "sensor_id", "area_id", "severity", "state",
"message_vi", "message_en", ...}}``, and
``{"type": "readings", "readings": [...]}`` at most every 250 ms, readings coalesced to the
newest per sensor.  A client that cannot keep up is closed with code 1013.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import BaseModel

from urbanpulse.api.auth import ViewerDep, client_address, presented_key
from urbanpulse.api.deps import ConnectionDep, SettingsDep
from urbanpulse.api.errors import ApiError, error_responses
from urbanpulse.api.guards import Guards, retry_message
from urbanpulse.api.live import FLUSH_INTERVAL_S, OVERLOAD_CLOSE_CODE, Client, Hub, Subscription
from urbanpulse.api.params import parse_bbox
from urbanpulse.core.catalogue import KINDS
from urbanpulse.core.untrusted import is_number, preview
from urbanpulse.storage.keys import (
    KeyOwner,
    Role,
    TicketRefused,
    find_key,
    issue_ticket,
    key_prefix,
    redeem_ticket,
)

log = logging.getLogger(__name__)

router = APIRouter(tags=["live"])

SEND_TIMEOUT_S = 5.0
AUTH_CLOSE_CODE = 4401
BAD_REQUEST_CLOSE_CODE = 4400
RATE_LIMITED_CLOSE_CODE = 4429
AUTH_TIMEOUT_S = 10.0
MAX_AUTH_MESSAGE_CHARS = 1000
# Query parameters that would carry a secret: refused, so that no client keeps sending one.
SECRET_PARAMETERS = ("key", "ticket")
HOW_TO_AUTHENTICATE = (
    "send the key as an X-API-Key header, or POST /v1/live/tickets and send "
    '{"type": "auth", "ticket": ...} first'
)


class Ticket(BaseModel):
    ticket: str
    expires_in_s: float


@router.post(
    "/v1/live/tickets",
    status_code=201,
    summary="A single-use ticket for one /v1/live connection (send the key in the header)",
    description="Browsers cannot send headers on a WebSocket: they ask for a ticket with the "
    'key, then send {"type": "auth", "ticket": ...} as the first message on /v1/live. '
    "The ticket is good once, within expires_in_s seconds.",
    responses=error_responses(401, 429),
)
async def create_ticket(conn: ConnectionDep, settings: SettingsDep, caller: ViewerDep) -> Ticket:
    if caller.key_id is None:
        raise ApiError(401, "a ticket is issued for an API key: send it as 'X-API-Key: <key>'")
    ttl = settings.api.live_ticket_ttl_s
    return Ticket(ticket=await issue_ticket(conn, caller.key_id, ttl), expires_in_s=ttl)


def subscription_from(
    kinds: Any, areas: Any, bbox: Any, readings: Any = True, alerts: Any = True
) -> Subscription:
    """A subscription from lists or comma-separated text; ``ApiError`` names a bad part."""

    def names(value: Any, what: str) -> frozenset[str] | None:
        if value is None or value == "" or value == []:
            return None
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ApiError(422, f"{what}: expected a list of names")
        return frozenset(i.strip() for i in items if i.strip())

    kind_set = names(kinds, "kinds")
    if kind_set is not None and not kind_set <= set(KINDS):
        unknown = sorted(kind_set - set(KINDS))[0]
        raise ApiError(422, f"kinds: unknown kind {unknown!r}; known: {', '.join(KINDS)}")
    if isinstance(bbox, list):
        # Numbers only: str() of a nested list recursed (RecursionError closed the socket).
        if not all(is_number(v) for v in bbox):
            raise ApiError(422, "bbox: expected [minLon, minLat, maxLon, maxLat] as numbers")
        bbox = ",".join(str(v) for v in bbox)
    if bbox is not None and not isinstance(bbox, str):
        raise ApiError(422, "bbox: expected minLon,minLat,maxLon,maxLat")
    return Subscription(
        kinds=kind_set,
        areas=names(areas, "areas"),
        bbox=parse_bbox(bbox) if bbox else None,
        readings=bool(readings),
        alerts=bool(alerts),
    )


class Refusal(Exception):
    """Why a live client may not connect, with the close code that says it."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


async def _authenticate(websocket: WebSocket) -> KeyOwner | None:
    """The caller's key (None: anonymous under ``public_read``); :class:`Refusal` otherwise."""
    if any(name in websocket.query_params for name in SECRET_PARAMETERS):
        raise Refusal(AUTH_CLOSE_CODE, f"no key or ticket in the URL: {HOW_TO_AUTHENTICATE}")
    guards: Guards = websocket.app.state.guards
    client = client_address(websocket)
    if (wait := guards.retry_after(client)) is not None:
        raise Refusal(RATE_LIMITED_CLOSE_CODE, retry_message(wait))
    key = presented_key(websocket.headers.get("x-api-key"), websocket.headers.get("authorization"))
    if key is None and websocket.app.state.settings.api.public_read:
        return None
    pool = websocket.app.state.pool
    if key is not None:
        async with pool.acquire() as conn:
            owner = await find_key(conn, key)
        shown, why = key_prefix(key), "unknown or revoked API key"
    else:
        # Awaited before a connection of the pool is taken: a client that sends nothing for
        # those seconds holds none.
        ticket = await _ticket_message(websocket)
        shown, why = "a ticket", ""
        async with pool.acquire() as conn:
            try:
                owner = await redeem_ticket(conn, ticket)
            except TicketRefused as exc:
                owner, why = None, str(exc)
    if owner is None:
        guards.failed(client, "live", shown, why)
        raise Refusal(AUTH_CLOSE_CODE, why)
    if not owner.role.allows(Role.VIEWER):
        raise Refusal(AUTH_CLOSE_CODE, "this key may not read")
    return owner


async def _ticket_message(websocket: WebSocket) -> str:
    """The ticket of the client's first message, ``{"type": "auth", "ticket": "..."}``."""
    try:
        async with asyncio.timeout(AUTH_TIMEOUT_S):
            text = await websocket.receive_text()
    except TimeoutError:
        raise Refusal(AUTH_CLOSE_CODE, f"no auth message in time: {HOW_TO_AUTHENTICATE}") from None
    except KeyError:  # a binary message
        raise Refusal(AUTH_CLOSE_CODE, f"expected a text message: {HOW_TO_AUTHENTICATE}") from None
    try:
        message = orjson.loads(text[:MAX_AUTH_MESSAGE_CHARS])
    except orjson.JSONDecodeError:
        message = None
    ticket = message.get("ticket") if isinstance(message, dict) else None
    if (
        not isinstance(message, dict)
        or message.get("type") != "auth"
        or not isinstance(ticket, str)
    ):
        raise Refusal(
            AUTH_CLOSE_CODE, f"missing API key: {HOW_TO_AUTHENTICATE} (got {preview(text, 40)})"
        )
    return ticket


@router.websocket("/v1/live")
async def live_feed(websocket: WebSocket) -> None:
    await websocket.accept()
    query = websocket.query_params
    api = websocket.app.state.settings.api
    hub: Hub = websocket.app.state.live_hub
    try:
        owner = await _authenticate(websocket)
        try:
            subscription = subscription_from(
                query.get("kinds"), query.get("areas"), query.get("bbox")
            )
        except ApiError as exc:
            raise Refusal(BAD_REQUEST_CLOSE_CODE, str(exc.detail)) from None
        key_id = owner.key_id if owner else None
        full = hub.cap_refusal(key_id, api.live_max_clients, api.live_max_clients_per_key)
        if full is not None:
            raise Refusal(OVERLOAD_CLOSE_CODE, full)
    except Refusal as refusal:
        # A close reason is at most 123 bytes of UTF-8.
        await websocket.close(refusal.code, refusal.reason.encode()[:123].decode(errors="ignore"))
        return
    except WebSocketDisconnect:
        return
    client = hub.connect(subscription, key_id=key_id)
    await _send(websocket, {"type": "subscribed", "subscription": subscription.to_json()})
    sender = asyncio.create_task(_sender(websocket, client))
    try:
        await _receiver(websocket, client, sender)
    finally:
        hub.disconnect(client)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender


async def _receiver(websocket: WebSocket, client: Client, sender: asyncio.Task[None]) -> None:
    """Subscription changes from the client, until it leaves or the sender gives up on it."""
    receive: asyncio.Task[Any] | None = None
    try:
        while not sender.done():
            receive = asyncio.ensure_future(websocket.receive())
            await asyncio.wait({receive, sender}, return_when=asyncio.FIRST_COMPLETED)
            if not receive.done():
                break
            frame = receive.result()
            receive = None
            if frame["type"] == "websocket.disconnect":
                break
            try:
                if frame.get("text") is None:
                    raise ApiError(422, "send subscriptions as JSON in text frames")
                message = orjson.loads(frame["text"])
                if not isinstance(message, dict) or message.get("type") != "subscribe":
                    raise ApiError(422, 'expected {"type": "subscribe", ...}')
                client.subscription = subscription_from(
                    message.get("kinds"),
                    message.get("areas"),
                    message.get("bbox"),
                    message.get("readings", True),
                    message.get("alerts", True),
                )
            except (orjson.JSONDecodeError, ApiError) as exc:
                detail = exc.detail if isinstance(exc, ApiError) else "not JSON"
                await _send(websocket, {"type": "error", "message": str(detail)})
                continue
            await _send(
                websocket, {"type": "subscribed", "subscription": client.subscription.to_json()}
            )
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        if receive is not None and not receive.done():
            receive.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await receive


async def _sender(websocket: WebSocket, client: Client) -> None:
    """Send alerts as they come and readings at most every FLUSH_INTERVAL_S; drop if stuck."""
    outbox = client.outbox
    last_readings = 0.0
    while True:
        await outbox.wakeup.wait()
        if client.close_reason is not None:
            await _drop(websocket, client.close_reason, AUTH_CLOSE_CODE)
            return
        if outbox.overflowed:
            await _drop(websocket, "client too slow: its queue overflowed; reconnect")
            return
        wait = last_readings + FLUSH_INTERVAL_S - time.monotonic()
        if wait > 0 and not outbox.alerts:
            await asyncio.sleep(wait)
        alerts, readings = outbox.take()
        try:
            async with asyncio.timeout(SEND_TIMEOUT_S):
                if alerts:
                    await _send(websocket, {"type": "alerts", "alerts": alerts})
                if readings and time.monotonic() - last_readings >= FLUSH_INTERVAL_S:
                    await _send(websocket, {"type": "readings", "readings": readings})
                    last_readings = time.monotonic()
                elif readings:  # alerts went first; these wait for the next flush
                    for reading in readings:
                        outbox.offer_reading(reading)
        except TimeoutError:
            await _drop(websocket, "client too slow: a send did not complete in time")
            return


async def _send(websocket: WebSocket, message: dict[str, Any]) -> None:
    message["sent_at"] = datetime.now(UTC)
    await websocket.send_text(orjson.dumps(message, option=orjson.OPT_UTC_Z).decode())


async def _drop(websocket: WebSocket, reason: str, code: int = OVERLOAD_CLOSE_CODE) -> None:
    log.info("live feed: dropping a client: %s", reason)
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1.0):
            await websocket.close(code, reason)
