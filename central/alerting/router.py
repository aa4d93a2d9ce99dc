"""Routing: claims each new alert once (across processes), picks its rule, dedupes, queues deliveries, escalates.

Runs on the alerting thread (`AlertingService`) after ingest has committed the alerts; tests call it
directly with a fake clock. Several API processes run a router each on one PostgreSQL database.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from central.alerting import outbox, workflow
from central.alerting.bus import AlertBus, Notice
from central.alerting.channels import message_payload
from central.alerting.rules import Channel, RoutingRule, first_match, load_rules
from central.store import tables
from central.store.clock import as_utc
from central.store.console_config import ConsoleConfig, load_config
from central.store.console_tables import alert_workflow
from central.store.engine import Database

log = logging.getLogger(__name__)

BATCH = 200
REORDER_WINDOW = 1000
"""On PostgreSQL a lower alert id can commit after a higher one; look this far back for stragglers."""
DEDUPE_CANDIDATES = 50
"""Earlier alerts of the same rule, device and kind compared by subject; more in one window is a storm anyway."""

SUBJECT_FIELDS = ("sha256", "serial", "vendor_id", "product_id", "exe", "name", "token_id", "reason", "user")
"""Alert data fields that say what an alert is about (the file, the stick, the tool, the token, the reason,
the user). Alerts of one kind are duplicates only when these agree; counters, pids and times do not count."""


def alert_subject(data: Mapping[str, Any] | None) -> tuple[tuple[str, str], ...]:
    """What an alert is about, from its data: the `SUBJECT_FIELDS` it carries, as comparable text."""
    if not data:
        return ()
    return tuple((name, str(data[name])) for name in SUBJECT_FIELDS if data.get(name) not in (None, ""))


@dataclass(frozen=True)
class Routed:
    alert_id: int
    rule_id: int | None
    deduped_of: int | None


class AlertRouter:
    def __init__(self, db: Database, bus: AlertBus | None, *, clock: Callable[[], datetime]) -> None:
        self._db = db
        self._bus = bus
        self._clock = clock
        self._high_water = 0

    def route_pending(self, *, config: ConsoleConfig | None = None) -> list[Routed]:
        """Route every alert nobody has claimed yet; return what this process routed."""
        a, w = tables.alerts, alert_workflow
        low = max(0, self._high_water - REORDER_WINDOW)
        with self._db.read() as conn:
            ids = [
                int(i)
                for i in conn.execute(
                    select(a.c.id)
                    .select_from(a.outerjoin(w, w.c.alert_id == a.c.id))
                    .where(w.c.alert_id.is_(None), a.c.id > low)
                    .order_by(a.c.id)
                    .limit(BATCH)
                ).scalars()
            ]
            rules = load_rules(conn) if ids else []
        if not ids:
            return []
        cfg = config or load_config(self._db)
        done: list[Routed] = []
        for alert_id in ids:
            routed, notice = self._route_one(alert_id, rules, cfg)
            self._high_water = max(self._high_water, alert_id)
            if routed is None:
                continue
            done.append(routed)
            if notice is not None and self._bus is not None:
                self._bus.announce(notice)
        return done

    def _claim(self, conn: Connection, values: dict[str, Any]) -> bool:
        """Insert the workflow row unless another router did; True when this one inserted it.

        Decided by the row RETURNING gives back, never by `rowcount`: psycopg 3 through SQLAlchemy reports
        -1 for `INSERT ... ON CONFLICT DO NOTHING`, which read as "claimed" in every process."""
        make = sqlite_insert if self._db.is_sqlite else pg_insert
        stmt = (
            make(alert_workflow)
            .values(values)
            .on_conflict_do_nothing(index_elements=["alert_id"])
            .returning(alert_workflow.c.alert_id)
        )
        return conn.execute(stmt).first() is not None

    def _route_one(
        self, alert_id: int, rules: list[RoutingRule], cfg: ConsoleConfig
    ) -> tuple[Routed | None, Notice | None]:
        a, w = tables.alerts, alert_workflow
        now = self._clock()
        with self._db.write() as conn:
            row = conn.execute(select(a).where(a.c.id == alert_id)).first()
            if row is None:
                return None, None
            rule = first_match(rules, team=row.team, kind=row.kind, severity=row.severity)
            sla = timedelta(minutes=rule.spec.sla_minutes if rule else cfg.default_sla_minutes)
            deduped_of = self._duplicate_of(conn, rule, row, now) if rule else None
            claimed = self._claim(
                conn,
                {
                    "alert_id": alert_id,
                    "team": row.team,
                    "device_id": row.device_id,
                    "rule_id": rule.id if rule else None,
                    "routed_at": now,
                    "deduped_of": deduped_of,
                    "sla_due_at": as_utc(row.created_at) + sla,
                    "escalation_level": 0,
                    "incident": False,
                },
            )
            if not claimed:
                return None, None
            if deduped_of is not None:
                conn.execute(update(a).where(a.c.id == alert_id).values(status="closed", updated_at=now))
                conn.execute(
                    update(w)
                    .where(w.c.alert_id == alert_id)
                    .values(closed_at=now, closed_by="dedupe", note=f"duplicate of alert #{deduped_of}")
                )
            alert = workflow.summary(conn, alert_id)
            if alert is None:
                raise LookupError(f"alert {alert_id} vanished while routing")
            if rule is not None and deduped_of is None:
                self._enqueue(conn, alert, rule.spec.channels, cfg, now=now, escalated=False)
        routed = Routed(alert_id=alert_id, rule_id=rule.id if rule else None, deduped_of=deduped_of)
        return routed, None if deduped_of is not None else Notice(event="alert", alert=alert)

    @staticmethod
    def _duplicate_of(conn: Connection, rule: RoutingRule, alert: Any, now: datetime) -> int | None:
        """The alert this one repeats: same rule, device, kind and subject, routed within the dedupe window."""
        if rule.spec.dedupe_seconds <= 0 or alert.device_id is None:
            return None
        a, w = tables.alerts, alert_workflow
        since = now - timedelta(seconds=rule.spec.dedupe_seconds)
        candidates = conn.execute(
            select(w.c.alert_id, a.c.data)
            .select_from(w.join(a, a.c.id == w.c.alert_id))
            .where(
                w.c.rule_id == rule.id,
                w.c.device_id == alert.device_id,
                a.c.kind == alert.kind,
                w.c.deduped_of.is_(None),
                w.c.routed_at >= since,
                w.c.alert_id != alert.id,
            )
            .order_by(w.c.routed_at.desc())
            .limit(DEDUPE_CANDIDATES)
        ).all()
        subject = alert_subject(alert.data)
        for candidate in candidates:
            if alert_subject(candidate.data) == subject:
                return int(candidate.alert_id)
        return None

    @staticmethod
    def _enqueue(
        conn: Connection,
        alert: dict[str, Any],
        channels: list[Channel],
        cfg: ConsoleConfig,
        *,
        now: datetime,
        escalated: bool,
    ) -> None:
        payload = message_payload(alert, base_url=cfg.public_url, escalated=escalated)
        for channel in channels:
            if channel.type == "console":
                continue  # the live stream and the alert list are the console channel
            target: dict[str, Any] = {"url": str(channel.url)} if channel.type == "webhook" else {"to": channel.to}
            outbox.enqueue(
                conn, alert_id=int(alert["id"]), channel=channel.type, target=target, payload=payload, now=now
            )

    def escalate_due(self, *, config: ConsoleConfig | None = None) -> list[int]:
        """Alerts still open (unacknowledged) past their SLA go to the rule's escalation channels, once."""
        a, w = tables.alerts, alert_workflow
        now = self._clock()
        with self._db.read() as conn:
            due = [
                int(i)
                for i in conn.execute(
                    select(w.c.alert_id)
                    .select_from(w.join(a, a.c.id == w.c.alert_id))
                    .where(a.c.status == "open", w.c.escalation_level == 0, w.c.sla_due_at <= now)
                    .order_by(w.c.alert_id)
                    .limit(BATCH)
                ).scalars()
            ]
            rules = {r.id: r for r in load_rules(conn)} if due else {}
        if not due:
            return []
        cfg = config or load_config(self._db)
        escalated: list[int] = []
        for alert_id in due:
            with self._db.write() as conn:
                changed = conn.execute(
                    update(w)
                    .where(w.c.alert_id == alert_id, w.c.escalation_level == 0)
                    .values(escalation_level=1, escalated_at=now)
                ).rowcount
                if not changed:
                    continue  # another process escalated it
                alert = workflow.summary(conn, alert_id)
                if alert is None:
                    continue
                rule = rules.get(alert["rule_id"]) if alert["rule_id"] is not None else None
                if rule is not None:
                    self._enqueue(conn, alert, rule.spec.escalate_to, cfg, now=now, escalated=True)
            escalated.append(alert_id)
            log.info("alert %s escalated past its SLA", alert_id)
            if self._bus is not None:
                self._bus.announce(Notice(event="update", alert=alert))
        return escalated
