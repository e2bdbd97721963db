"""Alerts: list and filter, one alert, and the operator's acknowledge / resolve."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, Field

from urbanpulse.alerts.model import AlertState
from urbanpulse.api.auth import OperatorDep, ViewerDep, audit
from urbanpulse.api.deps import ConnectionDep, KindName
from urbanpulse.api.errors import bad_parameter, error_responses
from urbanpulse.api.params import utc_param
from urbanpulse.core.vocabulary import Severity
from urbanpulse.storage import alerts as store
from urbanpulse.storage import geo

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])

AlertId = Annotated[
    str, Path(max_length=64, pattern=r"^[A-Za-z0-9-]+$", description="The alert's id")
]
# PostgreSQL text cannot hold NUL: refuse control characters in free text with a 422.
PLAIN = r"^[^\x00-\x1f]*$"
TRANSITION_ERRORS = error_responses(401, 403, 404, 409, 422)


class OperatorNote(BaseModel):
    note: str | None = Field(
        None, max_length=2000, pattern=r"^[^\x00]*$", description="What was done, for the log"
    )


def present(row: dict[str, Any]) -> dict[str, Any]:
    lon, lat = row.pop("lon"), row.pop("lat")
    row["location"] = None if lon is None else {"type": "Point", "coordinates": [lon, lat]}
    row["message"] = {"vi": row.pop("message_vi"), "en": row.pop("message_en")}
    return row


@router.get(
    "",
    summary="Alerts, critical first then newest, filtered by state, severity, kind, area, rule, "
    "time, incident",
    responses=error_responses(401, 403, 422),
)
async def list_alerts(
    conn: ConnectionDep,
    _caller: ViewerDep,
    state: Annotated[AlertState | None, Query()] = None,
    severity: Annotated[Severity | None, Query()] = None,
    kind: Annotated[KindName | None, Query()] = None,
    area: Annotated[
        str | None,
        Query(max_length=128, pattern=PLAIN, description="Area id: alerts in it or any area below"),
    ] = None,
    rule: Annotated[str | None, Query(max_length=64, pattern=PLAIN, description="Rule id")] = None,
    sensor: Annotated[
        str | None, Query(max_length=64, pattern=PLAIN, description="Sensor id")
    ] = None,
    start: Annotated[
        datetime | None, Query(alias="from", description="Opened at or after (ISO 8601)")
    ] = None,
    end: Annotated[datetime | None, Query(alias="to", description="Opened before")] = None,
    grouped: Annotated[
        bool | None,
        Query(description="false: hide members of an incident; true: only its members"),
    ] = None,
    incident: Annotated[
        str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9-]+$", description="Incident id")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    start, end = utc_param("from", start), utc_param("to", end)
    if start is not None and end is not None and start >= end:
        raise HTTPException(422, "'from' must be earlier than 'to'")
    if area is not None and not await geo.area_exists(conn, area):
        # A mistyped area would otherwise read as "no alerts there".
        raise bad_parameter("area", f"unknown area {area!r} (see /v1/areas)")
    where = store.AlertFilter(
        state=state.value if state else None,
        severity=severity.value if severity else None,
        kind=kind.value if kind else None,
        area_id=area,
        rule_id=rule,
        sensor_id=sensor,
        start=start,
        end=end,
        grouped=grouped,
        incident_id=incident,
    )
    rows, total = await store.list_alerts(conn, where, limit, offset)
    return {
        "total": total,
        "limit": limit,
        "offset": offset,
        "alerts": [present(r) for r in rows],
    }


@router.get("/{alert_id}", summary="One alert", responses=error_responses(401, 403, 404, 422))
async def get_alert(conn: ConnectionDep, _caller: ViewerDep, alert_id: AlertId) -> dict[str, Any]:
    row = await store.get_alert(conn, alert_id)
    if row is None:
        raise HTTPException(404, f"no alert {alert_id!r}")
    return present(row)


@router.post(
    "/{alert_id}/acknowledge",
    summary="Acknowledge an open alert (operator; audited)",
    responses=TRANSITION_ERRORS,
)
async def acknowledge(
    conn: ConnectionDep, principal: OperatorDep, alert_id: AlertId, body: OperatorNote
) -> dict[str, Any]:
    return await _transition(conn, principal, alert_id, body, "acknowledge")


@router.post(
    "/{alert_id}/resolve",
    summary="Resolve an alert by hand (operator; audited)",
    responses=TRANSITION_ERRORS,
)
async def resolve(
    conn: ConnectionDep, principal: OperatorDep, alert_id: AlertId, body: OperatorNote
) -> dict[str, Any]:
    return await _transition(conn, principal, alert_id, body, "resolve")


async def _transition(
    conn: ConnectionDep,
    principal: OperatorDep,
    alert_id: str,
    body: OperatorNote,
    action: str,
) -> dict[str, Any]:
    change = store.acknowledge if action == "acknowledge" else store.resolve
    try:
        async with conn.transaction():
            row = await change(conn, alert_id, principal.name, body.note)
            if row is None:
                raise HTTPException(404, f"no alert {alert_id!r}")
            await audit(conn, principal, f"alert.{action}", alert_id, {"note": body.note})
    except store.TransitionError as exc:
        raise HTTPException(409, str(exc)) from None
    return present(row)
