"""Devices, acknowledgements and clean-desk attestations, and USB exception requests (approve / deny).

Handlers run in worker threads; every list is scoped to the viewer's teams.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from starlette.responses import Response

from central import retention
from central.auth import audit
from central.console.deps import Acting, Viewer, back, page, require_actor, require_admin
from central.console.queries import attestations, visible_devices
from central.console.state import console_of
from central.store import devices, exception_requests
from central.store.console_config import load_config
from central.store.policy_changes import TwoPersonRuleError

router = APIRouter(prefix="/console", include_in_schema=False)


@router.get("/devices")
def devices_page(request: Request, who: Viewer) -> Response:
    runtime = console_of(request).runtime
    rows = visible_devices(runtime.db, who, now=runtime.clock(), offline_after=runtime.settings.offline_after)
    return page(request, "devices.html", devices=rows)


@router.post("/devices/{device_id}/unlock-code")
def unlock_code_page(request: Request, session: Acting, device_id: str) -> Response:
    """Admins issue today's unlock code so a desk's agent may be quit or uninstalled; audit-logged."""
    who = session.principal
    require_admin(who)
    runtime = console_of(request).runtime
    now = runtime.clock()
    issued = devices.issue_unlock_code(runtime.db, device_id, now=now)
    if issued is None:
        raise HTTPException(status_code=404, detail="no such device")
    code, team = issued
    with runtime.db.write() as conn:
        audit.record(conn, actor=who.name, action="device.unlock_code", target=device_id, team=team, now=now)
    rows = visible_devices(runtime.db, who, now=now, offline_after=runtime.settings.offline_after)
    return page(request, "devices.html", devices=rows, unlock={"device_id": device_id, "code": code})


@router.post("/devices/{device_id}/revoke")
def revoke_device(request: Request, session: Acting, device_id: str) -> Response:
    """Admins revoke a lost or re-imaged PC's credential; its agent then asks to be re-enrolled."""
    who = session.principal
    require_admin(who)
    runtime = console_of(request).runtime
    now = runtime.clock()
    team = next(
        (
            d["team"]
            for d in devices.list_devices(runtime.db, now=now, offline_after=runtime.settings.offline_after)
            if d["device_id"] == device_id
        ),
        None,
    )
    if team is None:
        raise HTTPException(status_code=404, detail="no such device")
    if devices.revoke_device(runtime.db, device_id, now=now):
        with runtime.db.write() as conn:
            audit.record(conn, actor=who.name, action="device.revoke", target=device_id, team=team, now=now)
        return back("/console/devices", msg=f"Device {device_id[:12]} revoked; its agent must be enrolled again.")
    return back("/console/devices", err="That device was already revoked.")


@router.get("/attestations")
def attestations_page(request: Request, who: Viewer) -> Response:
    runtime = console_of(request).runtime
    return page(request, "attestations.html", rows=attestations(runtime.db, who, now=runtime.clock()))


@router.get("/exceptions")
def exceptions_page(request: Request, who: Viewer, status: str = "") -> Response:
    runtime = console_of(request).runtime
    exception_requests.import_requests(runtime.db)
    rows = exception_requests.list_requests(runtime.db, who, status=status or None)
    return page(request, "exceptions.html", requests=rows, status=status)


@router.post("/exceptions/{request_id}/{decision}")
def decide(
    request: Request,
    session: Acting,
    request_id: int,
    decision: str,
    minutes: Annotated[int | None, Form()] = None,
) -> Response:
    who = session.principal
    require_actor(who)
    if decision not in ("approve", "deny"):
        raise HTTPException(status_code=404, detail="unknown decision")
    runtime = console_of(request).runtime
    config = load_config(runtime.db)
    try:
        submitted = exception_requests.decide(
            runtime.db,
            runtime.signer,
            request_id,
            who,
            approve=decision == "approve",
            minutes=minutes,
            two_person=config.two_person_rule,
            now=runtime.clock(),
            retention_days=retention.fleet_event_days(runtime.db),
        )
    except exception_requests.RequestNotFound:
        raise HTTPException(status_code=404, detail="no such request") from None
    except (ValueError, TwoPersonRuleError) as exc:
        return back("/console/exceptions", err=str(exc))
    if submitted is None:
        return back("/console/exceptions", msg=f"Request #{request_id} denied.")
    if submitted.published_version is None:
        return back(
            "/console/exceptions",
            msg=f"Approved; policy draft #{submitted.draft_id} waits for a second admin (two-person rule).",
        )
    return back("/console/exceptions", msg=f"Approved; published as policy version {submitted.published_version}.")
