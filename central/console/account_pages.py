"""Account and tokens: a user changes their own password and issues, lists and revokes their personal tokens;
admins create and revoke read-API tokens, revoke anyone's personal token and reset a user's password. Every
change is audit-logged.

Handlers run in worker threads (password hashing and database work).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from starlette.responses import Response

from central.auth import users
from central.auth.passwords import HashingBusy, generate_password
from central.auth.principal import Principal
from central.console import forms
from central.console.deps import Acting, AdminActing, PathId, Viewer, back, page
from central.console.state import console_of
from central.store import audit, tokens
from central.store.console_config import load_config

router = APIRouter(prefix="/console", include_in_schema=False)

MAX_TOKEN_DAYS = tokens.MAX_TOKEN_TTL.days
DEFAULT_TOKEN_DAYS = users.DEFAULT_USER_TOKEN_TTL.days
BUSY = "The console is busy hashing passwords; try again in a few seconds."


def _user_id(who: Principal) -> int:
    if who.user_id is None:
        raise HTTPException(status_code=403, detail="only console users have an account")
    return who.user_id


def _once(request: Request, *, token: str, kind: str) -> Response:
    """A page that shows a credential once; never cached."""
    answer = page(request, "token.html", token=token, kind=kind)
    answer.headers["Cache-Control"] = "no-store"
    return answer


@router.get("/account")
def account_page(request: Request, who: Viewer) -> Response:
    runtime = console_of(request).runtime
    now = runtime.clock()
    return page(
        request,
        "account.html",
        now=now,
        my_tokens=users.list_user_tokens(runtime.db, user_id=_user_id(who)),
        all_tokens=users.list_user_tokens(runtime.db) if who.is_admin else [],
        api_tokens=tokens.list_api_tokens(runtime.db) if who.is_admin else [],
        max_days=MAX_TOKEN_DAYS,
        default_days=DEFAULT_TOKEN_DAYS,
    )


@router.post("/account/password")
def change_password(
    request: Request,
    session: Acting,
    current: Annotated[str, Form()],
    new: Annotated[str, Form()],
    confirm: Annotated[str, Form()],
) -> Response:
    """The user's own password; their other sessions end (this one stays)."""
    state = console_of(request)
    runtime = state.runtime
    who = session.principal
    now = runtime.clock()
    if new != confirm:
        return back("/console/account", err="The new password and its confirmation differ.")
    try:
        users.change_password(
            runtime.db,
            _user_id(who),
            current=current,
            new=new,
            now=now,
            keep_session=session.id_hash,
            gate=state.hash_gate,
        )
    except HashingBusy:
        return back("/console/account", err=BUSY)
    except (ValueError, LookupError) as exc:
        return back("/console/account", err=str(exc))
    with runtime.db.write() as conn:
        audit.record(conn, actor=who.name, action="user.password_change", target=f"user:{who.name}", now=now)
    return back("/console/account", msg="Password changed; your other sessions were signed out.")


@router.post("/tokens")
def issue_personal_token(
    request: Request, session: Acting, days: Annotated[int, Form()] = DEFAULT_TOKEN_DAYS
) -> Response:
    runtime = console_of(request).runtime
    who = session.principal
    now = runtime.clock()
    try:
        forms.bounded(days, field="days", low=1, high=MAX_TOKEN_DAYS)
    except ValueError as exc:
        return back("/console/account", err=str(exc))
    token = users.issue_user_token(runtime.db, _user_id(who), now=now, ttl=timedelta(days=days))
    with runtime.db.write() as conn:
        audit.record(
            conn,
            actor=who.name,
            action="token.issue",
            target=f"user:{who.name}",
            now=now,
            after={"token_id": tokens.token_hash(token)[:16], "expires_at": (now + timedelta(days=days)).isoformat()},
        )
    return _once(request, token=token, kind=f"Personal alert-stream token (valid {days} days)")


@router.post("/tokens/{token_id}/revoke")
def revoke_personal_token(request: Request, session: Acting, token_id: str) -> Response:
    """Anyone revokes their own personal token; admins anyone's."""
    runtime = console_of(request).runtime
    who = session.principal
    now = runtime.clock()
    owner = None if who.is_admin else _user_id(who)
    revoked = users.revoke_user_token(runtime.db, token_id[:32], now=now, owner=owner)
    if revoked is None:
        raise HTTPException(status_code=404, detail="no such active token")
    with runtime.db.write() as conn:
        audit.record(
            conn,
            actor=who.name,
            action="token.revoke",
            target=f"user:{revoked.user}",
            now=now,
            before={"token_id": revoked.token_id},
        )
    return back("/console/account", msg=f"Token {revoked.token_id} of {revoked.user} revoked.")


@router.post("/api-tokens")
def create_api_token(
    request: Request,
    session: AdminActing,
    name: Annotated[str, Form()],
    role: Annotated[str, Form()],
    days: Annotated[str, Form()] = "",
) -> Response:
    """A read-API token; `days` empty means it lasts until revoked."""
    runtime = console_of(request).runtime
    who = session.principal
    now = runtime.clock()
    try:
        lifetime = None if not days.strip() else int(days)
        if lifetime is not None:
            forms.bounded(lifetime, field="days", low=1, high=MAX_TOKEN_DAYS)
        if role not in tokens.ROLES:
            raise ValueError(f"role must be one of {', '.join(tokens.ROLES)}")
        ttl = None if lifetime is None else timedelta(days=lifetime)
        token = tokens.create_api_token(
            runtime.db, name, "admin" if role == "admin" else "auditor", now=now, ttl=ttl, created_by=who.name
        )
    except ValueError as exc:
        return back("/console/account", err=str(exc).replace("invalid literal for int() with base 10", "days"))
    with runtime.db.write() as conn:
        audit.record(
            conn,
            actor=who.name,
            action="api-token.create",
            target=f"api-token:{name.strip()}",
            now=now,
            after={"role": role, "expires_at": None if ttl is None else (now + ttl).isoformat()},
        )
    validity = "until revoked" if lifetime is None else f"valid {lifetime} days"
    return _once(request, token=token, kind=f"Read-API token {name.strip()} ({role}, {validity})")


@router.post("/api-tokens/{token_id}/revoke")
def revoke_api_token(request: Request, session: AdminActing, token_id: PathId) -> Response:
    runtime = console_of(request).runtime
    who = session.principal
    now = runtime.clock()
    revoked = tokens.revoke_api_token(runtime.db, token_id, now=now)
    if revoked is None:
        raise HTTPException(status_code=404, detail="no such active API token")
    with runtime.db.write() as conn:
        audit.record(
            conn,
            actor=who.name,
            action="api-token.revoke",
            target=f"api-token:{revoked.name}",
            now=now,
            before={"id": revoked.id, "role": revoked.role},
        )
    return back("/console/account", msg=f"API token {revoked.name} revoked.")


@router.post("/users/{user_id}/password")
def reset_password(
    request: Request, session: AdminActing, user_id: PathId, password: Annotated[str, Form()] = ""
) -> Response:
    """An admin sets a user's password (a generated one when left empty) and ends that user's sessions.

    Another admin's password is not reset here while the two-person rule is on: the new password would let one
    admin act as two. That takes `deskwarden admin reset-password` on the endpoint's host.
    """
    state = console_of(request)
    runtime = state.runtime
    who = session.principal
    now = runtime.clock()
    target = next((u for u in users.list_users(runtime.db) if u.id == user_id), None)
    if target is None:
        raise HTTPException(status_code=404, detail="no such user")
    if target.role == "admin" and target.id != who.user_id and load_config(runtime.db).two_person_rule:
        return back(
            "/console/teams",
            err="With the two-person rule on, another admin's password is reset only with "
            "`deskwarden admin reset-password` on the endpoint's host.",
        )
    chosen = password or generate_password()
    try:
        users.reset_password(runtime.db, user_id, new=chosen, now=now, gate=state.hash_gate)
    except HashingBusy:
        return back("/console/teams", err=BUSY)
    except (ValueError, LookupError) as exc:
        return back("/console/teams", err=str(exc))
    with runtime.db.write() as conn:
        audit.record(conn, actor=who.name, action="user.password_reset", target=f"user:{target.name}", now=now)
    if password:
        return back("/console/teams", msg=f"Password of {target.name} reset; their sessions were signed out.")
    return _once(request, token=chosen, kind=f"New password for {target.name}")
