"""Serve the API with uvicorn inside our own event loop, so it stops with the other parts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import uvicorn

from urbanpulse.api.app import create_app
from urbanpulse.core.settings import Settings


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: the caller's stop event owns Ctrl-C."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_api(settings: Settings, stop: asyncio.Event) -> None:
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
