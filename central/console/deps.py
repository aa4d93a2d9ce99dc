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
from central.console.event_fields import event_fields
from central.console.forms import is_web_url
from central.console.state import console_of
from central.console.times import when
from central.http.bodies import MAX_STORED_INT

SESSION_COOKIE = "dw_session"
LOGIN_CSRF_COOKIE = "dw_login_csrf"
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

TEMPLATES.env.filters["when"] = when
TEMPLATES.env.filters["event_fields"] = event_fields
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


def admin_viewer(who: Viewer) -> Principal:
    """A page only admins may open; supervisors and auditors get 403."""
    if not who.is_admin:
        raise HTTPException(status_code=403, detail="only admins may do this")
    return who


AdminViewer = Annotated[Principal, Depends(admin_viewer)]


def fleet_viewer(who: Viewer) -> Principal:
    """A page about the whole fleet's configuration (settings): admins and auditors; supervisors get 403."""
    if not who.all_teams:
        raise HTTPException(status_code=403, detail="supervisors do not see the endpoint's settings")
    return who


FleetViewer = Annotated[Principal, Depends(fleet_viewer)]


def admin_acting(session: Acting) -> Session:
    """A CSRF-checked form from an admin; supervisors and auditors get 403."""
    if not session.principal.is_admin:
        raise HTTPException(status_code=403, detail="only admins may do this")
    return session


AdminActing = Annotated[Session, Depends(admin_acting)]


def actor_acting(session: Acting) -> Session:
    """A CSRF-checked form from someone who may change things (admin or supervisor); auditors get 403."""
    if not session.principal.can_act:
        raise HTTPException(status_code=403, detail="auditors have read-only access")
    return session


ActorActing = Annotated[Session, Depends(actor_acting)]
"""Routes declare who may use them with these types (`AdminActing`, `ActorActing`, `AdminViewer`...), never by a
check written inside the handler, which a new route could forget."""


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
