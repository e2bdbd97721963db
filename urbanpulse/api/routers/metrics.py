"""``/metrics``: the API process's Prometheus metrics (live-feed clients and records)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter(tags=["health"])


# Scraped by Prometheus, not called by API clients: kept out of the OpenAPI document.
@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    registry = request.app.state.live_hub.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
