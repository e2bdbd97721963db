"""``/v1/live``: the WebSocket feed of new readings (latest per sensor) and alert events.

Connect with ``?key=<api key>`` (checked like ``X-API-Key``) and optional ``kinds``, ``areas``
(comma-separated) and ``bbox``; send ``{"type": "subscribe", "kinds": [...], "areas": [...],
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

from urbanpulse.api.errors import ApiError
from urbanpulse.api.live import FLUSH_INTERVAL_S, OVERLOAD_CLOSE_CODE, Client, Hub, Subscription
from urbanpulse.api.params import parse_bbox
from urbanpulse.core.catalogue import KINDS
from urbanpulse.storage.keys import Role, find_key

log = logging.getLogger(__name__)

router = APIRouter(tags=["live"])

SEND_TIMEOUT_S = 5.0
AUTH_CLOSE_CODE = 4401
BAD_REQUEST_CLOSE_CODE = 4400


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


async def _authorised(websocket: WebSocket) -> str | None:
    """Why the caller may not connect, or None when it may."""
    key = websocket.query_params.get("key") or websocket.headers.get("x-api-key")
    if not key:
        if websocket.app.state.settings.api.public_read:
            return None
        return "missing API key: connect with ?key=<key>"
    async with websocket.app.state.pool.acquire() as conn:
        owner = await find_key(conn, key)
    if owner is None:
        return "unknown or revoked API key"
    return None if owner.role.allows(Role.VIEWER) else "this key may not read"


@router.websocket("/v1/live")
async def live_feed(websocket: WebSocket) -> None:
    await websocket.accept()
    refusal = await _authorised(websocket)
    if refusal is not None:
        await websocket.close(AUTH_CLOSE_CODE, refusal)
        return
    query = websocket.query_params
    try:
        subscription = subscription_from(query.get("kinds"), query.get("areas"), query.get("bbox"))
    except ApiError as exc:
        await websocket.close(BAD_REQUEST_CLOSE_CODE, str(exc.detail)[:120])
        return
    hub: Hub = websocket.app.state.live_hub
    client = hub.connect(subscription)
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
            receive = asyncio.ensure_future(websocket.receive_text())
            await asyncio.wait({receive, sender}, return_when=asyncio.FIRST_COMPLETED)
            if not receive.done():
                break
            text = receive.result()
            receive = None
            try:
                message = orjson.loads(text)
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


async def _drop(websocket: WebSocket, reason: str) -> None:
    log.info("live feed: dropping a client: %s", reason)
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1.0):
            await websocket.close(OVERLOAD_CLOSE_CODE, reason)
