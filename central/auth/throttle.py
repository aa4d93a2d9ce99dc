"""Login throttling per (user name, client address), with exponential backoff; and per client address over
all user names, with a higher threshold (password spraying).

Failures of one address never lock out the same user at another address, so an attacker cannot lock a real
user out from elsewhere. Behind a reverse proxy the client address is the proxy's unless uvicorn believes its
X-Forwarded-For (`forwarded_allow_ips`; docs/deploy-endpoint.md). Kept in the database so every API process
counts the same failures. Worker threads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select, update

from central.store.clock import as_utc
from central.store.console_tables import login_failures
from central.store.engine import Database

WINDOW = timedelta(minutes=15)
"""Failures are forgotten this long after the first one of a run."""
MAX_DELAY = timedelta(minutes=15)


@dataclass(frozen=True)
class Limit:
    free: int
    """Failures allowed before any delay."""
    base: timedelta
    """The delay after the first failure beyond `free`; it doubles with each further failure up to MAX_DELAY."""

    def delay(self, failures: int) -> timedelta | None:
        beyond = failures - self.free
        if beyond <= 0:
            return None
        delay: timedelta = self.base * (2 ** min(beyond - 1, 20))
        return min(delay, MAX_DELAY)


PAIR = Limit(free=3, base=timedelta(seconds=1))
"""One user name from one address: 3 tries, then 1 s, 2 s, 4 s ... 15 min between tries."""
ADDRESS = Limit(free=20, base=timedelta(seconds=2))
"""One address over every user name."""


def _keys(name: str, client: str) -> dict[str, Limit]:
    return {f"pair:{client[:64]}|{name.lower()[:200]}": PAIR, f"addr:{client[:64]}": ADDRESS}


def locked_until(db: Database, name: str, client: str, *, now: datetime) -> datetime | None:
    """When this user name may be tried again from this address, or None when it may be tried now."""
    with db.read() as conn:
        rows = conn.execute(
            select(login_failures.c.locked_until).where(login_failures.c.key.in_(list(_keys(name, client))))
        ).all()
    until = [as_utc(r.locked_until) for r in rows if r.locked_until is not None and as_utc(r.locked_until) > now]
    return max(until) if until else None


def record_failure(db: Database, name: str, client: str, *, now: datetime) -> None:
    with db.write() as conn:
        for key, limit in _keys(name, client).items():
            row = conn.execute(select(login_failures).where(login_failures.c.key == key).with_for_update()).first()
            if row is None or now - as_utc(row.first_at) > WINDOW:
                conn.execute(delete(login_failures).where(login_failures.c.key == key))
                conn.execute(insert(login_failures).values(key=key, failures=1, first_at=now, locked_until=None))
                continue
            failures = int(row.failures) + 1
            delay = limit.delay(failures)
            conn.execute(
                update(login_failures)
                .where(login_failures.c.key == key)
                .values(failures=failures, locked_until=None if delay is None else now + delay)
            )


def record_success(db: Database, name: str, client: str) -> None:
    """A right password clears that user's failures from that address (not the address's count over users)."""
    pair = next(iter(_keys(name, client)))
    with db.write() as conn:
        conn.execute(delete(login_failures).where(login_failures.c.key == pair))
