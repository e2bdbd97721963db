"""The FastAPI application, built from Settings by ``create_app`` (no import-time globals)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from urbanpulse import __version__
from urbanpulse.api.routers import health, sensors
from urbanpulse.core.settings import Settings
from urbanpulse.storage.db import create_pool


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.pool = await create_pool(settings.database)
        try:
            yield
        finally:
            await app.state.pool.close()

    app = FastAPI(
        title="UrbanPulse API",
        version=__version__,
        description="Live sensor data of the city operations center: GeoJSON and time series.",
        lifespan=lifespan,
    )
    app.include_router(health.router)
    app.include_router(sensors.router)
    return app
