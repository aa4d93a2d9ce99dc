"""Devices (unlock tokens, revocation), acknowledgements and clean-desk attestations, and USB exception requests.

Handlers run in worker threads; every list is scoped to the viewer's teams.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from starlette.responses import Response

from central.console.deps import ActorActing, AdminActing, PathId, Viewer, back, page
from central.console.queries import attestations, visible_devices
from central.console.state import console_of
from central.store import audit, devices, exception_requests, policies, unlock_tokens
from central.store.console_config import load_config
from central.store.policy_changes import TwoPersonRuleError

router = APIRouter(prefix="/console", include_in_schema=False)

UNLOCK_TTL = timedelta(hours=8)
"""How long a token issued in the console may wait to be entered at the desk."""


@router.get("/devices")
def devices_page(request: Request, who: Viewer) -> Response:
    runtime = console_of(request).runtime
    rows = visible_devices(runtime.db, who, now=runtime.clock(), offline_after=runtime.settings.offline_after)
    current = policies.latest_version(runtime.db)
    return page(request, "devices.html", devices=with_policy_state(rows, current), current_policy=current)


def with_policy_state(rows: list[dict[str, Any]], current: int) -> list[dict[str, Any]]:
    """Each device with `policy_state`: `stale` below the current policy version, `unknown` above it (never
    published: alerted as tamper.policy_unknown), `current`, or None before its first heartbeat."""
    out = []
    for row in rows:
        version = row.get("policy_version")
        if version is None:
            state = None
        elif version < current:
            state = "stale"
        elif version > current:
            state = "unknown"
        else:
            state = "current"
        out.append(row | {"policy_state": state})
    return out


@router.post("/devices/{device_id}/unlock-token")
def unlock_token_page(
    request: Request,
    session: AdminActing,
    device_id: str,
    scope: Annotated[str, Form()] = "quit",
    minutes: Annotated[str, Form()] = "60",
) -> Response:
    """Admins issue a signed unlock token (quit the tray for N minutes, or uninstall) for one desk; audit-logged.

    The page shows the token once; it is never stored or logged, only its id.
    """
    runtime = console_of(request).runtime
    now = runtime.clock()
    try:
        issued = unlock_tokens.issue(
            runtime.db,
            runtime.signer,
            device_id,
            scope=scope,
            minutes=int(minutes) if minutes.strip().isdecimal() else -1,
            ttl=UNLOCK_TTL,
            actor=session.principal.name,
            now=now,
        )
    except unlock_tokens.UnknownDevice:
        raise HTTPException(status_code=404, detail="no such device") from None
    except ValueError as exc:
        return back("/console/devices", err=str(exc))
    rows = visible_devices(runtime.db, session.principal, now=now, offline_after=runtime.settings.offline_after)
    hostname = next((d["hostname"] for d in rows if d["device_id"] == device_id), "")
    unlock = {
        "device_id": device_id,
        "hostname": hostname,
        "text": issued.text,
        "scope": issued.token.scope,
        "minutes": issued.token.minutes,
        "expires_at": issued.token.expires_at,
    }
    current = policies.latest_version(runtime.db)
    answer = page(
        request, "devices.html", devices=with_policy_state(rows, current), current_policy=current, unlock=unlock
    )
    answer.headers["Cache-Control"] = "no-store"  # the page carries a credential
    return answer


@router.post("/devices/{device_id}/revoke")
def revoke_device(request: Request, session: AdminActing, device_id: str) -> Response:
    """Admins revoke a lost or re-imaged PC's credential; its agent then asks to be re-enrolled."""
    who = session.principal
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
    rows = exception_requests.list_requests(runtime.db, teams=who.team_filter(), status=status or None)
    return page(request, "exceptions.html", requests=rows, status=status, now=runtime.clock())


@router.post("/exceptions/{request_id}/revoke")
def revoke(request: Request, session: ActorActing, request_id: PathId) -> Response:
    """Withdraw an approved exception before it expires (a policy change, under the two-person rule a draft)."""
    who = session.principal
    runtime = console_of(request).runtime
    try:
        submitted = exception_requests.revoke(
            runtime.db,
            runtime.signer,
            request_id,
            actor=who.name,
            teams=who.team_filter(),
            two_person=load_config(runtime.db).two_person_rule,
            now=runtime.clock(),
        )
    except exception_requests.RequestNotFound:
        raise HTTPException(status_code=404, detail="no such request") from None
    except ValueError as exc:
        return back("/console/exceptions?status=approved", err=str(exc))
    if submitted.withdrawn:
        return back("/console/exceptions", msg=f"Revoked; its policy draft #{submitted.draft_id} was withdrawn.")
    if submitted.published_version is None:
        return back(
            "/console/exceptions",
            msg=f"Revoked; policy draft #{submitted.draft_id} removes it once a second admin approves it.",
        )
    return back("/console/exceptions", msg=f"Revoked; policy version {submitted.published_version} no longer has it.")


@router.post("/exceptions/{request_id}/{decision}")
def decide(
    request: Request,
    session: ActorActing,
    request_id: int,
    decision: str,
    minutes: Annotated[int | None, Form()] = None,
) -> Response:
    who = session.principal
    if decision not in ("approve", "deny"):
        raise HTTPException(status_code=404, detail="unknown decision")
    runtime = console_of(request).runtime
    config = load_config(runtime.db)
    try:
        submitted = exception_requests.decide(
            runtime.db,
            runtime.signer,
            request_id,
            actor=who.name,
            teams=who.team_filter(),
            approve=decision == "approve",
            minutes=minutes,
            two_person=config.two_person_rule,
            now=runtime.clock(),
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
