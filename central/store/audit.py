"""The audit log of console actions (who, what, when, before/after); written in the action's own transaction.

Called from request worker threads, the retention purge and CLI commands.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from central.store.clock import as_utc
from central.store.console_tables import audit_log
from central.store.engine import Database


def record(
    conn: Connection,
    *,
    actor: str,
    action: str,
    target: str,
    now: datetime,
    team: str | None = None,
    before: Any = None,
    after: Any = None,
) -> None:
    conn.execute(
        insert(audit_log).values(
            ts=now, actor=actor, action=action, target=target[:256], team=team, before=before, after=after
        )
    )


def list_entries(
    db: Database, *, teams: frozenset[str] | None = None, before_id: int | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    a = audit_log
    query = select(a).order_by(a.c.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(a.c.id < before_id)
    if teams is not None:
        query = query.where(a.c.team.in_(sorted(teams)))
    with db.read() as conn:
        rows = conn.execute(query).all()
    return [
        {
            "id": r.id,
            "ts": as_utc(r.ts),
            "actor": r.actor,
            "action": r.action,
            "target": r.target,
            "team": r.team,
            "before": r.before,
            "after": r.after,
        }
        for r in rows
    ]
