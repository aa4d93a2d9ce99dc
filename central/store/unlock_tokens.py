"""Unlock tokens: signing one for a device (policy key, policy_client/unlock_token.py), the register of every token
issued, and what the console shows of it.

`issue` runs on console request worker threads and on the CLI's main thread. Reported uses are checked by
ingest (`central/store/ingest.py`) inside the batch's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import insert, select

from central.signing import PolicySigner
from central.store import audit, tables
from central.store.clock import as_utc, as_utc_or_none
from central.store.engine import Database
from policy_client.unlock_token import UNLOCK_SCOPES, UnlockScope, UnlockToken, issue_unlock_token

AUDIT_ACTION: Final = "device.unlock_token"
MAX_QUIT_MINUTES: Final = 7 * 24 * 60
"""The longest a `quit` token lets the tray helper stay stopped."""
MAX_TTL: Final = timedelta(days=30)
"""The longest a token may wait to be entered."""


class UnknownDevice(LookupError):
    """No device has that id."""


@dataclass(frozen=True)
class IssuedUnlock:
    text: str
    """The token to hand to the person at the desk; shown once, never stored or logged."""
    token: UnlockToken
    device_id: str
    team: str


def check_request(scope: str, minutes: int, ttl: timedelta) -> UnlockScope:
    """The scope, when `scope`, `minutes` (for `quit`) and `ttl` are acceptable; else ValueError saying why."""
    chosen = next((s for s in UNLOCK_SCOPES if s == scope), None)
    if chosen is None:
        raise ValueError(f"scope must be one of {', '.join(UNLOCK_SCOPES)}")
    if chosen == "quit" and not 1 <= minutes <= MAX_QUIT_MINUTES:
        raise ValueError(f"minutes must be between 1 and {MAX_QUIT_MINUTES}")
    if not timedelta(0) < ttl <= MAX_TTL:
        raise ValueError(f"a token must expire within {MAX_TTL.days} days")
    return chosen


def issue(
    db: Database,
    signer: PolicySigner,
    device_id: str,
    *,
    scope: str,
    minutes: int,
    ttl: timedelta,
    actor: str,
    now: datetime,
) -> IssuedUnlock:
    """Sign a token for `device_id`, register it and write the audit entry, in one transaction.

    `minutes` counts only for `quit` (an `uninstall` token carries 0). Raises ValueError for a bad request
    (see `check_request`) and `UnknownDevice` when no device has that id.
    """
    chosen = check_request(scope, minutes, ttl)
    d, u = tables.devices, tables.unlock_tokens
    with db.write() as conn:
        team = conn.execute(select(d.c.team).where(d.c.device_id == device_id)).scalar_one_or_none()
        if team is None:
            raise UnknownDevice(device_id)
        text, token = issue_unlock_token(
            signer.private_key,
            device_id=device_id,
            scope=chosen,
            minutes=minutes if chosen == "quit" else 0,
            expires_at=now + ttl,
        )
        conn.execute(
            insert(u).values(
                token_id=token.token_id,
                device_id=device_id,
                team=team,
                scope=token.scope,
                minutes=token.minutes,
                expires_at=token.expires_at,
                issued_by=actor[:128],
                issued_at=now,
            )
        )
        audit.record(
            conn,
            actor=actor,
            action=AUDIT_ACTION,
            target=device_id,
            team=str(team),
            now=now,
            after={
                "token_id": token.token_id,
                "scope": token.scope,
                "minutes": token.minutes,
                "expires_at": token.expires_at.isoformat(),
            },
        )
    return IssuedUnlock(text=text, token=token, device_id=device_id, team=str(team))


def list_issued(db: Database, *, device_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Issued tokens, newest first: id, device, team, scope, minutes, expiry, issuer, first reported use."""
    u = tables.unlock_tokens
    query = select(u).order_by(u.c.issued_at.desc(), u.c.token_id).limit(limit)
    if device_id is not None:
        query = query.where(u.c.device_id == device_id)
    with db.read() as conn:
        rows = conn.execute(query).all()
    return [
        {
            "token_id": r.token_id,
            "device_id": r.device_id,
            "team": r.team,
            "scope": r.scope,
            "minutes": r.minutes,
            "expires_at": as_utc(r.expires_at),
            "issued_by": r.issued_by,
            "issued_at": as_utc(r.issued_at),
            "used_at": as_utc_or_none(r.used_at),
            "used_seq": r.used_seq,
        }
        for r in rows
    ]
