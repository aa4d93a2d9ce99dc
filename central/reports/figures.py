"""The six governance figures for one team (or the whole fleet) and one period [start, end).

Definitions (also in docs/console.md, "Reports"):
- access exceptions: events of class violation or containment (policy_client/event_vocabulary.py) that were not
  allowed, grouped by their control (usb, download, clipboard, capture);
- acknowledgement completion: active devices with a `policy.acknowledged` event in the `reack_days` before `end`
  (from the global policy in force at `end`; the schema default, 90, before any was published);
- security incidents: alerts created in the period and marked as incidents (plus tamper alerts, counted apart);
- closure within SLA: alerts created in the period and closed by their SLA deadline, over all routed alerts;
- masking compliance: `clipboard.sensitive` and `download.*` events whose action was masked, cleared,
  quarantined, blocked or deleted, over all of them;
- privilege review ageing: age in days, at `end`, of each active USB exception and allow-list entry since it
  was last reviewed (exceptions: `reviewed_at`; allow entries: the first policy version that carried them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, select

from central.store import policies, tables
from central.store.clock import as_utc
from central.store.console_tables import alert_workflow
from central.store.engine import Database
from policy_client.event_vocabulary import VOCABULARY, EventClass
from policy_client.schema import AcknowledgementControl, EventKind, PolicyDocument

VIOLATION_KINDS: Mapping[str, str] = {
    f.kind.value: f.control
    for f in VOCABULARY.values()
    if f.event_class in (EventClass.violation, EventClass.containment)
}
"""The kinds counted as access exceptions (a policy-decided observation or its enforcement), by their control."""
MASKING_KINDS = tuple(sorted(kind for kind, control in VIOLATION_KINDS.items() if control in ("clipboard", "download")))
"""The data-handling kinds whose action says whether customer data was contained."""
CONTAINED_ACTIONS = ("masked", "cleared", "quarantined", "blocked", "deleted")
AGE_BUCKETS = ((30, "0-30 days"), (90, "31-90 days"), (10**6, "over 90 days"))


@dataclass(frozen=True)
class Ratio:
    numerator: int
    denominator: int

    @property
    def percent(self) -> float | None:
        return None if self.denominator == 0 else round(100.0 * self.numerator / self.denominator, 1)


@dataclass(frozen=True)
class GovernanceReport:
    team: str | None
    start: datetime
    end: datetime
    violations_by_control: dict[str, int]
    acknowledgement: Ratio
    incidents: int
    tamper_alerts: int
    closure_within_sla: Ratio
    masking: Ratio
    review_ages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def review_buckets(self) -> dict[str, int]:
        out = {label: 0 for _limit, label in AGE_BUCKETS}
        for item in self.review_ages:
            out[next(label for limit, label in AGE_BUCKETS if item["age_days"] <= limit)] += 1
        return out


def compute(db: Database, *, start: datetime, end: datetime, team: str | None = None) -> GovernanceReport:
    e, a, w, d = tables.events, tables.alerts, alert_workflow, tables.devices
    in_period_events = (
        and_(e.c.ts >= start, e.c.ts < end) if team is None else and_(e.c.ts >= start, e.c.ts < end, e.c.team == team)
    )
    with db.read() as conn:
        violations: dict[str, int] = {c: 0 for c in sorted(set(VIOLATION_KINDS.values()))}
        for kind, count in conn.execute(
            select(e.c.kind, func.count())
            .where(in_period_events, e.c.kind.in_(list(VIOLATION_KINDS)), e.c.action != "allowed")
            .group_by(e.c.kind)
        ).all():
            violations[VIOLATION_KINDS[kind]] += int(count)

        active = select(d.c.device_id).where(d.c.enrolled_at < end, d.c.revoked_at.is_(None))
        if team is not None:
            active = active.where(d.c.team == team)
        active_ids = {str(i) for i in conn.execute(active).scalars()}
        p = tables.policies
        versions = conn.execute(
            select(p.c.version, p.c.payload, p.c.created_at)
            .where(p.c.scope == policies.GLOBAL_SCOPE, p.c.created_at < end)
            .order_by(p.c.version)
        ).all()
        ack_window = timedelta(days=_reack_days(versions))
        acked = {
            str(i)
            for i in conn.execute(
                select(e.c.device_id)
                .where(e.c.kind == EventKind.policy_acknowledged.value, e.c.ts < end, e.c.ts >= end - ack_window)
                .distinct()
            ).scalars()
        }
        acknowledgement = Ratio(len(active_ids & acked), len(active_ids))

        alert_period = and_(a.c.created_at >= start, a.c.created_at < end)
        if team is not None:
            alert_period = and_(alert_period, a.c.team == team)
        incidents = int(
            conn.execute(
                select(func.count()).select_from(a.join(w, w.c.alert_id == a.c.id)).where(alert_period, w.c.incident)
            ).scalar_one()
        )
        tamper = int(conn.execute(select(func.count()).where(alert_period, a.c.kind.like("tamper.%"))).scalar_one())
        routed = conn.execute(
            select(w.c.closed_at, w.c.sla_due_at)
            .select_from(a.join(w, w.c.alert_id == a.c.id))
            .where(alert_period, w.c.deduped_of.is_(None))
        ).all()
        in_sla = sum(1 for r in routed if r.closed_at is not None and as_utc(r.closed_at) <= as_utc(r.sla_due_at))
        closure = Ratio(in_sla, len(routed))

        masking_rows = conn.execute(
            select(e.c.action, func.count()).where(in_period_events, e.c.kind.in_(MASKING_KINDS)).group_by(e.c.action)
        ).all()
        contained = sum(int(c) for act, c in masking_rows if act in CONTAINED_ACTIONS)
        masking = Ratio(contained, sum(int(c) for _act, c in masking_rows))

        team_devices = active_ids if team is not None else None
    ages = _review_ages(versions, end=end, team_devices=team_devices)
    return GovernanceReport(
        team=team,
        start=start,
        end=end,
        violations_by_control=violations,
        acknowledgement=acknowledgement,
        incidents=incidents,
        tamper_alerts=tamper,
        closure_within_sla=closure,
        masking=masking,
        review_ages=ages,
    )


def _reack_days(versions: Sequence[Any]) -> int:
    """The acknowledgement window agents applied at the period's end: `reack_days` of the newest of `versions`."""
    if not versions:
        return AcknowledgementControl().reack_days
    return PolicyDocument.model_validate_json(bytes(versions[-1].payload)).controls.acknowledgement.reack_days


def _review_ages(versions: Sequence[Any], *, end: datetime, team_devices: set[str] | None) -> list[dict[str, Any]]:
    if not versions:
        return []
    first_seen: dict[tuple[str, str, str | None], datetime] = {}
    for row in versions:
        doc = PolicyDocument.model_validate_json(bytes(row.payload))
        for entry in doc.controls.usb.allow:
            first_seen.setdefault(
                (entry.vendor_id.lower(), entry.product_id.lower(), entry.serial), as_utc(row.created_at)
            )
    current = PolicyDocument.model_validate_json(bytes(versions[-1].payload))
    out: list[dict[str, Any]] = []
    for entry in current.controls.usb.allow:
        since = first_seen[(entry.vendor_id.lower(), entry.product_id.lower(), entry.serial)]
        out.append(
            {
                "type": "allow",
                "id": f"{entry.vendor_id}:{entry.product_id}",
                "device_id": None,
                "age_days": (end - since).days,
            }
        )
    for exc in current.controls.usb.exceptions:
        if as_utc(exc.expires_at) <= end:
            continue
        if team_devices is not None and exc.device_id is not None and exc.device_id not in team_devices:
            continue
        since = as_utc(exc.reviewed_at) if exc.reviewed_at else as_utc(versions[-1].created_at)
        out.append(
            {
                "type": "exception",
                "id": f"{exc.vendor_id}:{exc.product_id}",
                "device_id": exc.device_id,
                "age_days": max(0, (end - since).days),
            }
        )
    return out


def csv_rows(report: GovernanceReport) -> list[list[str]]:
    """metric, control/bucket, value, numerator, denominator (one header row first)."""
    period = [report.team or "(all teams)", report.start.date().isoformat(), report.end.date().isoformat()]
    rows = [["team", "period_start", "period_end", "metric", "item", "value", "numerator", "denominator"]]
    for control, count in report.violations_by_control.items():
        rows.append([*period, "access_exceptions", control, str(count), "", ""])

    def ratio(metric: str, r: Ratio) -> list[str]:
        return [*period, metric, "", "" if r.percent is None else f"{r.percent}", str(r.numerator), str(r.denominator)]

    rows.append(ratio("acknowledgement_completion_percent", report.acknowledgement))
    rows.append([*period, "security_incidents", "", str(report.incidents), "", ""])
    rows.append([*period, "tamper_alerts", "", str(report.tamper_alerts), "", ""])
    rows.append(ratio("alert_closure_within_sla_percent", report.closure_within_sla))
    rows.append(ratio("masking_compliance_percent", report.masking))
    for bucket, count in report.review_buckets.items():
        rows.append([*period, "privilege_review_age", bucket, str(count), "", ""])
    return rows
