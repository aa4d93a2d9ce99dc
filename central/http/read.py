"""The read API behind API tokens: events, devices and alerts as JSON lists.

Plain `def` handlers, so FastAPI runs them in worker threads.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from central.http.auth import authenticate_api, runtime_of
from central.http.bodies import MAX_STORED_INT
from central.store import alerts, devices, events
from central.store.tokens import ApiPrincipal
from policy_client.schema import AgentMode, ErrorBody

router = APIRouter(prefix="/v1", tags=["read"], responses={401: {"model": ErrorBody}, 422: {"model": ErrorBody}})


def api_principal(request: Request) -> ApiPrincipal:
    return authenticate_api(runtime_of(request), request.headers.get("authorization"))


Principal = Annotated[ApiPrincipal, Depends(api_principal)]


class DeviceListing(BaseModel):
    """One row of `GET /v1/devices`; times are RFC 3339 UTC strings, health fields are null before a heartbeat."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    device_id: str
    team: str
    hostname: str
    os: str
    user: str
    agent_version: str
    enrolled_at: str
    last_seen: str | None
    online: bool
    revoked: bool
    policy_version: int | None
    queue_depth: int | None
    oldest_unsent_age_s: float | None
    collectors: dict[str, str]
    rss_bytes: int | None
    cpu_percent: float | None
    attention: list[str]
    mode: AgentMode = Field(
        description="`protected`: a privileged service the desk user cannot stop; `unprotected`: not tamper-resistant "
        "(demo/developer mode, an older agent, or no heartbeat yet)"
    )
    last_heartbeat: str | None
    last_seq: int
    missing_events: int


Limit = Annotated[int, Query(ge=1, le=events.MAX_PAGE)]
Cursor = Annotated[int | None, Query(ge=0, le=MAX_STORED_INT)]
"""Paging cursors and seqs are 64-bit in both databases; larger values are a 422, not a driver overflow."""


@router.get("/events")
def get_events(
    request: Request,
    _principal: Principal,
    device_id: str | None = None,
    kind: str | None = None,
    team: str | None = None,
    since_seq: Cursor = None,
    after_pk: Cursor = None,
    limit: Limit = 100,
) -> list[dict[str, Any]]:
    """Stored events, Event-shaped plus device_id, team, received_at and pk (the paging cursor)."""
    return events.list_events(
        runtime_of(request).db,
        device_id=device_id,
        kind=kind,
        team=team,
        since_seq=since_seq,
        after_pk=after_pk,
        limit=limit,
    )


@router.get("/devices", response_model=list[DeviceListing])
def get_devices(request: Request, _principal: Principal, team: str | None = None) -> list[dict[str, Any]]:
    runtime = runtime_of(request)
    return devices.list_devices(
        runtime.db, now=runtime.clock(), offline_after=runtime.settings.offline_after, team=team
    )


@router.get("/alerts")
def get_alerts(
    request: Request,
    _principal: Principal,
    device_id: str | None = None,
    kind: str | None = None,
    status: str | None = None,
    team: str | None = None,
    after_id: Annotated[int, Query(ge=0, le=MAX_STORED_INT)] = 0,
    limit: Limit = 100,
) -> list[dict[str, Any]]:
    return alerts.list_alerts(
        runtime_of(request).db,
        device_id=device_id,
        kind=kind,
        status=status,
        team=team,
        after_id=after_id,
        limit=limit,
    )
