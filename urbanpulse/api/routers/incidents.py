"""Incidents: storms of alerts grouped (one rule, one area, many sensors at once)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query

from urbanpulse.alerts.incidents import IncidentState
from urbanpulse.api.auth import ViewerDep
from urbanpulse.api.deps import ConnectionDep, KindName
from urbanpulse.api.routers.alerts import PLAIN, present
from urbanpulse.storage import alerts as store

router = APIRouter(prefix="/v1/incidents", tags=["alerts"])

IncidentId = Annotated[
    str, Path(max_length=64, pattern=r"^[A-Za-z0-9-]+$", description="The incident's id")
]


@router.get("", summary="Incidents, critical first then newest, filtered by state, kind, area")
async def list_incidents(
    conn: ConnectionDep,
    _caller: ViewerDep,
    state: Annotated[IncidentState | None, Query()] = None,
    kind: Annotated[KindName | None, Query()] = None,
    area: Annotated[str | None, Query(max_length=128, pattern=PLAIN, description="Area id")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    rows, total = await store.list_incidents(
        conn,
        state.value if state else None,
        kind.value if kind else None,
        area,
        limit,
        offset,
    )
    return {"total": total, "limit": limit, "offset": offset, "incidents": rows}


@router.get("/{incident_id}", summary="One incident with its member alerts (a page of them)")
async def get_incident(
    conn: ConnectionDep,
    _caller: ViewerDep,
    incident_id: IncidentId,
    limit: Annotated[int, Query(ge=1, le=1000, description="Members per page")] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    incident = await store.get_incident(conn, incident_id)
    if incident is None:
        raise HTTPException(404, f"no incident {incident_id!r}")
    members, total = await store.list_alerts(
        conn, store.AlertFilter(incident_id=incident_id), limit, offset
    )
    incident["members"] = {
        "total": total,
        "limit": limit,
        "offset": offset,
        "alerts": [present(r) for r in members],
    }
    return incident
