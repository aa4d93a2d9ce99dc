"""Change control in the console: the policy editor (validate, preview field by field, sign, publish), drafts
waiting for a second admin with what each would change, held governance changes (two-person rule off, admin
role), and the version history. Changes are admin-only; auditors read.

Handlers run in worker threads.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from starlette.responses import Response

from central import change_control, retention
from central.auth.principal import Principal
from central.console.deps import AdminActing, PathId, Viewer, back, page
from central.console.state import console_of
from central.runtime import Runtime
from central.store import policies, policy_changes
from central.store.console_config import load_config
from policy_client.schema import PolicyDocument

router = APIRouter(prefix="/console", include_in_schema=False)


def _context(runtime: Runtime, who: Principal) -> dict[str, Any]:
    """What every rendering of the policy page shows besides the editor; a held change about one desk (a
    quarantined file's release) only to viewers who see that desk's team."""
    now = runtime.clock()
    drafts = [
        d | {"outcome": policy_changes.draft_outcome(runtime.db, d, now=now)}
        for d in policy_changes.drafts(runtime.db, status="pending")
    ]
    current = policy_changes.current_document(runtime.db)
    return {
        "version": policies.latest_version(runtime.db),
        "drafts": drafts,
        "changes": [c for c in change_control.pending(runtime.db) if who.sees(c.team)],
        "history": policy_changes.history(runtime.db),
        "config": load_config(runtime.db),
        "server_event_days": retention.fleet_event_days(runtime.db),
        "policy_event_days": None if current is None else current.controls.reporting.retention_days,
    }


@router.get("/policy")
def policy_page(request: Request, who: Viewer) -> Response:
    runtime = console_of(request).runtime
    context = _context(runtime, who)
    return page(
        request,
        "policy.html",
        document=policy_changes.pretty(policy_changes.current_document(runtime.db)),
        base_version=context["version"],
        preview=None,
        diff=None,
        problems=None,
        summary="",
        **context,
    )


@router.post("/policy")
def policy_submit(
    request: Request,
    session: AdminActing,
    document: Annotated[str, Form()],
    step: Annotated[str, Form()] = "preview",
    summary: Annotated[str, Form()] = "",
    base_version: Annotated[int | None, Form(ge=0, le=2**31 - 1)] = None,
) -> Response:
    who = session.principal
    runtime = console_of(request).runtime
    context = _context(runtime, who)
    base = base_version if base_version is not None else context["version"]
    common: dict[str, Any] = {"document": document, "summary": summary, "base_version": base} | context
    try:
        parsed = policies.parse_policy(document.encode("utf-8"))
    except policies.InvalidPolicyError as exc:
        return page(request, "policy.html", status_code=422, preview=None, diff=None, problems=str(exc), **common)
    if step != "publish":
        preview = policy_changes.outcome(runtime.db, parsed, now=runtime.clock(), base_version=base)
        return page(
            request,
            "policy.html",
            preview=preview,
            diff=policy_changes.diff(runtime.db, preview.document) or "(no change)",
            problems=None,
            **common,
        )
    try:
        submitted = policy_changes.submit(
            runtime.db,
            runtime.signer,
            parsed,
            actor=who.name,
            summary=summary or "edited in the console",
            two_person=context["config"].two_person_rule,
            now=runtime.clock(),
            base_version=base,
        )
    except policies.PolicyMovedError as exc:
        return back("/console/policy", err=str(exc))
    if submitted.published_version is None:
        return back("/console/policy", msg=f"Draft #{submitted.draft_id} saved; a second admin must approve it.")
    return back("/console/policy", msg=f"Published policy version {submitted.published_version}.")


@router.post("/policy/retention")
def propose_retention(request: Request, session: AdminActing) -> Response:
    """Propose the server's events retention to agents (`controls.reporting.retention_days`) as a change of its own."""
    who = session.principal
    runtime = console_of(request).runtime
    stored = policies.current_policy(runtime.db)
    current = policy_changes.current_document(runtime.db)
    if stored is None or current is None:
        return back("/console/policy", err="There is no policy yet.")
    days = retention.fleet_event_days(runtime.db)
    if current.controls.reporting.retention_days == days:
        return back("/console/policy", msg=f"Agents already keep events {days} days.")
    reporting = current.controls.reporting.model_copy(update={"retention_days": days})
    document = current.model_copy(update={"controls": current.controls.model_copy(update={"reporting": reporting})})
    submitted = policy_changes.submit(
        runtime.db,
        runtime.signer,
        PolicyDocument.model_validate(document.model_dump()),
        actor=who.name,
        summary=f"agents keep events {days} days (the endpoint's events retention)",
        two_person=load_config(runtime.db).two_person_rule,
        now=runtime.clock(),
        base_version=stored.version,
    )
    if submitted.published_version is None:
        return back("/console/policy", msg=f"Draft #{submitted.draft_id} saved; a second admin must approve it.")
    return back("/console/policy", msg=f"Published policy version {submitted.published_version}.")


@router.post("/policy/drafts/{draft_id}/{decision}")
def draft_decision(request: Request, session: AdminActing, draft_id: PathId, decision: str) -> Response:
    who = session.principal
    runtime = console_of(request).runtime
    config = load_config(runtime.db)
    try:
        if decision == "approve":
            version = policy_changes.approve(
                runtime.db,
                runtime.signer,
                draft_id,
                actor=who.name,
                two_person=config.two_person_rule,
                now=runtime.clock(),
            )
            return back("/console/policy", msg=f"Approved; published policy version {version}.")
        if decision == "reject":
            policy_changes.reject(runtime.db, draft_id, actor=who.name, now=runtime.clock())
            return back("/console/policy", msg=f"Draft #{draft_id} rejected.")
    except (policy_changes.TwoPersonRuleError, policies.PolicyMovedError) as exc:
        return back("/console/policy", err=str(exc))
    except (LookupError, policy_changes.DraftStateError) as exc:
        return back("/console/policy", err=str(exc))
    raise HTTPException(status_code=404, detail="unknown decision")


@router.post("/changes/{change_id}/{decision}")
def change_decision(request: Request, session: AdminActing, change_id: PathId, decision: str) -> Response:
    """Approve or reject a held governance change (two-person rule off, admin role, a quarantined file's release)."""
    who = session.principal
    runtime = console_of(request).runtime
    try:
        if decision == "approve":
            change = change_control.approve(
                runtime.db,
                change_id,
                actor=who.name,
                now=runtime.clock(),
                signer=runtime.signer,
                teams=who.team_filter(),
            )
            return back("/console/policy", msg=f"Approved: {change.description}.")
        if decision == "reject":
            change = change_control.reject(runtime.db, change_id, actor=who.name, now=runtime.clock())
            return back("/console/policy", msg=f"Rejected: {change.description}.")
    except (change_control.SecondAdminError, change_control.ChangeStateError) as exc:
        return back("/console/policy", err=str(exc))
    raise HTTPException(status_code=404, detail="unknown decision")
