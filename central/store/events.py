"""Reading stored events back for the read API (and later the console).

Called from request worker threads.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from central.store import tables
from central.store.clock import as_utc
from central.store.engine import Database

MAX_PAGE = 1000


def list_events(
    db: Database,
    *,
    device_id: str | None = None,
    kind: str | None = None,
    team: str | None = None,
    since_seq: int | None = None,
    after_pk: int | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Events in arrival order (by `pk`), or in seq order when one device is asked for.

    `since_seq` (with `device_id`) returns seqs greater than it; `after_pk` pages through everything.
    """
    e = tables.events
    query = select(e).limit(max(1, min(limit, MAX_PAGE)))
    if device_id is not None:
        query = query.where(e.c.device_id == device_id).order_by(e.c.seq)
        if since_seq is not None:
            query = query.where(e.c.seq > since_seq)
    else:
        query = query.order_by(e.c.pk)
    if after_pk is not None:
        query = query.where(e.c.pk > after_pk)
    if kind is not None:
        query = query.where(e.c.kind == kind)
    if team is not None:
        query = query.where(e.c.team == team)
    with db.read() as conn:
        rows = conn.execute(query).all()
    return [
        {
            "pk": row.pk,
            "id": row.id,
            "device_id": row.device_id,
            "seq": row.seq,
            "ts": as_utc(row.ts).isoformat(),
            "kind": row.kind,
            "severity": row.severity,
            "user": row.user,
            "action": row.action,
            "rule": None if row.rule_id is None else {"id": row.rule_id, "policy_version": row.policy_version},
            "data": row.data,
            "mac": row.mac,
            "team": row.team,
            "received_at": as_utc(row.received_at).isoformat(),
        }
        for row in rows
    ]
