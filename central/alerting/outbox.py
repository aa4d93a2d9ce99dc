"""The delivery outbox: webhook and e-mail messages written with the routing decision, sent and retried later.

`enqueue` runs inside the router's transaction; `deliver_due` runs on the alerting thread. Rows are
claimed with a lease (and SKIP LOCKED on PostgreSQL), so several API processes never send one twice.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert, or_, select, update

from central.alerting.channels import DeliveryError, Sender
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
