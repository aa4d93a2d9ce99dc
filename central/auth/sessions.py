"""Console sessions: a random id in an HttpOnly cookie (stored hashed), a CSRF token per session, idle expiry.

Called from request worker threads.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select, update

from central.auth.principal import Principal
from central.auth.users import principal_by_id
from central.store.clock import as_utc
from central.store.console_tables import sessions
from central.store.engine import Database
from central.store.tokens import token_hash

IDLE_TIMEOUT = timedelta(minutes=30)
ABSOLUTE_TIMEOUT = timedelta(hours=12)
TOUCH_EVERY = timedelta(seconds=30)
"""Refreshing last_seen_at on every request would make every page view a write."""


@dataclass(frozen=True)
class Session:
    principal: Principal
    csrf: str
    id_hash: str


def start_session(db: Database, principal: Principal, *, now: datetime) -> tuple[str, str]:
    """Create a session; return (session id for the cookie, CSRF token)."""
    if principal.user_id is None:
        raise ValueError("only console users have sessions")
    session_id = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    with db.write() as conn:
        conn.execute(
            insert(sessions).values(
                id_hash=token_hash(session_id),
                user_id=principal.user_id,
                csrf=csrf,
                created_at=now,
                last_seen_at=now,
                expires_at=now + ABSOLUTE_TIMEOUT,
            )
        )
    return session_id, csrf


def load_session(db: Database, session_id: str, *, now: datetime, idle: timedelta = IDLE_TIMEOUT) -> Session | None:
    """The live session for the cookie value, or None when unknown, idle too long or past its lifetime."""
    id_hash = token_hash(session_id)
    with db.read() as conn:
        row = conn.execute(select(sessions).where(sessions.c.id_hash == id_hash)).first()
        principal = None if row is None else principal_by_id(conn, int(row.user_id))
    if row is None or principal is None:
        return None
    last_seen = as_utc(row.last_seen_at)
    if now - last_seen > idle or now >= as_utc(row.expires_at):
        end_session(db, session_id)
        return None
    if now - last_seen > TOUCH_EVERY:
        with db.write() as conn:
            conn.execute(update(sessions).where(sessions.c.id_hash == id_hash).values(last_seen_at=now))
    return Session(principal=principal, csrf=row.csrf, id_hash=id_hash)


def session_principal(db: Database, session_id: str, *, now: datetime) -> Principal | None:
    """Who a session still speaks for, without refreshing it: None once logged out, past its lifetime, or its
    user disabled. For long-lived requests (the alert stream) that re-check their caller; the open stream
    itself is activity, so the idle timeout does not apply here."""
    with db.read() as conn:
        row = conn.execute(select(sessions).where(sessions.c.id_hash == token_hash(session_id))).first()
        if row is None or now >= as_utc(row.expires_at):
            return None
        return principal_by_id(conn, int(row.user_id))


def end_session(db: Database, session_id: str) -> None:
    with db.write() as conn:
        conn.execute(delete(sessions).where(sessions.c.id_hash == token_hash(session_id)))


def csrf_ok(session: Session, submitted: str | None) -> bool:
    return bool(submitted) and hmac.compare_digest(session.csrf, submitted or "")
