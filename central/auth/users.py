"""Console users: creation, lookup by name or personal token, team membership, listing, personal tokens (expiry,
revocation) and passwords (change by the user, reset by an admin).

Called from request worker threads and CLI commands.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from central.auth.passwords import HashGate, check_password_rules, hash_password, needs_rehash, verify_password
from central.auth.principal import Principal, Role, parse_role
from central.names import check_name
from central.store.clock import as_utc, as_utc_or_none
from central.store.console_tables import sessions, user_teams, user_tokens, users
from central.store.engine import Database
from central.store.tokens import check_token_ttl, ensure_team, new_token, token_hash

USER_TOKEN_PREFIX = "dwu_"  # noqa: S105 - a prefix, not a secret


class UserExists(ValueError):
    """A user with that name already exists."""


@dataclass(frozen=True)
class UserRow:
    id: int
    name: str
    role: Role
    teams: tuple[str, ...]
    disabled: bool
    last_login_at: datetime | None


def _teams_of(conn: Connection, user_id: int) -> frozenset[str]:
    rows = conn.execute(select(user_teams.c.team).where(user_teams.c.user_id == user_id)).scalars()
    return frozenset(str(t) for t in rows)


def create_user(
    db: Database,
    name: str,
    *,
    role: str,
    teams: list[str],
    password: str,
    now: datetime,
    gate: HashGate | None = None,
) -> Principal:
    name = check_name(name, what="user name")
    checked = parse_role(role)
    if checked == "supervisor" and not teams:
        raise ValueError("a supervisor needs at least one --team")
    password_hash = hash_password(password, gate=gate)
    with db.write() as conn:
        if conn.execute(select(users.c.id).where(users.c.name == name)).first() is not None:
            raise UserExists(f"user {name!r} already exists")
        user_id = int(
            conn.execute(  # type: ignore[index]
                insert(users).values(name=name, role=checked, password_hash=password_hash, created_at=now)
            ).inserted_primary_key[0]
        )
        _set_teams(conn, user_id, teams, now=now)
        stored = _teams_of(conn, user_id)
    return Principal(name=name, role=checked, teams=stored, user_id=user_id)


def _set_teams(conn: Connection, user_id: int, teams: list[str], *, now: datetime) -> None:
    conn.execute(delete(user_teams).where(user_teams.c.user_id == user_id))
    for team in sorted({ensure_team(conn, t.strip(), now=now) for t in teams if t.strip()}):
        conn.execute(insert(user_teams).values(user_id=user_id, team=team))


def update_user(
    db: Database, user_id: int, *, role: str, teams: list[str], disabled: bool, now: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Change role, teams and the disabled flag; return (before, after) for the audit log."""
    checked = parse_role(role)
    with db.write() as conn:
        row = conn.execute(select(users).where(users.c.id == user_id)).first()
        if row is None:
            raise LookupError("no such user")
        before = {"role": row.role, "teams": sorted(_teams_of(conn, user_id)), "disabled": row.disabled_at is not None}
        conn.execute(
            update(users)
            .where(users.c.id == user_id)
            .values(role=checked, disabled_at=(row.disabled_at or now) if disabled else None)
        )
        _set_teams(conn, user_id, teams, now=now)
        after = {"role": checked, "teams": sorted(_teams_of(conn, user_id)), "disabled": disabled}
    return before, after


def authenticate(
    db: Database, name: str, password: str, *, now: datetime, gate: HashGate | None = None
) -> Principal | None:
    """The user when the password is right and the account enabled; raises `HashingBusy` when `gate` is full."""
    with db.read() as conn:
        row = conn.execute(select(users).where(users.c.name == name)).first()
    if not verify_password(None if row is None else row.password_hash, password, gate=gate) or row is None:
        return None
    if row.disabled_at is not None:
        return None
    values: dict[str, Any] = {"last_login_at": now}
    if needs_rehash(row.password_hash):
        values["password_hash"] = hash_password(password, gate=gate)
    with db.write() as conn:
        conn.execute(update(users).where(users.c.id == row.id).values(values))
        teams = _teams_of(conn, int(row.id))
    return Principal(name=row.name, role=parse_role(row.role), teams=teams, user_id=int(row.id))


def principal_by_id(conn: Connection, user_id: int) -> Principal | None:
    row = conn.execute(select(users).where(users.c.id == user_id, users.c.disabled_at.is_(None))).first()
    if row is None:
        return None
    return Principal(name=row.name, role=parse_role(row.role), teams=_teams_of(conn, user_id), user_id=user_id)


DEFAULT_USER_TOKEN_TTL = timedelta(days=90)


@dataclass(frozen=True)
class UserTokenRow:
    token_id: str
    """The first 16 hex digits of the token's hash: safe to show, enough to name it."""
    user_id: int
    user: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expires_at is not None and self.expires_at <= now else "active"


def issue_user_token(
    db: Database, user_id: int, *, now: datetime, ttl: timedelta | None = DEFAULT_USER_TOKEN_TTL
) -> str:
    """A personal bearer token (for the tray's alert stream); sees exactly what the user sees, until it expires
    (`ttl` from now; None: until revoked) or is revoked."""
    check_token_ttl(ttl)
    token = new_token(USER_TOKEN_PREFIX)
    hashed = token_hash(token)
    with db.write() as conn:
        conn.execute(
            insert(user_tokens).values(
                token_hash=hashed,
                token_id=hashed[:16],
                user_id=user_id,
                created_at=now,
                expires_at=None if ttl is None else now + ttl,
            )
        )
    return token


def find_user_token(db: Database, token: str, *, now: datetime | None = None) -> Principal | None:
    """The token's user when the token is live (not revoked, not expired at `now`) and the user enabled."""
    when = now or datetime.now(UTC)
    with db.read() as conn:
        row = conn.execute(
            select(user_tokens.c.user_id, user_tokens.c.expires_at).where(
                user_tokens.c.token_hash == token_hash(token), user_tokens.c.revoked_at.is_(None)
            )
        ).first()
        if row is None or (row.expires_at is not None and as_utc(row.expires_at) <= when):
            return None
        return principal_by_id(conn, int(row.user_id))


def list_user_tokens(db: Database, *, user_id: int | None = None) -> list[UserTokenRow]:
    """Personal tokens, newest first: one user's, or everyone's when `user_id` is None."""
    t, u = user_tokens, users
    query = select(t, u.c.name).join(u, u.c.id == t.c.user_id).order_by(t.c.created_at.desc())
    if user_id is not None:
        query = query.where(t.c.user_id == user_id)
    with db.read() as conn:
        rows = conn.execute(query).all()
    return [
        UserTokenRow(
            token_id=str(r.token_id or r.token_hash[:16]),
            user_id=int(r.user_id),
            user=str(r.name),
            created_at=as_utc(r.created_at),
            expires_at=as_utc_or_none(r.expires_at),
            revoked_at=as_utc_or_none(r.revoked_at),
        )
        for r in rows
    ]


def revoke_user_token(db: Database, token_id: str, *, now: datetime, owner: int | None = None) -> UserTokenRow | None:
    """Revoke a live personal token by its public id (only `owner`'s when given); None when there is none."""
    found = [
        r
        for r in list_user_tokens(db, user_id=owner)
        if r.token_id == token_id.strip().lower() and r.revoked_at is None
    ]
    if len(found) != 1:
        return None
    with db.write() as conn:
        conn.execute(
            update(user_tokens)
            .where(user_tokens.c.token_id == found[0].token_id, user_tokens.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
    return replace(found[0], revoked_at=now)


class WrongPassword(ValueError):
    """The current password given to change it is not the user's."""


def change_password(
    db: Database,
    user_id: int,
    *,
    current: str,
    new: str,
    now: datetime,
    keep_session: str | None = None,
    gate: HashGate | None = None,
) -> None:
    """The user changes their own password (the current one proves it is them); their other sessions end.

    Raises WrongPassword, ValueError for a password that breaks the rules, `HashingBusy` when `gate` is full.
    """
    check_password_rules(new)
    with db.read() as conn:
        row = conn.execute(select(users.c.password_hash).where(users.c.id == user_id)).first()
    if row is None:
        raise LookupError("no such user")
    if not verify_password(row.password_hash, current, gate=gate):
        raise WrongPassword("the current password is not right")
    if current == new:
        raise ValueError("the new password must differ from the current one")
    _store_password(db, user_id, hash_password(new, gate=gate), keep_session=keep_session)


def reset_password(db: Database, user_id: int, *, new: str, now: datetime, gate: HashGate | None = None) -> str:
    """An admin sets a user's password (forgotten, or compromised); every session of that user ends.

    Returns the user's name; raises LookupError for an unknown user, ValueError for a password that breaks the rules.
    """
    check_password_rules(new)
    with db.read() as conn:
        name = conn.execute(select(users.c.name).where(users.c.id == user_id)).scalar()
    if name is None:
        raise LookupError("no such user")
    _store_password(db, user_id, hash_password(new, gate=gate), keep_session=None)
    return str(name)


def _store_password(db: Database, user_id: int, password_hash: str, *, keep_session: str | None) -> None:
    with db.write() as conn:
        conn.execute(update(users).where(users.c.id == user_id).values(password_hash=password_hash))
        ended = delete(sessions).where(sessions.c.user_id == user_id)
        if keep_session is not None:
            ended = ended.where(sessions.c.id_hash != keep_session)
        conn.execute(ended)


def user_id_by_name(db: Database, name: str) -> int | None:
    with db.read() as conn:
        found = conn.execute(select(users.c.id).where(users.c.name == name)).scalar()
    return None if found is None else int(found)


def list_users(db: Database) -> list[UserRow]:
    with db.read() as conn:
        rows = conn.execute(select(users).order_by(users.c.name)).all()
        return [
            UserRow(
                id=int(r.id),
                name=r.name,
                role=parse_role(r.role),
                teams=tuple(sorted(_teams_of(conn, int(r.id)))),
                disabled=r.disabled_at is not None,
                last_login_at=r.last_login_at,
            )
            for r in rows
        ]
