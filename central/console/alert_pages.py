"""Alert pages (list with live updates, detail with event trail, acknowledge / close / incident) and the
Server-Sent Events streams: `/console/alerts/stream` (session) and `/v1/alerts/stream` (bearer token or session).

Page handlers run in worker threads; the streams run on the event loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Header, HTTPException, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from central.alerting import workflow
from central.alerting.bus import Notice
from central.auth.principal import Principal
from central.auth.sessions import load_session, session_principal
from central.auth.users import USER_TOKEN_PREFIX, find_user_token
from central.console.deps import SESSION_COOKIE, ActorActing, CursorId, PathId, Viewer, back, page
from central.console.state import console_of
from central.http.auth import bearer_token
from central.http.errors import unauthorized
from central.store.tokens import find_api_token

router = APIRouter(prefix="/console", include_in_schema=False)
api_router = APIRouter(prefix="/v1", tags=["console"])

KEEPALIVE_S = 15.0
REPLAY_LIMIT = 100


@router.get("/")
def home() -> Response:
    return back("/console/alerts")


PAGE_SIZE = 100
SearchText = Annotated[str, Query(max_length=200)]


@router.get("/alerts")
def alerts_page(
    request: Request,
    who: Viewer,
    before: CursorId = None,
    status: SearchText = "active",
    team: SearchText = "",
    kind: SearchText = "",
    device: SearchText = "",
    user: SearchText = "",
    q: SearchText = "",
) -> Response:
    """The alert list, newest first, a page at a time (keyset: `before` is the last id of the previous page),
    narrowed by state, team, kind, device hostname, user and free text."""
    runtime = console_of(request).runtime
    search = workflow.AlertSearch(
        status=status.strip() or None,
        team=team.strip() or None,
        kind=kind.strip() or None,
        device=device.strip() or None,
        user=user.strip() or None,
        text=q.strip() or None,
    )
    rows = workflow.list_alerts(runtime.db, who, before_id=before, search=search, limit=PAGE_SIZE + 1)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    filters = {"status": status, "team": team, "kind": kind, "device": device, "user": user, "q": q}
    older = f"/console/alerts?{urlencode(filters | {'before': rows[-1]['id']})}" if more and rows else ""
    newest = f"/console/alerts?{urlencode(filters)}" if before is not None else ""
    searching = any((team, kind, device, user, q)) or before is not None
    return page(
        request,
        "alerts.html",
        alerts=rows,
        status=status,
        filters=filters,
        older=older,
        newest=newest,
        live=not searching,
    )


@router.get("/alerts/{alert_id}")
def alert_detail(request: Request, who: Viewer, alert_id: PathId) -> Response:
    runtime = console_of(request).runtime
    try:
        alert = workflow.get_alert(runtime.db, who, alert_id)
    except workflow.AlertNotFound:
        raise HTTPException(status_code=404, detail="no such alert") from None
    trail = workflow.event_trail(runtime.db, alert)
    return page(request, "alert.html", alert=alert, trail=trail, data_json=json.dumps(alert["data"], indent=2))


def _alert_action(request: Request, who: Principal, alert_id: int, action: str, note: str = "") -> Response:
    state = console_of(request)
    runtime = state.runtime
    now = runtime.clock()
    try:
        if action == "ack":
            after = workflow.acknowledge(runtime.db, who, alert_id, now=now)
        elif action == "close":
            after = workflow.close(runtime.db, who, alert_id, note=note, now=now)
        else:
            after = workflow.toggle_incident(runtime.db, who, alert_id, now=now)
    except workflow.AlertNotFound:
        raise HTTPException(status_code=404, detail="no such alert") from None
    except PermissionError as exc:
        raise HTTPException(status_code=403, detail=str(exc)) from None
    except workflow.AlertStateError as exc:
        return back(f"/console/alerts/{alert_id}", err=str(exc))
    state.bus.announce(Notice(event="update", alert=after))
    return back(f"/console/alerts/{alert_id}", msg={"ack": "Acknowledged.", "close": "Closed."}.get(action, "Saved."))


@router.post("/alerts/{alert_id}/ack")
def acknowledge(request: Request, session: ActorActing, alert_id: PathId) -> Response:
    return _alert_action(request, session.principal, alert_id, "ack")


@router.post("/alerts/{alert_id}/close")
def close(request: Request, session: ActorActing, alert_id: PathId, note: Annotated[str, Form()] = "") -> Response:
    return _alert_action(request, session.principal, alert_id, "close", note)


@router.post("/alerts/{alert_id}/incident")
def incident(request: Request, session: ActorActing, alert_id: PathId) -> Response:
    return _alert_action(request, session.principal, alert_id, "incident")


# -- streams --------------------------------------------------------------------------------------


async def _disconnected(request: Request) -> None:
    """Returns when the client goes away (the streaming response itself only notices on its next write)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _sse(notice: Notice) -> bytes:
    head = f"id: {notice.alert['id']}\n" if notice.event == "alert" else ""
    return (head + f"event: {notice.event}\ndata: {json.dumps(notice.alert, default=str)}\n\n").encode("utf-8")


Recheck = Callable[[], Principal | None]
"""Who the stream's credential speaks for now (None: logged out, disabled, revoked, expired); blocking."""


async def _stream(
    request: Request, who: Principal, recheck: Recheck, *, last_id: int | None, team: str | None
) -> AsyncIterator[bytes]:
    state = console_of(request)
    loop = asyncio.get_running_loop()
    next_check = loop.time() + state.stream_recheck_s

    async def still_allowed() -> bool:
        """False once the caller may no longer see what the stream was opened for (then it ends)."""
        nonlocal next_check
        if loop.time() < next_check:
            return True
        next_check = loop.time() + state.stream_recheck_s
        return await run_in_threadpool(recheck) == who

    def accepts(notice: Notice) -> bool:
        return who.sees(notice.team) and (team is None or notice.team == team)

    sub = state.bus.subscribe(accepts)
    try:
        yield b"retry: 2000\n: connected\n\n"
        if last_id is not None:
            missed = await run_in_threadpool(
                workflow.list_alerts,
                state.runtime.db,
                who,
                status="active",
                team=team,
                after_id=last_id,
                limit=REPLAY_LIMIT,
            )
            for alert in reversed(missed):
                yield _sse(Notice(event="alert", alert=alert))
        gone = asyncio.ensure_future(_disconnected(request))
        getter: asyncio.Future[Notice | None] | None = None
        try:
            keepalive_at = loop.time() + KEEPALIVE_S
            while True:
                getter = asyncio.ensure_future(sub.queue.get())
                wait_s = max(0.0, min(keepalive_at, next_check) - loop.time())
                done, _pending = await asyncio.wait({getter, gone}, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
                if gone in done:
                    getter.cancel()
                    return
                if not await still_allowed():
                    getter.cancel()
                    return
                if getter not in done:
                    getter.cancel()
                    if loop.time() >= keepalive_at:
                        keepalive_at = loop.time() + KEEPALIVE_S
                        yield b": keepalive\n\n"
                    continue
                notice = getter.result()
                if notice is None:
                    return
                yield _sse(notice)
        finally:
            gone.cancel()
            if getter is not None:
                getter.cancel()
    finally:
        state.bus.unsubscribe(sub)


def _stream_response(
    request: Request, who: Principal, recheck: Recheck, last_event_id: str | None, team: str | None
) -> Response:
    last = int(last_event_id) if last_event_id and last_event_id.isdigit() else None
    return StreamingResponse(
        _stream(request, who, recheck, last_id=last, team=team or None),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _session_recheck(request: Request) -> Recheck:
    runtime = console_of(request).runtime
    cookie = request.cookies.get(SESSION_COOKIE, "")
    return lambda: session_principal(runtime.db, cookie, now=runtime.clock()) if cookie else None


@router.get("/alerts-stream")
def console_stream(request: Request, who: Viewer, last_event_id: Annotated[str | None, Header()] = None) -> Response:
    return _stream_response(request, who, _session_recheck(request), last_event_id, None)


def _principal_for_stream(request: Request, authorization: str | None) -> tuple[Principal, Recheck]:
    runtime = console_of(request).runtime
    if authorization:
        token = bearer_token(authorization)
        if token.startswith(USER_TOKEN_PREFIX):

            def personal() -> Principal | None:
                return find_user_token(runtime.db, token, now=runtime.clock())

            found = personal()
            if found is not None:
                return found, personal
        else:

            def api() -> Principal | None:
                found = find_api_token(runtime.db, token, now=runtime.clock())
                return None if found is None else Principal(name=f"api:{found.name}", role=found.role)

            as_api = api()
            if as_api is not None:
                return as_api, api
        raise unauthorized("unknown, expired or revoked token")
    cookie = request.cookies.get(SESSION_COOKIE)
    session = load_session(runtime.db, cookie, now=runtime.clock()) if cookie else None
    if session is None:
        raise unauthorized("a bearer token (API or personal) or a console session is required")
    return session.principal, _session_recheck(request)


STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            "text/event-stream. `event: alert` (with `id:` = alert id) for each new routed alert, "
            "`event: update` when an alert is acknowledged, closed, escalated or marked as incident; "
            "`data:` is the alert as JSON (id, team, device_id, hostname, user, kind, severity, status, "
            "created_at, sla_due_at, escalation_level, rule_name, playbook, url). Comments every 15 s keep "
            "the connection open. Send `Last-Event-ID` to replay active alerts newer than it."
        ),
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    401: {"description": "No valid token or session"},
}


@api_router.get("/alerts/stream", responses=STREAM_DOC, response_class=StreamingResponse)
async def alert_stream(
    request: Request,
    team: Annotated[str | None, Query(description="only this team (must be one the caller sees)")] = None,
    authorization: Annotated[str | None, Header()] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> Response:
    """Live alerts for the tray's supervisor notifications, scoped to the caller's teams."""
    who, recheck = await run_in_threadpool(_principal_for_stream, request, authorization)
    if team and not who.sees(team):
        raise HTTPException(status_code=403, detail="not one of your teams")
    return _stream_response(request, who, recheck, last_event_id, team)
