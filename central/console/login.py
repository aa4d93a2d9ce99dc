"""Login and logout: argon2 verification (bounded), throttling per user name and client address, a fresh session
cookie.

Handlers run in worker threads (password hashing and database work).
"""

from __future__ import annotations

import hmac
import math
from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from central.auth import throttle
from central.auth.passwords import HashingBusy
from central.auth.sessions import end_session, start_session
from central.auth.users import authenticate
from central.console.deps import LOGIN_CSRF_COOKIE, SESSION_COOKIE, Acting, back, new_login_csrf, page, secure_request
from central.console.state import console_of
from central.store import audit

router = APIRouter(prefix="/console", include_in_schema=False)


BUSY_RETRY_S = 5


def client_address(request: Request) -> str:
    """The peer's address; behind a reverse proxy uvicorn has already replaced it with the X-Forwarded-For
    client when the proxy is in `forwarded_allow_ips`."""
    return request.client.host if request.client else "unknown"


def _in_words(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    return f"{math.ceil(seconds / 60)} minutes"


def _safe_next(value: str) -> str:
    return value if value.startswith("/console") and not value.startswith("//") else "/console/alerts"


@router.get("/login")
def login_form(request: Request, next: str = "/console/alerts") -> Response:
    token = new_login_csrf()
    answer = page(request, "login.html", next=_safe_next(next), login_csrf=token)
    answer.set_cookie(
        LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=secure_request(request), path="/console"
    )
    return answer


@router.post("/login")
def login(
    request: Request,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/console/alerts",
) -> Response:
    runtime = console_of(request).runtime
    now = runtime.clock()
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie, csrf_token):
        return page(
            request,
            "login.html",
            status_code=403,
            next=_safe_next(next),
            login_csrf=cookie,
            login_error="The form expired; please try again.",
        )
    client = client_address(request)
    name = username.strip()
    until = throttle.locked_until(runtime.db, name, client, now=now)
    if until is not None:
        wait_s = max(1, math.ceil((until - now).total_seconds()))
        answer = page(
            request,
            "login.html",
            status_code=429,
            next=_safe_next(next),
            login_csrf=cookie,
            login_error=f"Too many failed attempts; try again in {_in_words(wait_s)}.",
        )
        answer.headers["Retry-After"] = str(wait_s)
        return answer
    try:
        principal = authenticate(runtime.db, name, password, now=now, gate=console_of(request).hash_gate)
    except HashingBusy:
        answer = page(
            request,
            "login.html",
            status_code=503,
            next=_safe_next(next),
            login_csrf=cookie,
            login_error="The console is busy; try again in a few seconds.",
        )
        answer.headers["Retry-After"] = str(BUSY_RETRY_S)
        return answer
    if principal is None:
        # The delay runs from the failure's answer, not the request's start: hashing must not eat into it.
        throttle.record_failure(runtime.db, name, client, now=runtime.clock())
        return page(
            request,
            "login.html",
            status_code=401,
            next=_safe_next(next),
            login_csrf=cookie,
            login_error="Wrong user name or password.",
        )
    throttle.record_success(runtime.db, name, client)
    session_id, _csrf = start_session(runtime.db, principal, now=now)
    with runtime.db.write() as conn:
        audit.record(
            conn,
            actor=principal.name,
            action="session.login",
            target=f"user:{principal.name}",
            now=now,
            after={"client": client},
        )
    answer = back(_safe_next(next))
    answer.set_cookie(
        SESSION_COOKIE, session_id, httponly=True, samesite="strict", secure=secure_request(request), path="/"
    )
    answer.delete_cookie(LOGIN_CSRF_COOKIE, path="/console")
    return answer


@router.post("/logout")
def logout(request: Request, _session: Acting) -> Response:
    runtime = console_of(request).runtime
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        end_session(runtime.db, cookie)
    answer = back("/console/login", msg="Signed out.")
    answer.delete_cookie(SESSION_COOKIE, path="/")
    return answer
