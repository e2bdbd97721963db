"""One error body for every failure: ``{"error": {"status", "message", "details"}}``.

FastAPI's own validation errors (422), routing errors (404, 405), our ``HTTPException``s and any
unexpected exception (500, logged) all leave the API in this shape, so clients parse one thing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)


class ApiError(StarletteHTTPException):
    """An HTTP error with structured details (each a dict naming the parameter at fault)."""

    def __init__(
        self,
        status_code: int,
        message: str,
        details: Sequence[dict[str, Any]] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status_code, message, headers)
        self.details = list(details)


def bad_parameter(name: str, message: str, where: str = "query") -> ApiError:
    """A 422 for one parameter, e.g. ``bad_parameter("bbox", "minLon must be < maxLon")``."""
    return ApiError(422, f"{name}: {message}", [{"loc": [where, name], "msg": message}])


def error_body(status: int, message: str, details: Sequence[Any] = ()) -> dict[str, Any]:
    return {"error": {"status": status, "message": message, "details": list(details)}}


def _plain(value: Any) -> Any:
    """A JSON-safe copy of a validation error field (pydantic may hold exceptions in ctx)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def validation_details(errors: Sequence[Any]) -> list[dict[str, Any]]:
    return [
        {"loc": _plain(e.get("loc", [])), "msg": str(e.get("msg", "")), "type": e.get("type")}
        for e in errors
        if isinstance(e, dict)
    ]


def validation_message(details: Sequence[dict[str, Any]]) -> str:
    parts = []
    for d in details[:5]:
        loc = [str(p) for p in d["loc"]]
        name = ".".join(loc[1:] if len(loc) > 1 else loc) or "request"
        parts.append(f"{name}: {d['msg']}")
    more = f" (and {len(details) - 5} more)" if len(details) > 5 else ""
    return "invalid request: " + "; ".join(parts) + more


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    details = exc.details if isinstance(exc, ApiError) else []
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return JSONResponse(
        error_body(exc.status_code, message, details),
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = validation_details(exc.errors())
    return JSONResponse(error_body(422, validation_message(details), details), status_code=422)


async def _bad_data(request: Request, exc: Exception) -> JSONResponse:
    """PostgreSQL refused a value (class 22, e.g. a NUL in JSON text): the caller's data."""
    message = f"invalid data: {getattr(exc, 'message', None) or exc}"
    return JSONResponse(error_body(422, message), status_code=422)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(error_body(500, "internal server error"), status_code=500)


class RejectNulMiddleware:
    """A 422 for any URL holding a NUL character, which no parameter of ours may contain
    (PostgreSQL refuses it in text, so it would otherwise surface as a 500)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and (
            b"%00" in scope.get("query_string", b"")
            or "\x00" in scope.get("path", "")
            or b"%00" in scope.get("raw_path", b"")
        ):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 4400, "reason": "NUL in URL"})
                return
            message = "parameters may not contain NUL characters (%00)"
            response = JSONResponse(error_body(422, message), status_code=422)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    app.add_middleware(RejectNulMiddleware)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(asyncpg.DataError, _bad_data)
    app.add_exception_handler(Exception, _unexpected)


# What every documented error response looks like, for the OpenAPI spec.
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "status": {"type": "integer"},
                "message": {"type": "string"},
                "details": {"type": "array", "items": {"type": "object"}},
            },
            "required": ["status", "message", "details"],
        }
    },
    "required": ["error"],
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    text = {
        401: "Missing, unknown or revoked API key",
        403: "The key's role may not do this",
        404: "Not found",
        409: "Conflicts with the current state",
        422: "A parameter is invalid; the message names it",
        429: "Too many failed authentications from this client, or a cap is reached: see "
        "Retry-After",
    }
    return {
        s: {
            "description": text.get(s, "Error"),
            "content": {"application/json": {"schema": ERROR_SCHEMA}},
        }
        for s in statuses
    }
