"""Change control over change control: under the two-person rule, turning the rule off and granting the admin role
(creating an admin, promoting a user, re-enabling a disabled admin) wait for a second admin. Each such change, held
or (with the rule off) applied at once, raises a `governance.*` alert and is audited. Releasing a quarantined
download to its desk (customer data leaving containment) waits for a second admin too, with a
`governance.release_held` alert; deleting one does not, and supersedes a release held for the same file.

Called from console request worker threads.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from central.auth import users
from central.auth.principal import Principal, parse_role
from central.signing import PolicySigner
from central.store import admin_changes, audit, quarantine
from central.store.admin_changes import (
    ADMIN_GRANT,
    ALERT_ADMIN_GRANTED,
    ALERT_RELEASE_HELD,
    ALERT_RULE_OFF,
    QUARANTINE_RELEASE,
    RULE_OFF,
    AdminChange,
    ChangeKind,
)
from central.store.console_config import ConsoleConfig, load_config, save_config
from central.store.engine import Database


class SecondAdminError(PermissionError):
    """The admin who asked for a held change cannot approve it."""


class ChangeStateError(ValueError):
    """The held change is unknown or was already decided."""


@dataclass(frozen=True)
class Held:
    """A change that waits for a second admin."""

    change_id: int


def _hold(
    conn: Connection,
    kind: ChangeKind,
    *,
    target: str,
    payload: dict[str, Any],
    alert: str,
    alert_data: dict[str, Any],
    actor: str,
    now: datetime,
    team: str | None = None,
) -> Held:
    """File a change for a second admin, raise its `governance.*` alert and audit the request, in `conn`'s
    transaction."""
    change_id = admin_changes.file(conn, kind, target=target, payload=payload, actor=actor, now=now)
    data: dict[str, Any] = {"by": actor, "change": change_id, "status": "pending"} | alert_data
    admin_changes.raise_alert(conn, alert, data=data, now=now)
    audit.record(
        conn,
        actor=actor,
        action="governance.request",
        target=f"change:{change_id}",
        team=team,
        now=now,
        after={"kind": kind} | payload,
    )
    return Held(change_id)


def save_settings(db: Database, old: ConsoleConfig, new: ConsoleConfig, *, actor: str, now: datetime) -> Held | None:
    """Save console settings; while the two-person rule is on, switching it off is held for a second admin (the
    rest is saved) and alerted."""
    if not (old.two_person_rule and not new.two_person_rule):
        save_config(db, new, now=now)
        return None
    save_config(db, replace(new, two_person_rule=True), now=now)
    with db.write() as conn:
        waiting = admin_changes.pending_in(conn, kind=RULE_OFF)
        if waiting:
            return Held(waiting[0].id)
        return _hold(
            conn,
            RULE_OFF,
            target="two-person-rule",
            payload={},
            alert=ALERT_RULE_OFF,
            alert_data={},
            actor=actor,
            now=now,
        )


def _grants_admin(before: dict[str, Any] | None, *, role: str, disabled: bool) -> bool:
    if role != "admin" or disabled:
        return False
    return before is None or before.get("role") != "admin" or bool(before.get("disabled"))


def _current(db: Database, user_id: int) -> dict[str, Any] | None:
    row = next((u for u in users.list_users(db) if u.id == user_id), None)
    if row is None:
        return None
    return {"name": row.name, "role": row.role, "teams": sorted(row.teams), "disabled": row.disabled}


def create_user(
    db: Database,
    name: str,
    *,
    role: str,
    teams: list[str],
    password: str,
    actor: str,
    two_person: bool,
    now: datetime,
) -> tuple[Principal, Held | None]:
    """Create a console user. An admin created under the two-person rule starts disabled and is enabled when a
    second admin approves; an admin created without the rule raises an alert."""
    created = users.create_user(db, name, role=role, teams=teams, password=password, now=now)
    if parse_role(role) != "admin" or created.user_id is None:
        return created, None
    if not two_person:
        with db.write() as conn:
            admin_changes.raise_alert(
                conn, ALERT_ADMIN_GRANTED, data={"user": created.name, "by": actor, "status": "applied"}, now=now
            )
        return created, None
    users.update_user(db, created.user_id, role="admin", teams=teams, disabled=True, now=now)
    return created, _hold_grant(db, created.user_id, created.name, teams=teams, actor=actor, now=now)


def update_user(
    db: Database,
    user_id: int,
    *,
    role: str,
    teams: list[str],
    disabled: bool,
    actor: str,
    two_person: bool,
    now: datetime,
) -> tuple[dict[str, Any], dict[str, Any]] | Held:
    """Change a user's role, teams and disabled flag; return (before, after) for the audit log, or `Held` when the
    change grants the admin role under the two-person rule (nothing is changed then)."""
    parse_role(role)
    before = _current(db, user_id)
    if before is None:
        raise LookupError("no such user")
    grants = _grants_admin(before, role=role, disabled=disabled)
    if grants and two_person:
        return _hold_grant(db, user_id, str(before["name"]), teams=teams, actor=actor, now=now)
    result = users.update_user(db, user_id, role=role, teams=teams, disabled=disabled, now=now)
    if grants:
        with db.write() as conn:
            admin_changes.raise_alert(
                conn, ALERT_ADMIN_GRANTED, data={"user": before["name"], "by": actor, "status": "applied"}, now=now
            )
    return result


def _hold_grant(db: Database, user_id: int, name: str, *, teams: list[str], actor: str, now: datetime) -> Held:
    payload: dict[str, Any] = {"user_id": user_id, "name": name, "teams": sorted(set(teams))}
    with db.write() as conn:
        return _hold(
            conn,
            ADMIN_GRANT,
            target=f"user:{name}",
            payload=payload,
            alert=ALERT_ADMIN_GRANTED,
            alert_data={"user": name},
            actor=actor,
            now=now,
        )


def release_quarantined(
    db: Database,
    signer: PolicySigner,
    device_id: str,
    quarantine_id: str,
    *,
    actor: str,
    teams: frozenset[str] | None,
    two_person: bool,
    now: datetime,
) -> dict[str, Any] | Held:
    """Release a quarantined download to its desk: at once (the signed command's details) without the two-person
    rule, else held for a second admin (one held release per file). Raises quarantine.QuarantineNotFound or
    quarantine.DecisionRefused as `quarantine.issue` does."""
    if not two_person:
        return quarantine.issue(
            db, signer, device_id, quarantine_id, action="release", actor=actor, teams=teams, now=now
        )
    target = f"{device_id}:{quarantine_id}"
    with db.write() as conn:
        held = quarantine.decidable(conn, device_id, quarantine_id, teams=teams)
        waiting = [c for c in admin_changes.pending_in(conn, kind=QUARANTINE_RELEASE) if c.target == target]
        if waiting:
            return Held(waiting[0].id)
        payload: dict[str, Any] = {
            "device_id": device_id,
            "quarantine_id": quarantine_id,
            "hostname": held.hostname,
            "team": held.team,
            "name": held.name,
            "findings": list(held.findings),
        }
        return _hold(
            conn,
            QUARANTINE_RELEASE,
            target=target,
            payload=payload,
            alert=ALERT_RELEASE_HELD,
            alert_data={"hostname": held.hostname},
            actor=actor,
            now=now,
            team=held.team,
        )


def pending(db: Database) -> list[AdminChange]:
    return admin_changes.pending(db)


def approve(
    db: Database,
    change_id: int,
    *,
    actor: str,
    now: datetime,
    signer: PolicySigner | None = None,
    teams: frozenset[str] | None = None,
) -> AdminChange:
    """Apply a held change; the admin who asked for it cannot. A held release needs the endpoint's `signer`, and
    the approver must see the device's team (`teams`, None for every team)."""
    with db.read() as conn:
        change = admin_changes.get(conn, change_id)
    if change is None or change.status != "pending":
        raise ChangeStateError(f"no pending change #{change_id}")
    if change.requested_by == actor:
        raise SecondAdminError("a second admin must approve this change: you asked for it")
    if change.kind == QUARANTINE_RELEASE:
        return _approve_release(db, change, actor=actor, now=now, signer=signer, teams=teams)
    with db.write() as conn:
        if not admin_changes.decide(conn, change_id, status="approved", actor=actor, now=now):
            raise ChangeStateError(f"change #{change_id} was decided meanwhile")
    try:
        if change.kind == RULE_OFF:
            save_config(db, replace(load_config(db), two_person_rule=False), now=now)
        elif change.kind == ADMIN_GRANT:
            granted = [str(t) for t in change.payload.get("teams") or []]
            users.update_user(db, int(change.payload["user_id"]), role="admin", teams=granted, disabled=False, now=now)
    except LookupError:
        with db.write() as conn:
            admin_changes.decide(conn, change_id, status="failed", actor=actor, now=now, was="approved")
        raise ChangeStateError(f"change #{change_id} no longer applies: its user is gone") from None
    with db.write() as conn:
        audit.record(
            conn,
            actor=actor,
            action="governance.approve",
            target=f"change:{change_id}",
            now=now,
            after={"kind": change.kind, "requested_by": change.requested_by} | change.payload,
        )
    return change


def _approve_release(
    db: Database,
    change: AdminChange,
    *,
    actor: str,
    now: datetime,
    signer: PolicySigner | None,
    teams: frozenset[str] | None,
) -> AdminChange:
    if signer is None:
        raise ChangeStateError("releasing a quarantined file needs the endpoint's signing key")
    device_id, quarantine_id = str(change.payload["device_id"]), str(change.payload["quarantine_id"])
    try:
        with db.write() as conn:
            if not admin_changes.decide(conn, change.id, status="approved", actor=actor, now=now):
                raise ChangeStateError(f"change #{change.id} was decided meanwhile")
            quarantine.issue_in(
                conn, signer, device_id, quarantine_id, action="release", actor=actor, teams=teams, now=now
            )
            audit.record(
                conn,
                actor=actor,
                action="governance.approve",
                target=f"change:{change.id}",
                team=change.team,
                now=now,
                after={"kind": change.kind, "requested_by": change.requested_by} | change.payload,
            )
    except quarantine.QuarantineNotFound:
        raise ChangeStateError(f"change #{change.id}: no such quarantined file in your teams") from None
    except quarantine.DecisionRefused as exc:
        with db.write() as conn:
            admin_changes.decide(conn, change.id, status="failed", actor=actor, now=now)
            audit.record(
                conn,
                actor=actor,
                action="governance.approve.failed",
                target=f"change:{change.id}",
                team=change.team,
                now=now,
                after={"kind": change.kind, "requested_by": change.requested_by, "error": str(exc)},
            )
        raise ChangeStateError(f"change #{change.id} no longer applies: {exc}") from None
    return change


def reject(db: Database, change_id: int, *, actor: str, now: datetime) -> AdminChange:
    with db.read() as conn:
        change = admin_changes.get(conn, change_id)
    if change is None:
        raise ChangeStateError(f"no pending change #{change_id}")
    with db.write() as conn:
        if not admin_changes.decide(conn, change_id, status="rejected", actor=actor, now=now):
            raise ChangeStateError(f"change #{change_id} is not pending")
        audit.record(
            conn,
            actor=actor,
            action="governance.reject",
            target=f"change:{change_id}",
            now=now,
            after={"kind": change.kind, "requested_by": change.requested_by},
        )
    return change
