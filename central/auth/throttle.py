"""Login throttling: after repeated failures for one user name or one client address, refuse logins for a while.

Kept in the database so every API process behind a load balancer counts the same failures. Worker threads.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select, update

from central.store.clock import as_utc
from central.store.console_tables import login_failures
from central.store.engine import Database

MAX_FAILURES = 5
WINDOW = timedelta(minutes=15)
LOCKOUT = timedelta(minutes=15)


def _keys(name: str, client: str) -> list[str]:
    return [f"user:{name.lower()[:200]}", f"addr:{client[:64]}"]


def locked_until(db: Database, name: str, client: str, *, now: datetime) -> datetime | None:
    with db.read() as conn:
        rows = conn.execute(
            select(login_failures.c.locked_until).where(login_failures.c.key.in_(_keys(name, client)))
        ).all()
    until = [as_utc(r.locked_until) for r in rows if r.locked_until is not None and as_utc(r.locked_until) > now]
    return max(until) if until else None


def record_failure(db: Database, name: str, client: str, *, now: datetime) -> None:
    with db.write() as conn:
        for key in _keys(name, client):
            row = conn.execute(select(login_failures).where(login_failures.c.key == key).with_for_update()).first()
            if row is None or now - as_utc(row.first_at) > WINDOW:
                conn.execute(delete(login_failures).where(login_failures.c.key == key))
                conn.execute(insert(login_failures).values(key=key, failures=1, first_at=now, locked_until=None))
                continue
            failures = int(row.failures) + 1
            conn.execute(
                update(login_failures)
                .where(login_failures.c.key == key)
                .values(failures=failures, locked_until=now + LOCKOUT if failures >= MAX_FAILURES else None)
            )


def record_success(db: Database, name: str) -> None:
    with db.write() as conn:
        conn.execute(delete(login_failures).where(login_failures.c.key == _keys(name, "")[0]))
