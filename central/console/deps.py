"""Request plumbing for console pages: the session from its cookie, role checks, CSRF checks, page rendering.

Dependencies run in worker threads (they read the database); helpers are pure.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Form, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from central.auth.principal import Principal
from central.auth.sessions import Session, csrf_ok, load_session
from central.console.forms import is_web_url
from central.console.state import console_of
from central.http.bodies import MAX_STORED_INT

SESSION_COOKIE = "dw_session"
LOGIN_CSRF_COOKIE = "dw_login_csrf"
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

TEMPLATES.env.filters["web_url"] = lambda value: value if is_web_url(value) else ""
"""Links written from stored data (a rule's playbook) render only as http(s): never `javascript:`."""

PathId = Annotated[int, PathParam(ge=1, le=MAX_STORED_INT)]
"""Row ids are 64-bit in both databases; a larger one in a URL is a 422 page, not a driver overflow."""
CursorId = Annotated[int | None, Query(ge=0, le=MAX_STORED_INT)]


class LoginRequired(Exception):
    """No live session: the page answers with a redirect to the login form."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


def secure_request(request: Request) -> bool:
    forced = console_of(request).secure_cookies
    if forced is not None:
        return forced
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "") == "https"


def session_of(request: Request) -> Session:
    runtime = console_of(request).runtime
    cookie = request.cookies.get(SESSION_COOKIE)
    session = load_session(runtime.db, cookie, now=runtime.clock()) if cookie else None
    if session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target)
    request.state.session = session
    return session


SessionDep = Annotated[Session, Depends(session_of)]


def viewer(session: SessionDep) -> Principal:
    return session.principal


Viewer = Annotated[Principal, Depends(viewer)]


def csrf_checked(session: SessionDep, csrf_token: Annotated[str, Form()] = "") -> Session:
    """Every state-changing form carries the session's CSRF token; anything else is refused with 403."""
    if not csrf_ok(session, csrf_token):
        raise HTTPException(status_code=403, detail="CSRF check failed: reload the page and try again")
    return session


Acting = Annotated[Session, Depends(csrf_checked)]


def require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise HTTPException(status_code=403, detail="only admins may do this")


def admin_acting(session: Acting) -> Session:
    """A CSRF-checked form from an admin; supervisors and auditors get 403."""
    require_admin(session.principal)
    return session


AdminActing = Annotated[Session, Depends(admin_acting)]


def require_actor(principal: Principal) -> None:
    if not principal.can_act:
        raise HTTPException(status_code=403, detail="auditors have read-only access")


def page(request: Request, name: str, *, status_code: int = 200, **context: Any) -> Response:
    session: Session | None = getattr(request.state, "session", None)
    base = {
        "viewer": session.principal if session else None,
        "csrf": session.csrf if session else "",
        "flash": request.query_params.get("msg", ""),
        "error": request.query_params.get("err", ""),
        "path": request.url.path,
    }
    return TEMPLATES.TemplateResponse(request, name, base | context, status_code=status_code)


URL_SAFE = "/?=&%#:@!$'()*+,;~-._"
"""What stays as it is in a Location: the URL's own punctuation and escapes; anything else (non-ASCII, spaces,
line breaks from a decoded path) is percent-encoded, since headers are Latin-1 and one line."""


def back(url: str, *, msg: str = "", err: str = "") -> Response:
    """Post/redirect/get with a one-line message."""
    sep = "&" if "?" in url else "?"
    query = f"{sep}msg={quote(msg)}" if msg else f"{sep}err={quote(err)}" if err else ""
    return Response(status_code=303, headers={"Location": quote(url, safe=URL_SAFE) + query})


def new_login_csrf() -> str:
    return secrets.token_urlsafe(24)
