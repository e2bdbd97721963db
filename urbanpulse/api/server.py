"""Serve the API with uvicorn inside our own event loop, so it stops with the other parts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import Iterator

import uvicorn

from urbanpulse.api.app import create_app
from urbanpulse.core.settings import Settings
from urbanpulse.runtime import StartupError
from urbanpulse.storage.db import ensure_database_reachable


def check_port_free(host: str, port: int) -> None:
    """Fail early and clearly: uvicorn would exit the whole process on a taken port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise StartupError(
                f"cannot serve the API on {host}:{port} ({exc.strerror}); is another UrbanPulse "
                "running? Stop it or choose another port with URBANPULSE_API__PORT"
            ) from None


class QueryStringHider(logging.Filter):
    """Drops the query string from the paths uvicorn logs (``"WebSocket /v1/live?..."``): a
    client may still put a key there, and a log must never hold one."""

    _QUERY = re.compile(r"\?.*", re.DOTALL)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                self._QUERY.sub("?<hidden>", arg)
                if isinstance(arg, str) and arg[:1] == "/"
                else arg
                for arg in record.args
            )
        return True


def hide_query_strings() -> None:
    """Install :class:`QueryStringHider` on uvicorn's loggers, once."""
    for name in ("uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, QueryStringHider) for f in logger.filters):
            logger.addFilter(QueryStringHider())


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: the caller's stop event owns Ctrl-C."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_api(settings: Settings, stop: asyncio.Event) -> None:
    check_port_free(settings.api.host, settings.api.port)
    await ensure_database_reachable(settings.database)  # uvicorn would exit with a traceback
    hide_query_strings()
    config = uvicorn.Config(
        create_app(settings),
        host=settings.api.host,
        port=settings.api.port,
        log_config=None,  # keep our logging configuration
        access_log=False,
        lifespan="on",
    )
    server = _EmbeddedServer(config)
    serving = asyncio.create_task(server.serve())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({serving, stopper}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    stopper.cancel()
    await serving
