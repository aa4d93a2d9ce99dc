"""Webhook and e-mail deliveries of alerts: what was sent, what is being retried and what gave up, with the last
error; admins send a failed message again.

Handlers run in worker threads; the list is scoped to the viewer's teams.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from starlette.responses import Response

from central.alerting import outbox
from central.console.deps import AdminActing, CursorId, PathId, Viewer, back, page
from central.console.state import console_of

router = APIRouter(prefix="/console", include_in_schema=False)

PAGE_SIZE = 100
STATES = ("undelivered", "failed", "retrying", "delivered", "")


@router.get("/deliveries")
def deliveries_page(
    request: Request,
    who: Viewer,
    state: Annotated[str, Query(max_length=16)] = "undelivered",
    before: CursorId = None,
) -> Response:
    runtime = console_of(request).runtime
    chosen = state if state in STATES else "undelivered"
    rows = outbox.list_deliveries(
        runtime.db, teams=who.team_filter(), state=chosen or None, before_id=before, limit=PAGE_SIZE + 1
    )
    older = f"/console/deliveries?state={chosen}&before={rows[PAGE_SIZE - 1]['id']}" if len(rows) > PAGE_SIZE else ""
    return page(request, "deliveries.html", deliveries=rows[:PAGE_SIZE], state=chosen, older=older)


@router.post("/deliveries/{delivery_id}/retry")
def retry(request: Request, session: AdminActing, delivery_id: PathId) -> Response:
    state = console_of(request)
    runtime = state.runtime
    done = outbox.retry_now(runtime.db, delivery_id, actor=session.principal.name, now=runtime.clock())
    if done is None:
        raise HTTPException(status_code=404, detail="no such undelivered message")
    state.alerting.wake()
    return back(
        "/console/deliveries", msg=f"Message #{delivery_id} (alert #{done['alert_id']}) will be sent again now."
    )
