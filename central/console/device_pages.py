"""One device's page: its state and last heartbeat, policy version against the current one, its events (masked
clipboard events included), alerts, USB exception requests, unlock tokens and quarantined downloads; admins
release or delete a quarantined download from here.

Handlers run in worker threads. A device outside the viewer's teams is answered like one that does not exist (404).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi import Path as PathParam
from starlette.responses import Response

from central import change_control
from central.alerting import workflow
from central.console.deps import AdminActing, CursorId, Viewer, back, page
from central.console.fleet_pages import with_policy_state
from central.console.forms import event_kind
from central.console.queries import device_detail, device_events
from central.console.state import console_of
from central.store import exception_requests, policies, quarantine, unlock_tokens
from central.store.console_config import load_config

router = APIRouter(prefix="/console", include_in_schema=False)

EVENTS_PAGE = 100
DeviceId = Annotated[str, PathParam(min_length=1, max_length=64)]
QuarantineId = Annotated[str, PathParam(pattern=quarantine.QUARANTINE_ID_RE.pattern)]


def _device(request: Request, who: Any, device_id: str) -> dict[str, Any]:
    runtime = console_of(request).runtime
    found = device_detail(runtime.db, who, device_id, now=runtime.clock(), offline_after=runtime.settings.offline_after)
    if found is None:
        raise HTTPException(status_code=404, detail="no such device")
    return dict(found)


@router.get("/devices/{device_id}")
def device_page(
    request: Request,
    who: Viewer,
    device_id: DeviceId,
    before: CursorId = None,
    kind: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    runtime = console_of(request).runtime
    device = _device(request, who, device_id)
    current = policies.latest_version(runtime.db)
    [device] = with_policy_state([device], current)
    try:
        chosen_kind = event_kind(kind)
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    events = device_events(runtime.db, device_id, before_seq=before, kind=chosen_kind or None, limit=EVENTS_PAGE + 1)
    older = ""
    if len(events) > EVENTS_PAGE:
        events = events[:EVENTS_PAGE]
        older = f"/console/devices/{device_id}?before={events[-1]['seq']}" + (
            f"&kind={chosen_kind}" if chosen_kind else ""
        )
    quarantine.import_outcomes(runtime.db, now=runtime.clock())
    alerts = workflow.list_alerts(runtime.db, who, search=workflow.AlertSearch(device_id=device_id), limit=50)
    return page(
        request,
        "device.html",
        device=device,
        current_policy=current,
        events=events,
        older=older,
        kind=chosen_kind,
        alerts=alerts,
        requests=exception_requests.list_requests(runtime.db, teams=who.team_filter(), device_id=device_id),
        unlocks=unlock_tokens.list_issued(runtime.db, device_id=device_id, limit=20),
        quarantined=quarantine.quarantined_files(runtime.db, device_id),
        now=runtime.clock(),
    )


@router.post("/devices/{device_id}/quarantine/{quarantine_id}/{decision}")
def quarantine_decision(
    request: Request, session: AdminActing, device_id: DeviceId, quarantine_id: QuarantineId, decision: str
) -> Response:
    """An admin releases a quarantined download to the desk user's Downloads, or deletes it; the device's service
    carries it out and reports back. Audited when issued and again when the outcome arrives."""
    if decision not in ("release", "delete"):
        raise HTTPException(status_code=404, detail="unknown decision")
    runtime = console_of(request).runtime
    who = session.principal
    try:
        if decision == "release":
            outcome = change_control.release_quarantined(
                runtime.db,
                runtime.signer,
                device_id,
                quarantine_id,
                actor=who.name,
                teams=who.team_filter(),
                two_person=load_config(runtime.db).two_person_rule,
                now=runtime.clock(),
            )
        else:
            outcome = quarantine.issue(
                runtime.db,
                runtime.signer,
                device_id,
                quarantine_id,
                action="delete",
                actor=who.name,
                teams=who.team_filter(),
                now=runtime.clock(),
            )
    except quarantine.QuarantineNotFound:
        raise HTTPException(status_code=404, detail="no such quarantined file on this device") from None
    except quarantine.DecisionRefused as exc:
        return back(f"/console/devices/{device_id}", err=str(exc))
    if isinstance(outcome, change_control.Held):
        return back(
            f"/console/devices/{device_id}",
            msg=f"The two-person rule is on: the release waits for a second admin (change #{outcome.change_id}, "
            "on the Policy page).",
        )
    issued = outcome
    verb = "released" if decision == "release" else "deleted"
    return back(
        f"/console/devices/{device_id}",
        msg=f"The file will be {verb} when the device next asks (command {issued['command_id']}); "
        "its outcome shows here.",
    )
