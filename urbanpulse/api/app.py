"""The FastAPI application, built from Settings by ``create_app`` (no import-time globals)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from urbanpulse import __version__
from urbanpulse.api.errors import install_error_handlers
from urbanpulse.api.guards import Guards
from urbanpulse.api.live import Hub, run_directory, run_kafka_feed, watch_revocations
from urbanpulse.api.routers import alerts as alerts_routes
from urbanpulse.api.routers import (
    area_history,
    areas,
    boards,
    exports,
    forecasts,
    gateways,
    health,
    incidents,
    keys,
    live,
    map_page,
    metrics,
    sensors,
)
from urbanpulse.core.settings import DbRole, KafkaPrincipal, Settings
from urbanpulse.storage.db import create_pool


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.pool = await create_pool(settings, DbRole.API)
        app.state.live_hub = hub = Hub()
        app.state.guards = Guards(settings.api, hub.metrics)
        feed = [
            asyncio.create_task(run_directory(hub.directory, app.state.pool)),
            asyncio.create_task(run_kafka_feed(settings.kafka_as(KafkaPrincipal.API), hub)),
            asyncio.create_task(watch_revocations(settings, hub)),
        ]
        try:
            yield
        finally:
            for task in feed:
                task.cancel()
            await asyncio.gather(*feed, return_exceptions=True)
            await app.state.pool.close()

    # /docs (Swagger UI) and /redoc load their scripts and styles from the package, not from a
    # CDN: operations centers run on closed networks.  The validator badge would call out too.
    app = FastAPIOffline(
        title="UrbanPulse API",
        version=__version__,
        description="Live sensor data of the city operations center: GeoJSON and time series.",
        lifespan=lifespan,
        swagger_ui_parameters={"validatorUrl": None},
    )
    app.include_router(health.router)
    app.include_router(metrics.router)
    install_error_handlers(app)
    app.include_router(sensors.router)
    app.include_router(area_history.router)  # before areas: /history is no area id
    app.include_router(areas.router)
    app.include_router(exports.router)
    app.include_router(exports.page_router)
    app.include_router(keys.router)
    app.include_router(gateways.router)
    app.include_router(live.router)
    map_page.install(app)
    app.include_router(alerts_routes.router)
    app.include_router(incidents.router)
    app.include_router(forecasts.router)
    app.include_router(boards.router)
    return app
