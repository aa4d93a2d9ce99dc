"""Enrolment tokens, device credentials and read-API tokens: generated here, stored only as SHA-256 hashes.

Called from request worker threads (enrolment, auth) and CLI commands (issuing tokens).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from central.names import check_name
from central.store import tables
from central.store.clock import as_utc, as_utc_or_none
from central.store.engine import Database

Role = Literal["admin", "auditor"]
ROLES: tuple[Role, ...] = ("admin", "auditor")

ENROLL_PREFIX = "dwe_"
CREDENTIAL_PREFIX = "dwd_"
API_PREFIX = "dwa_"

MAX_ENROLL_TTL = timedelta(days=365)
MAX_TOKEN_TTL = timedelta(days=3 * 365)


def token_hash(token: str) -> str:
    """Tokens are 32 random bytes, so a plain SHA-256 is enough to make a stolen table useless."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def ensure_team(conn: Connection, team: str, *, now: datetime) -> str:
    """The team's name, creating the team first when it is new (then the name must pass `check_name`)."""
    exists = conn.execute(select(tables.teams.c.name).where(tables.teams.c.name == team)).first()
    if exists is not None:
        return team
    name = check_name(team, what="team name")
    if name != team and conn.execute(select(tables.teams.c.name).where(tables.teams.c.name == name)).first():
        return name
    # Two enrolments naming the same new team at once must both succeed: whoever inserts second does nothing.
    make = sqlite_insert if conn.dialect.name == "sqlite" else pg_insert
    conn.execute(make(tables.teams).values(name=name, created_at=now).on_conflict_do_nothing(index_elements=["name"]))
    return name


def issue_enroll_token(
    db: Database,
    team: str,
    *,
    ttl: timedelta,
    now: datetime,
    max_uses: int | None = None,
    created_by: str = "cli",
) -> str:
    """A multi-use token for `team`, valid until now + ttl (and at most `max_uses` enrolments if given)."""
    if not team.strip():
        raise ValueError("team must not be empty")
    if ttl <= timedelta(0):
        raise ValueError("ttl must be positive")
    if ttl > MAX_ENROLL_TTL:
        raise ValueError(f"an enrolment token may be valid for at most {MAX_ENROLL_TTL.days} days")
    if max_uses is not None and max_uses < 1:
        raise ValueError("max_uses must be at least 1")
    token = new_token(ENROLL_PREFIX)
    with db.write() as conn:
        team = ensure_team(conn, team, now=now)
        conn.execute(
            insert(tables.enroll_tokens).values(
                token_hash=token_hash(token),
                team=team,
                created_at=now,
                expires_at=now + ttl,
                max_uses=max_uses,
                uses=0,
                created_by=created_by,
            )
        )
    return token


def revoke_enroll_token(db: Database, token: str, *, now: datetime) -> bool:
    """Revoke by the token itself; True when a live token was revoked."""
    t = tables.enroll_tokens
    with db.write() as conn:
        result = conn.execute(
            update(t).where(t.c.token_hash == token_hash(token), t.c.revoked_at.is_(None)).values(revoked_at=now)
        )
        return result.rowcount > 0


def check_token_ttl(ttl: timedelta | None) -> None:
    if ttl is not None and not timedelta(0) < ttl <= MAX_TOKEN_TTL:
        raise ValueError(f"a token's lifetime must be between 1 second and {MAX_TOKEN_TTL.days} days")


def create_api_token(
    db: Database,
    name: str,
    role: Role,
    *,
    now: datetime,
    ttl: timedelta | None = None,
    created_by: str = "cli",
) -> str:
    """A read-API token; it expires `ttl` from now when given (else when revoked)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    name = check_name(name, what="token name")
    check_token_ttl(ttl)
    token = new_token(API_PREFIX)
    with db.write() as conn:
        conn.execute(
            insert(tables.api_tokens).values(
                name=name,
                role=role,
                token_hash=token_hash(token),
                created_at=now,
                expires_at=None if ttl is None else now + ttl,
                created_by=created_by,
            )
        )
    return token


@dataclass(frozen=True)
class ApiPrincipal:
    token_id: int
    name: str
    role: Role


def find_api_token(db: Database, token: str, *, now: datetime | None = None) -> ApiPrincipal | None:
    """The live token: not revoked, not expired (at `now`, default the wall clock)."""
    t = tables.api_tokens
    when = now or datetime.now(UTC)
    with db.read() as conn:
        row = conn.execute(
            select(t.c.id, t.c.name, t.c.role, t.c.expires_at).where(
                t.c.token_hash == token_hash(token), t.c.revoked_at.is_(None)
            )
        ).first()
    if row is None or row.role not in ROLES or (row.expires_at is not None and as_utc(row.expires_at) <= when):
        return None
    role: Role = "admin" if row.role == "admin" else "auditor"
    return ApiPrincipal(token_id=int(row.id), name=str(row.name), role=role)


@dataclass(frozen=True)
class ApiTokenRow:
    id: int
    name: str
    role: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expires_at is not None and self.expires_at <= now else "active"


def list_api_tokens(db: Database) -> list[ApiTokenRow]:
    t = tables.api_tokens
    with db.read() as conn:
        rows = conn.execute(select(t).order_by(t.c.id.desc())).all()
    return [
        ApiTokenRow(
            id=int(r.id),
            name=str(r.name),
            role=str(r.role),
            created_at=as_utc(r.created_at),
            created_by=str(r.created_by),
            expires_at=as_utc_or_none(r.expires_at),
            revoked_at=as_utc_or_none(r.revoked_at),
        )
        for r in rows
    ]


def revoke_api_token(db: Database, token_id: int, *, now: datetime) -> ApiTokenRow | None:
    """Revoke a live token by its id; the token as it was, or None when there is no such live token."""
    t = tables.api_tokens
    with db.write() as conn:
        row = conn.execute(select(t).where(t.c.id == token_id, t.c.revoked_at.is_(None))).first()
        if row is None:
            return None
        conn.execute(update(t).where(t.c.id == token_id).values(revoked_at=now))
    return ApiTokenRow(
        id=int(row.id),
        name=str(row.name),
        role=str(row.role),
        created_at=as_utc(row.created_at),
        created_by=str(row.created_by),
        expires_at=as_utc_or_none(row.expires_at),
        revoked_at=now,
    )
