"""Data retention: per scope (events, alerts, audit), event kind and team; a batched purge and its scheduler.

Defaults (when no rule is set): events 180 days, alerts 365 days (closed ones only), audit entries
730 days. The most specific rule wins (kind+team, then kind, then team, then the default). The
events retention in force for the whole fleet travels in policy as `controls.reporting.retention_days`.
`RetentionScheduler.tick` runs on the alerting thread; tests drive it with a fake clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, Connection, and_, delete, false, insert, not_, or_, select, true

from central.store import audit, tables
from central.store.console_tables import alert_outbox, alert_workflow, audit_log, retention_rules
from central.store.engine import Database

log = logging.getLogger(__name__)

Scope = Literal["events", "alerts", "audit"]
SCOPES: tuple[Scope, ...] = ("events", "alerts", "audit")
DEFAULT_DAYS: dict[Scope, int] = {"events": 180, "alerts": 365, "audit": 730}
BATCH = 1000


@dataclass(frozen=True)
class RetentionRule:
    scope: Scope
    days: int
    kind: str | None = None
    team: str | None = None
    id: int | None = None

    @property
    def specificity(self) -> int:
        return (2 if self.kind else 0) + (1 if self.team else 0)

    def covers(self, other: RetentionRule) -> bool:
        """True when every row `other` could match might also match this (more specific) rule."""
        return (self.kind is None or other.kind is None or self.kind == other.kind) and (
            self.team is None or other.team is None or self.team == other.team
        )


def list_rules(db: Database) -> list[RetentionRule]:
    r = retention_rules
    with db.read() as conn:
        rows = conn.execute(select(r).order_by(r.c.scope, r.c.kind, r.c.team)).all()
    return [
        RetentionRule(scope=row.scope, days=int(row.days), kind=row.kind, team=row.team, id=int(row.id))
        for row in rows
        if row.scope in SCOPES
    ]


def rules_in_force(db: Database) -> list[RetentionRule]:
    """The stored rules plus a default per scope that has no general rule."""
    stored = list_rules(db)
    general = {r.scope for r in stored if r.kind is None and r.team is None}
    return stored + [RetentionRule(scope=s, days=DEFAULT_DAYS[s]) for s in SCOPES if s not in general]


def fleet_event_days(db: Database) -> int:
    """What agents keep locally: the general events rule."""
    return next(r.days for r in rules_in_force(db) if r.scope == "events" and r.kind is None and r.team is None)


def set_rule(db: Database, rule: RetentionRule, *, actor: str, now: datetime) -> None:
    if rule.days < 1 or rule.days > 3650:
        raise ValueError("days must be between 1 and 3650")
    if rule.scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
    r = retention_rules
    with db.write() as conn:
        match = and_(
            r.c.scope == rule.scope,
            r.c.kind.is_(None) if rule.kind is None else r.c.kind == rule.kind,
            r.c.team.is_(None) if rule.team is None else r.c.team == rule.team,
        )
        old = conn.execute(select(r.c.days).where(match)).scalar()
        conn.execute(delete(r).where(match))
        conn.execute(insert(r).values(scope=rule.scope, kind=rule.kind, team=rule.team, days=rule.days))
        audit.record(
            conn,
            actor=actor,
            action="retention.set",
            target=f"{rule.scope}:{rule.kind or '*'}:{rule.team or '*'}",
            team=rule.team,
            before=None if old is None else {"days": int(old)},
            after={"days": rule.days},
            now=now,
        )


def delete_rule(db: Database, rule_id: int, *, actor: str, now: datetime) -> None:
    r = retention_rules
    with db.write() as conn:
        row = conn.execute(select(r).where(r.c.id == rule_id)).first()
        if row is None:
            return
        conn.execute(delete(r).where(r.c.id == rule_id))
        audit.record(
            conn,
            actor=actor,
            action="retention.delete",
            target=f"{row.scope}:{row.kind or '*'}:{row.team or '*'}",
            team=row.team,
            before={"days": int(row.days)},
            now=now,
        )


def _columns(scope: Scope) -> tuple[Any, ColumnElement[Any], Any, Any | None]:
    """(table, time column, id column, kind column) for a scope."""
    if scope == "events":
        e = tables.events
        return e, e.c.ts, e.c.pk, e.c.kind
    if scope == "alerts":
        a = tables.alerts
        return a, a.c.created_at, a.c.id, a.c.kind
    return audit_log, audit_log.c.ts, audit_log.c.id, None


def _matches(scope: Scope, rule: RetentionRule) -> ColumnElement[bool]:
    table, _ts, _id, kind_col = _columns(scope)
    parts: list[ColumnElement[bool]] = []
    if rule.kind is not None:
        parts.append(kind_col == rule.kind if kind_col is not None else false())
    if rule.team is not None:
        parts.append(table.c.team == rule.team)
    return and_(true(), *parts)


def purge(db: Database, *, now: datetime, actor: str = "retention", batch: int = BATCH) -> dict[str, int]:
    """Delete what is past retention, `batch` rows per transaction; audit-log the counts; return them."""
    rules = rules_in_force(db)
    counts: dict[str, int] = {}
    for scope in SCOPES:
        scoped = sorted((r for r in rules if r.scope == scope), key=lambda r: -r.specificity)
        for rule in scoped:
            table, ts, ident, _kind = _columns(scope)
            finer = [o for o in scoped if o.specificity > rule.specificity and o.covers(rule)]
            cond = and_(ts < now - timedelta(days=rule.days), _matches(scope, rule))
            if finer:
                cond = and_(cond, not_(or_(*[_matches(scope, o) for o in finer])))
            if scope == "alerts":
                cond = and_(cond, table.c.status == "closed")
            removed = _purge_batches(db, scope, table, ident, cond, batch=batch)
            if removed:
                key = f"{scope}:{rule.kind or '*'}:{rule.team or '*'}"
                counts[key] = counts.get(key, 0) + removed
    if counts:
        with db.write() as conn:
            audit.record(conn, actor=actor, action="retention.purge", target="store", after=dict(counts), now=now)
        log.info("retention purge removed %s", counts)
    return counts


def _purge_batches(db: Database, scope: Scope, table: Any, ident: Any, cond: ColumnElement[bool], *, batch: int) -> int:
    removed = 0
    while True:
        with db.write() as conn:
            ids = [int(i) for i in conn.execute(select(ident).where(cond).order_by(ident).limit(batch)).scalars()]
            if not ids:
                return removed
            if scope == "alerts":
                _drop_alert_children(conn, ids)
            conn.execute(delete(table).where(ident.in_(ids)))
        removed += len(ids)
        if len(ids) < batch:
            return removed


def _drop_alert_children(conn: Connection, ids: list[int]) -> None:
    conn.execute(delete(alert_workflow).where(alert_workflow.c.alert_id.in_(ids)))
    conn.execute(delete(alert_outbox).where(alert_outbox.c.alert_id.in_(ids)))


class RetentionScheduler:
    """Runs `purge` when due; `tick` is cheap when it is not."""

    def __init__(self, db: Database, *, clock: Callable[[], datetime], every: timedelta = timedelta(hours=1)) -> None:
        self._db = db
        self._clock = clock
        self._every = every
        self._next: datetime | None = None
        self.last_result: dict[str, int] | None = None

    def tick(self) -> dict[str, int] | None:
        now = self._clock()
        if self._next is not None and now < self._next:
            return None
        self._next = now + self._every
        self.last_result = purge(self._db, now=now)
        return self.last_result
