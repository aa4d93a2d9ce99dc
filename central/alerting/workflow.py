"""Alerts as the console sees them (joined with device, routing state and playbook) and the actions on them.

Called from request worker threads and the alerting thread. Every action is audit-logged in its own transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, String, cast, func, or_, select, update

from central.auth.principal import Principal
from central.store import audit, tables
from central.store.clock import as_utc, as_utc_or_none
from central.store.console_tables import alert_workflow, routing_rules
from central.store.engine import Database

OPEN_STATES = ("open", "acknowledged")


class AlertNotFound(LookupError):
    """No such alert, or not one of the principal's teams (the two are answered alike)."""


class AlertStateError(ValueError):
    """The action does not fit the alert's state (closing a closed alert...)."""


def _query() -> Select[Any]:
    a, d, w, r = tables.alerts, tables.devices, alert_workflow, routing_rules
    return select(
        a,
        d.c.hostname,
        d.c.user.label("device_user"),
        w.c.rule_id,
        w.c.deduped_of,
        w.c.sla_due_at,
        w.c.escalation_level,
        w.c.acknowledged_at,
        w.c.acknowledged_by,
        w.c.closed_at,
        w.c.closed_by,
        w.c.note,
        w.c.incident,
        r.c.name.label("rule_name"),
        r.c.playbook,
    ).select_from(
        a.outerjoin(d, d.c.device_id == a.c.device_id)
        .outerjoin(w, w.c.alert_id == a.c.id)
        .outerjoin(r, r.c.id == w.c.rule_id)
    )


def _summary(row: Any) -> dict[str, Any]:
    created = as_utc(row.created_at)
    due = as_utc_or_none(row.sla_due_at)
    return {
        "id": int(row.id),
        "team": row.team,
        "device_id": row.device_id,
        "hostname": row.hostname,
        "user": row.device_user,
        "kind": row.kind,
        "severity": row.severity,
        "status": row.status,
        "created_at": created.isoformat(),
        "updated_at": as_utc(row.updated_at).isoformat(),
        "event_seq": row.event_seq,
        "data": row.data,
        "rule_id": row.rule_id,
        "rule_name": row.rule_name,
        "playbook": row.playbook or {"steps": [], "link": ""},
        "deduped_of": row.deduped_of,
        "sla_due_at": due.isoformat() if due else None,
        "escalation_level": row.escalation_level or 0,
        "acknowledged_by": row.acknowledged_by,
        "acknowledged_at": _iso(row.acknowledged_at),
        "closed_by": row.closed_by,
        "closed_at": _iso(row.closed_at),
        "note": row.note,
        "incident": bool(row.incident),
        "url": f"/console/alerts/{int(row.id)}",
    }


def _iso(value: datetime | None) -> str | None:
    v = as_utc_or_none(value)
    return v.isoformat() if v else None


def summary(conn: Connection, alert_id: int) -> dict[str, Any] | None:
    row = conn.execute(_query().where(tables.alerts.c.id == alert_id)).first()
    return None if row is None else _summary(row)


@dataclass(frozen=True)
class AlertSearch:
    """What the alert list is narrowed to; every field optional. Text matches case-insensitively as a substring."""

    status: str | None = None
    """'active' (open or acknowledged), 'open', 'acknowledged', 'closed'; None for all."""
    team: str | None = None
    kind: str | None = None
    """A kind or the start of one: `tamper` finds `tamper.seq_reuse` and `tamper.policy_unknown`."""
    device: str | None = None
    """Part of the device's hostname (or its id)."""
    device_id: str | None = None
    """Exactly this device."""
    user: str | None = None
    text: str | None = None
    """Anywhere in kind, hostname, user, closing note, rule name or the alert's details."""

    def applied(self, query: Select[Any]) -> Select[Any]:
        a, d, w, r = tables.alerts, tables.devices, alert_workflow, routing_rules
        if self.team:
            query = query.where(a.c.team == self.team)
        if self.status == "active":
            query = query.where(a.c.status.in_(OPEN_STATES))
        elif self.status:
            query = query.where(a.c.status == self.status)
        if self.kind:
            query = query.where(or_(a.c.kind == self.kind, a.c.kind.startswith(self.kind + ".", autoescape=True)))
        if self.device:
            query = query.where(or_(_has(d.c.hostname, self.device), _has(a.c.device_id, self.device)))
        if self.device_id:
            query = query.where(a.c.device_id == self.device_id)
        if self.user:
            query = query.where(_has(d.c.user, self.user))
        if self.text:
            fields = (a.c.kind, d.c.hostname, d.c.user, w.c.note, r.c.name, cast(a.c.data, String))
            query = query.where(or_(*(_has(field, self.text) for field in fields)))
        return query


def _has(column: Any, value: str) -> Any:
    return func.lower(column).contains(value.lower(), autoescape=True)


def list_alerts(
    db: Database,
    viewer: Principal,
    *,
    status: str | None = None,
    team: str | None = None,
    after_id: int = 0,
    before_id: int | None = None,
    search: AlertSearch | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """Newest first; `status` 'active' means open or acknowledged. Keyset paging: `before_id` gives the page
    after the one that ended with that id, `after_id` only alerts newer than it (the stream's replay)."""
    a = tables.alerts
    query = _query().where(a.c.id > after_id).order_by(a.c.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(a.c.id < before_id)
    scope = viewer.team_filter()
    if scope is not None:
        query = query.where(a.c.team.in_(sorted(scope)))
    query = (search or AlertSearch()).applied(query)
    query = AlertSearch(status=status, team=team).applied(query)
    with db.read() as conn:
        return [_summary(r) for r in conn.execute(query).all()]


def get_alert(db: Database, viewer: Principal, alert_id: int) -> dict[str, Any]:
    with db.read() as conn:
        found = summary(conn, alert_id)
    if found is None or not viewer.sees(found["team"]):
        raise AlertNotFound(f"no alert {alert_id}")
    return found


def event_trail(db: Database, alert: dict[str, Any], *, around: int = 10) -> list[dict[str, Any]]:
    """The device's events around the alert's seq (or its latest events when the alert has none)."""
    e = tables.events
    if not alert.get("device_id"):
        return []
    query = select(e).where(e.c.device_id == alert["device_id"])
    seq = alert.get("event_seq")
    if seq:
        query = query.where(e.c.seq.between(int(seq) - around, int(seq) + around)).order_by(e.c.seq)
    else:
        query = query.order_by(e.c.seq.desc()).limit(around)
    with db.read() as conn:
        rows = conn.execute(query).all()
    out = [
        {
            "seq": r.seq,
            "ts": as_utc(r.ts),
            "kind": r.kind,
            "severity": r.severity,
            "action": r.action,
            "user": r.user,
            "data": r.data,
            "this": seq is not None and r.seq == seq,
        }
        for r in rows
    ]
    return sorted(out, key=lambda ev: int(ev["seq"]))


def _act(
    db: Database,
    viewer: Principal,
    alert_id: int,
    *,
    action: str,
    now: datetime,
    note: str | None = None,
) -> dict[str, Any]:
    if not viewer.can_act:
        raise PermissionError("auditors cannot change alerts")
    a, w = tables.alerts, alert_workflow
    with db.write() as conn:
        before = summary(conn, alert_id)
        if before is None or not viewer.sees(before["team"]):
            raise AlertNotFound(f"no alert {alert_id}")
        if before["rule_id"] is None and before["sla_due_at"] is None:
            raise AlertStateError("this alert has not been routed yet; try again in a moment")
        status = before["status"]
        alert_values: dict[str, Any] = {"updated_at": now}
        flow: dict[str, Any] = {}
        if action == "acknowledge":
            if status != "open":
                raise AlertStateError(f"only an open alert can be acknowledged (it is {status})")
            alert_values["status"] = "acknowledged"
            flow = {"acknowledged_at": now, "acknowledged_by": viewer.name}
        elif action == "close":
            if status == "closed":
                raise AlertStateError("the alert is already closed")
            if not note or not note.strip():
                raise AlertStateError("closing an alert needs a note")
            alert_values["status"] = "closed"
            flow = {"closed_at": now, "closed_by": viewer.name, "note": note.strip()[:4000]}
            if before["acknowledged_at"] is None:
                flow |= {"acknowledged_at": now, "acknowledged_by": viewer.name}
        elif action == "incident":
            flow = {"incident": not before["incident"]}
        else:
            raise ValueError(f"unknown action {action}")
        conn.execute(update(a).where(a.c.id == alert_id).values(alert_values))
        conn.execute(update(w).where(w.c.alert_id == alert_id).values(flow))
        after = summary(conn, alert_id)
        if after is None:
            raise AlertNotFound(f"no alert {alert_id}")
        keys = ("status", "acknowledged_by", "closed_by", "note", "incident")
        audit.record(
            conn,
            actor=viewer.name,
            action=f"alert.{action}",
            target=f"alert:{alert_id}",
            team=before["team"],
            before={k: before[k] for k in keys},
            after={k: after[k] for k in keys},
            now=now,
        )
    return after


def acknowledge(db: Database, viewer: Principal, alert_id: int, *, now: datetime) -> dict[str, Any]:
    return _act(db, viewer, alert_id, action="acknowledge", now=now)


def close(db: Database, viewer: Principal, alert_id: int, *, note: str, now: datetime) -> dict[str, Any]:
    return _act(db, viewer, alert_id, action="close", note=note, now=now)


def toggle_incident(db: Database, viewer: Principal, alert_id: int, *, now: datetime) -> dict[str, Any]:
    return _act(db, viewer, alert_id, action="incident", now=now)
