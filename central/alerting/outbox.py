"""The delivery outbox: webhook and e-mail messages written with the routing decision, sent and retried later.

`enqueue` runs inside the router's transaction; `deliver_due` runs on the alerting thread. Rows are
claimed with a lease (and SKIP LOCKED on PostgreSQL), so several API processes never send one twice.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, insert, or_, select, update

from central.alerting.channels import DeliveryError, Sender
from central.store import audit, tables
from central.store.clock import as_utc, as_utc_or_none
from central.store.console_config import ConsoleConfig
from central.store.console_tables import alert_outbox
from central.store.engine import Database

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
LEASE = timedelta(minutes=2)
BASE_BACKOFF = timedelta(seconds=5)
MAX_BACKOFF = timedelta(hours=1)


def backoff(attempts: int) -> timedelta:
    """5 s, 10 s, 20 s ... capped at an hour."""
    delay: timedelta = BASE_BACKOFF * (2 ** max(0, attempts - 1))
    return min(delay, MAX_BACKOFF)


def enqueue(
    conn: Connection, *, alert_id: int, channel: str, target: dict[str, Any], payload: dict[str, Any], now: datetime
) -> None:
    conn.execute(
        insert(alert_outbox).values(
            alert_id=alert_id,
            channel=channel,
            target=target,
            payload=payload,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )


def deliver_due(db: Database, sender: Sender, config: ConsoleConfig, *, now: datetime, limit: int = 50) -> int:
    """Send what is due; return how many were delivered."""
    o = alert_outbox
    with db.write() as conn:
        query = (
            select(o.c.id, o.c.channel, o.c.target, o.c.payload, o.c.attempts)
            .where(o.c.delivered_at.is_(None), o.c.failed_at.is_(None), o.c.next_attempt_at <= now)
            .order_by(o.c.next_attempt_at)
            .limit(limit)
        )
        if not db.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        due = conn.execute(query).all()
        if due:
            conn.execute(
                update(o)
                .where(o.c.id.in_([r.id for r in due]))
                .values(attempts=o.c.attempts + 1, next_attempt_at=now + LEASE)
            )
    delivered = 0
    for row in due:
        attempts = int(row.attempts) + 1
        try:
            sender(row.channel, dict(row.target), dict(row.payload), config)
        except DeliveryError as exc:
            failed = attempts >= MAX_ATTEMPTS
            log.warning("alert delivery %s via %s failed (attempt %s): %s", row.id, row.channel, attempts, exc)
            with db.write() as conn:
                conn.execute(
                    update(o)
                    .where(o.c.id == row.id)
                    .values(
                        last_error=str(exc)[:500],
                        next_attempt_at=now + backoff(attempts),
                        failed_at=now if failed else None,
                    )
                )
            continue
        delivered += 1
        with db.write() as conn:
            conn.execute(update(o).where(o.c.id == row.id).values(delivered_at=now, last_error=None))
    return delivered


def pending(db: Database, *, alert_id: int | None = None) -> list[dict[str, Any]]:
    o = alert_outbox
    query = select(o).order_by(o.c.id)
    if alert_id is not None:
        query = query.where(o.c.alert_id == alert_id)
    with db.read() as conn:
        return [dict(r._mapping) for r in conn.execute(query).all()]


def undelivered_count(db: Database) -> int:
    o = alert_outbox
    with db.read() as conn:
        rows = conn.execute(select(o.c.id).where(o.c.delivered_at.is_(None), or_(o.c.failed_at.is_(None)))).all()
    return len(rows)


def delivery_state(row: Any) -> str:
    """`delivered`, `failed` (gave up after MAX_ATTEMPTS), `retrying` (failed before, tried again later) or `queued`."""
    if row.delivered_at is not None:
        return "delivered"
    if row.failed_at is not None:
        return "failed"
    return "retrying" if row.last_error else "queued"


def _where(target: dict[str, Any], channel: str) -> str:
    """Where a message goes, as the console may show it: a webhook's host only (its path is often the secret),
    an e-mail's addresses."""
    if channel == "webhook":
        return urlsplit(str(target.get("url", ""))).hostname or "(webhook)"
    to = target.get("to") or []
    return ", ".join(str(address) for address in to) if isinstance(to, list) else str(to)


def list_deliveries(
    db: Database,
    *,
    teams: frozenset[str] | None,
    state: str | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Webhook and e-mail messages, newest first, with their retry state, for alerts of `teams` (None: all).
    `state` 'undelivered' is anything not delivered yet (failed, retrying or queued)."""
    o, a, d = alert_outbox, tables.alerts, tables.devices
    query = (
        select(o, a.c.team, a.c.kind, a.c.severity, d.c.hostname)
        .select_from(o.join(a, a.c.id == o.c.alert_id).outerjoin(d, d.c.device_id == a.c.device_id))
        .order_by(o.c.id.desc())
        .limit(limit)
    )
    if teams is not None:
        query = query.where(a.c.team.in_(sorted(teams)))
    if before_id is not None:
        query = query.where(o.c.id < before_id)
    if state == "failed":
        query = query.where(o.c.failed_at.is_not(None), o.c.delivered_at.is_(None))
    elif state == "retrying":
        query = query.where(o.c.failed_at.is_(None), o.c.delivered_at.is_(None), o.c.last_error.is_not(None))
    elif state == "undelivered":
        query = query.where(o.c.delivered_at.is_(None))
    elif state == "delivered":
        query = query.where(o.c.delivered_at.is_not(None))
    with db.read() as conn:
        rows = conn.execute(query).all()
    return [
        {
            "id": int(r.id),
            "alert_id": int(r.alert_id),
            "team": r.team,
            "kind": r.kind,
            "severity": r.severity,
            "hostname": r.hostname,
            "channel": r.channel,
            "where": _where(dict(r.target), r.channel),
            "state": delivery_state(r),
            "attempts": int(r.attempts),
            "max_attempts": MAX_ATTEMPTS,
            "last_error": r.last_error,
            "next_attempt_at": as_utc(r.next_attempt_at),
            "delivered_at": as_utc_or_none(r.delivered_at),
            "failed_at": as_utc_or_none(r.failed_at),
            "created_at": as_utc(r.created_at),
        }
        for r in rows
    ]


def retry_now(db: Database, delivery_id: int, *, actor: str, now: datetime) -> dict[str, Any] | None:
    """Send an undelivered message again at the next pass, with a fresh set of attempts; audited. None when there
    is no such message or it was delivered already."""
    o, a = alert_outbox, tables.alerts
    with db.write() as conn:
        row = conn.execute(
            select(o.c.id, o.c.alert_id, o.c.attempts, o.c.failed_at, o.c.delivered_at, o.c.last_error, a.c.team)
            .select_from(o.join(a, a.c.id == o.c.alert_id))
            .where(o.c.id == delivery_id)
        ).first()
        if row is None or row.delivered_at is not None:
            return None
        conn.execute(update(o).where(o.c.id == delivery_id).values(attempts=0, failed_at=None, next_attempt_at=now))
        before = {"state": delivery_state(row), "attempts": int(row.attempts), "last_error": row.last_error}
        audit.record(
            conn,
            actor=actor,
            action="delivery.retry",
            target=f"delivery:{delivery_id}",
            team=row.team,
            before=before,
            after={"state": "queued", "attempts": 0},
            now=now,
        )
    return {"id": delivery_id, "alert_id": int(row.alert_id), "team": row.team}
