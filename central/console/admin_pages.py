"""Routing rules, teams and users, settings and retention, and the audit log (the policy editor is in
`policy_pages`). Changes are admin-only; auditors read.

Handlers run in worker threads.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from datetime import timedelta
from typing import Annotated, cast

from fastapi import APIRouter, Form, HTTPException, Request
from pydantic import ValidationError
from starlette.responses import Response

from central import change_control, retention
from central.alerting import rules as routing
from central.auth import users
from central.console import forms
from central.console.deps import AdminActing, CursorId, FleetViewer, PathId, Viewer, back, page
from central.console.queries import teams
from central.console.state import console_of
from central.names import check_name
from central.netguard import check_webhook_url
from central.store import audit, tokens
from central.store.console_config import ConsoleConfig, load_config

router = APIRouter(prefix="/console", include_in_schema=False)


# -- routing rules ----------------------------------------------------------------------------------

RULE_EXAMPLE = {
    "name": "Tamper to security",
    "team": None,
    "kinds": ["tamper.*", "agent.offline"],
    "min_severity": "medium",
    "channels": [{"type": "console"}, {"type": "webhook", "url": "https://hooks.example.com/T000/B000"}],
    "dedupe_seconds": 300,
    "sla_minutes": 60,
    "escalate_to": [{"type": "email", "to": ["security@example.com"]}],
    "playbook": {"steps": ["Call the agent's team lead", "Check the device in person"], "link": ""},
}


@router.get("/rules")
def rules_page(request: Request, who: Viewer) -> Response:
    runtime = console_of(request).runtime
    rows = [r for r in routing.list_rules(runtime.db) if who.all_teams or r.spec.team is None or who.sees(r.spec.team)]
    return page(
        request,
        "rules.html",
        rules=rows,
        example=json.dumps(RULE_EXAMPLE, indent=2),
        as_json=lambda r: r.spec.model_dump_json(indent=2),
    )


@router.post("/rules")
def rules_save(
    request: Request, session: AdminActing, spec: Annotated[str, Form()], rule_id: Annotated[str, Form()] = ""
) -> Response:
    who = session.principal
    runtime = console_of(request).runtime
    try:
        parsed = routing.RuleSpec.model_validate_json(spec)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        return back("/console/rules", err=f"invalid rule: {problems}")
    try:
        forms.web_url(parsed.playbook.link, field="playbook.link")
        allow_internal = runtime.settings.allow_internal_webhooks
        for channel in (*parsed.channels, *parsed.escalate_to):
            if channel.type == "webhook" and channel.url is not None:
                check_webhook_url(str(channel.url), allow_internal=allow_internal)
    except ValueError as exc:
        return back("/console/rules", err=f"invalid rule: {exc}")
    now = runtime.clock()
    with runtime.db.write() as conn:
        existing = routing.get_rule(conn, int(rule_id)) if rule_id.isdigit() else None
        saved = routing.save_rule(conn, parsed, now=now, rule_id=existing.id if existing else None)
        audit.record(
            conn,
            actor=who.name,
            action="rule.save",
            target=f"rule:{saved}",
            team=parsed.team,
            now=now,
            before=None if existing is None else existing.spec.model_dump(mode="json"),
            after=parsed.model_dump(mode="json"),
        )
    return back("/console/rules", msg=f"Rule #{saved} saved.")


@router.post("/rules/{rule_id}/delete")
def rules_delete(request: Request, session: AdminActing, rule_id: PathId) -> Response:
    who = session.principal
    runtime = console_of(request).runtime
    now = runtime.clock()
    with runtime.db.write() as conn:
        existing = routing.get_rule(conn, rule_id)
        if existing is None:
            raise HTTPException(status_code=404, detail="no such rule")
        routing.delete_rule(conn, rule_id)
        audit.record(
            conn,
            actor=who.name,
            action="rule.delete",
            target=f"rule:{rule_id}",
            team=existing.spec.team,
            before=existing.spec.model_dump(mode="json"),
            now=now,
        )
    return back("/console/rules", msg=f"Rule #{rule_id} deleted.")


# -- teams and users ------------------------------------------------------------------------------------


@router.get("/teams")
def teams_page(request: Request, who: Viewer, token: str = "") -> Response:
    runtime = console_of(request).runtime
    team_rows = [t for t in teams(runtime.db) if who.sees(t["name"])]
    user_rows = users.list_users(runtime.db) if who.all_teams else []
    return page(request, "teams.html", teams=team_rows, users=user_rows, new_token=token)


@router.post("/users")
def user_create(
    request: Request,
    session: AdminActing,
    name: Annotated[str, Form()],
    role: Annotated[str, Form()],
    teams_field: Annotated[str, Form(alias="teams")] = "",
    password: Annotated[str, Form()] = "",
) -> Response:
    who = session.principal
    runtime = console_of(request).runtime
    now = runtime.clock()
    team_list = [t.strip() for t in teams_field.split(",") if t.strip()]
    try:
        created, held = change_control.create_user(
            runtime.db,
            name,
            role=role,
            teams=team_list,
            password=password,
            actor=who.name,
            two_person=load_config(runtime.db).two_person_rule,
            now=now,
        )
    except ValueError as exc:
        return back("/console/teams", err=str(exc))
    with runtime.db.write() as conn:
        audit.record(
            conn,
            actor=who.name,
            action="user.create",
            target=f"user:{created.name}",
            now=now,
            after={"role": created.role, "teams": sorted(created.teams)},
        )
    if held is not None:
        return back(
            "/console/teams",
            msg=f"User {created.name} created, disabled: a second admin must approve the admin role "
            f"(change #{held.change_id} on the Policy page).",
        )
    return back("/console/teams", msg=f"User {created.name} created.")


@router.post("/users/{user_id}")
def user_update(
    request: Request,
    session: AdminActing,
    user_id: PathId,
    role: Annotated[str, Form()],
    teams_field: Annotated[str, Form(alias="teams")] = "",
    disabled: Annotated[str, Form()] = "",
) -> Response:
    who = session.principal
    runtime = console_of(request).runtime
    now = runtime.clock()
    try:
        result = change_control.update_user(
            runtime.db,
            user_id,
            role=role,
            disabled=bool(disabled),
            now=now,
            teams=[t.strip() for t in teams_field.split(",") if t.strip()],
            actor=who.name,
            two_person=load_config(runtime.db).two_person_rule,
        )
    except (ValueError, LookupError) as exc:
        return back("/console/teams", err=str(exc))
    if isinstance(result, change_control.Held):
        return back(
            "/console/teams",
            msg=f"Granting the admin role waits for a second admin (change #{result.change_id} on the Policy page).",
        )
    before, after = result
    with runtime.db.write() as conn:
        audit.record(
            conn, actor=who.name, action="user.update", target=f"user-id:{user_id}", now=now, before=before, after=after
        )
    return back("/console/teams", msg="User updated.")


@router.post("/enroll-tokens")
def enroll_token(
    request: Request, session: AdminActing, team: Annotated[str, Form()], hours: Annotated[int, Form()] = 24
) -> Response:
    who = session.principal
    runtime = console_of(request).runtime
    now = runtime.clock()
    if not 1 <= hours <= tokens.MAX_ENROLL_TTL // timedelta(hours=1):
        return back("/console/teams", err=f"hours must be between 1 and {tokens.MAX_ENROLL_TTL // timedelta(hours=1)}")
    try:
        token = tokens.issue_enroll_token(
            runtime.db, team.strip(), ttl=timedelta(hours=hours), now=now, created_by=who.name
        )
    except ValueError as exc:
        return back("/console/teams", err=str(exc))
    with runtime.db.write() as conn:
        audit.record(
            conn,
            actor=who.name,
            action="enroll-token.issue",
            target=f"team:{team}",
            team=team,
            now=now,
            after={"hours": hours},
        )
    return page(request, "token.html", token=token, kind=f"Enrolment token for team {team} (valid {hours} h)")


# -- settings and retention ----------------------------------------------------------------------------------

SLA_MAX_MINUTES = 30 * 1440
OFFLINE_MAX_MINUTES = 7 * 1440


@router.get("/settings")
def settings_page(request: Request, who: FleetViewer) -> Response:
    runtime = console_of(request).runtime
    config = load_config(runtime.db)
    shown = replace(
        config,
        smtp_password="••••" if config.smtp_password else "",
        webhook_secret="••••" if config.webhook_secret else "",
    )
    return page(
        request,
        "settings.html",
        config=shown,
        rules=retention.rules_in_force(runtime.db),
        defaults=retention.DEFAULT_DAYS,
        last_purge=console_of(request).retention.last_result,
    )


@router.post("/settings")
def settings_save(
    request: Request,
    session: AdminActing,
    two_person_rule: Annotated[str, Form()] = "",
    smtp_host: Annotated[str, Form()] = "",
    smtp_port: Annotated[int, Form()] = 25,
    smtp_from: Annotated[str, Form()] = "deskwarden@localhost",
    smtp_starttls: Annotated[str, Form()] = "",
    smtp_user: Annotated[str, Form()] = "",
    smtp_password: Annotated[str, Form()] = "",
    webhook_secret: Annotated[str, Form()] = "",
    public_url: Annotated[str, Form()] = "",
    default_sla_minutes: Annotated[int, Form()] = 240,
    offline_alert_minutes: Annotated[int, Form()] = 10,
) -> Response:
    who = session.principal
    runtime = console_of(request).runtime
    try:
        public_url = forms.web_url(public_url, field="public URL")
        forms.bounded(smtp_port, field="SMTP port", low=1, high=65535)
        forms.bounded(default_sla_minutes, field="default SLA (minutes)", low=1, high=SLA_MAX_MINUTES)
        forms.bounded(offline_alert_minutes, field="offline after (minutes)", low=1, high=OFFLINE_MAX_MINUTES)
        forms.plain_text(smtp_host, field="SMTP host", max_length=253)
        forms.plain_text(smtp_from, field="SMTP sender", max_length=254)
        forms.plain_text(smtp_user, field="SMTP user", max_length=254)
    except ValueError as exc:
        return back("/console/settings", err=str(exc))
    old = load_config(runtime.db)
    new = ConsoleConfig(
        two_person_rule=bool(two_person_rule),
        smtp_host=smtp_host.strip(),
        smtp_port=smtp_port,
        smtp_from=smtp_from.strip(),
        smtp_starttls=bool(smtp_starttls),
        smtp_user=smtp_user.strip(),
        smtp_password=old.smtp_password if smtp_password in ("", "••••") else smtp_password,
        webhook_secret=old.webhook_secret if webhook_secret in ("", "••••") else webhook_secret,
        public_url=public_url.strip(),
        default_sla_minutes=max(1, default_sla_minutes),
        offline_alert_minutes=max(1, offline_alert_minutes),
        retention_every_minutes=old.retention_every_minutes,
    )
    now = runtime.clock()
    held = change_control.save_settings(runtime.db, old, new, actor=who.name, now=now)
    if held is not None:
        new = replace(new, two_person_rule=True)

    def visible(c: ConsoleConfig) -> dict[str, object]:
        return asdict(c) | {
            "smtp_password": "(set)" if c.smtp_password else "",
            "webhook_secret": "(set)" if c.webhook_secret else "",
        }

    with runtime.db.write() as conn:
        audit.record(
            conn,
            actor=who.name,
            action="settings.save",
            target="console-settings",
            now=now,
            before=visible(old),
            after=visible(new),
        )
    if held is not None:
        return back(
            "/console/settings",
            msg="Settings saved; turning the two-person rule off waits for a second admin "
            f"(change #{held.change_id} on the Policy page).",
        )
    return back("/console/settings", msg="Settings saved.")


@router.post("/retention")
def retention_save(
    request: Request,
    session: AdminActing,
    scope: Annotated[str, Form()],
    days: Annotated[int, Form()],
    kind: Annotated[str, Form()] = "",
    team: Annotated[str, Form()] = "",
) -> Response:
    who = session.principal
    runtime = console_of(request).runtime
    try:
        rule = retention.RetentionRule(
            scope=cast(retention.Scope, scope),
            days=days,
            kind=forms.event_kind(kind) or None,
            team=check_name(team, what="team name") if team.strip() else None,
        )
        retention.set_rule(runtime.db, rule, actor=who.name, now=runtime.clock())
    except ValueError as exc:
        return back("/console/settings", err=str(exc))
    return back("/console/settings", msg="Retention saved; propose the events retention to agents on the Policy page.")


@router.post("/retention/purge")
def retention_purge(request: Request, session: AdminActing) -> Response:
    who = session.principal
    runtime = console_of(request).runtime
    counts = retention.purge(runtime.db, now=runtime.clock(), actor=who.name)
    return back("/console/settings", msg=f"Purged {sum(counts.values())} rows.")


# -- audit log --------------------------------------------------------------------------------------------


@router.get("/audit")
def audit_page(request: Request, who: Viewer, before: CursorId = None) -> Response:
    runtime = console_of(request).runtime
    entries = audit.list_entries(runtime.db, teams=who.team_filter(), before_id=before)
    return page(
        request, "audit.html", entries=entries, dumps=lambda v: "" if v is None else json.dumps(v, sort_keys=True)
    )
