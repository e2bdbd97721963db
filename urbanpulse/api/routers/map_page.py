"""The ops-center map page: static files under ``/map`` and the settings it starts from.

The page is plain HTML, CSS and JavaScript shipped in the package (no build step, no CDN), so
it works on a closed network; the base map is optional (``api.map_tile_url``, empty by default).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Header, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from urbanpulse.api.auth import identify
from urbanpulse.api.deps import ConnectionDep, SettingsDep
from urbanpulse.api.live import FLUSH_INTERVAL_S
from urbanpulse.api.routers.boards import shown_boards
from urbanpulse.core.catalogue import KINDS
from urbanpulse.storage import geo
from urbanpulse.storage.scales import MAP_SCALES, kind_legend, map_legend

STATIC_DIR = Path(__file__).resolve().parent.parent / "static" / "map"
HCMC_CENTRE_BBOX = [106.62, 10.72, 106.78, 10.84]

router = APIRouter(tags=["map"])


@router.get("/map", include_in_schema=False)
async def map_redirect(request: Request) -> RedirectResponse:
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(f"/map/{query}", status_code=307)


@router.get("/v1/map/config", summary="What the map page starts from (open: no secrets)")
async def map_config(
    request: Request,
    conn: ConnectionDep,
    settings: SettingsDep,
    x_api_key: Annotated[
        str | None,
        Header(max_length=200, description="Optional: the answer then names this key's role"),
    ] = None,
) -> dict[str, Any]:
    # The role only decides which buttons the page shows; every action checks the key again.
    # A wrong key counts as a failed authentication here too: this is no guessing oracle.
    owner = await identify(request, x_api_key) if x_api_key else None
    return {
        "tile_url": settings.api.map_tile_url,
        "extent": list(settings.api.map_bbox or [])
        or await geo.map_extent(conn)
        or HCMC_CENTRE_BBOX,
        "kinds": list(KINDS),
        "legend": map_legend(),
        # The map colours one kind at a time: each kind with a scale, its legend and what a
        # sensor must report before it has a value on it.
        "scales": [
            {
                "kind": scale.kind,
                "field": scale.field,
                "legend": kind_legend(scale),
                "needs_vi": scale.needs[0],
                "needs_en": scale.needs[1],
                # Whether the kind's table keeps the value's history (a chart can show it).
                "history": scale.field in KINDS[scale.kind].by_name
                or any(d.name == scale.field for d in KINDS[scale.kind].derived),
            }
            for scale in MAP_SCALES
        ],
        # Kinds shown as facility boards (sites against their limits), not on a scale.
        "boards": shown_boards(settings),
        "levels": await geo.area_levels(conn),
        "public_read": settings.api.public_read,
        "live_flush_ms": int(FLUSH_INTERVAL_S * 1000),
        "role": owner.role.value if owner else None,
    }


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/map", StaticFiles(directory=STATIC_DIR, html=True), name="map")
