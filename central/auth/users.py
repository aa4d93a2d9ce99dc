"""Console users: creation, lookup by name or personal token, team membership, listing.

Called from request worker threads and CLI commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from central.auth.passwords import HashGate, hash_password, needs_rehash, verify_password
from central.auth.principal import Principal, Role, parse_role
from central.names import check_name
from central.store.console_tables import user_teams, user_tokens, users
from central.store.engine import Database
from central.store.tokens import ensure_team, new_token, token_hash

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


def issue_user_token(db: Database, user_id: int, *, now: datetime) -> str:
    """A personal bearer token (for the tray's alert stream); sees exactly what the user sees."""
    token = new_token(USER_TOKEN_PREFIX)
    with db.write() as conn:
        conn.execute(insert(user_tokens).values(token_hash=token_hash(token), user_id=user_id, created_at=now))
    return token


def find_user_token(db: Database, token: str) -> Principal | None:
    with db.read() as conn:
        row = conn.execute(
            select(user_tokens.c.user_id).where(
                user_tokens.c.token_hash == token_hash(token), user_tokens.c.revoked_at.is_(None)
            )
        ).first()
        return None if row is None else principal_by_id(conn, int(row.user_id))


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
