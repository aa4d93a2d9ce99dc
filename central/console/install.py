"""Wires the console into the FastAPI app: routers, static files, the login redirect, the alerting thread.

Called once by `central.app.create_app` on the main thread.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from central.alerting.bus import AlertBus
from central.alerting.channels import Sender
from central.alerting.service import AlertingService
from central.console import admin_pages, alert_pages, fleet_pages, login, report_pages
from central.console.deps import LoginRequired, back, page
from central.console.state import ConsoleState
from central.retention import RetentionScheduler
from central.runtime import Runtime
from central.store import exception_requests

STATIC = Path(__file__).parent / "static"


def install_console(
    app: FastAPI,
    runtime: Runtime,
    *,
    poll_s: float = 0.5,
    sender: Sender | None = None,
    retention_every: timedelta = timedelta(hours=1),
) -> ConsoleState:
    bus = AlertBus(runtime.db)
    scheduler = RetentionScheduler(runtime.db, clock=runtime.clock, every=retention_every)
    service = AlertingService(
        runtime.db,
        bus,
        clock=runtime.clock,
        offline_after=runtime.settings.offline_after,
        poll_s=poll_s,
        sender=sender,
        extra_tasks=[lambda: exception_requests.import_requests(runtime.db), scheduler.tick],
    )
    state = ConsoleState(runtime=runtime, bus=bus, alerting=service, retention=scheduler)
    app.state.console = state
    app.mount("/console/static", StaticFiles(directory=str(STATIC)), name="console-static")
    for module in (login, alert_pages, fleet_pages, admin_pages, report_pages):
        app.include_router(module.router)
    app.include_router(alert_pages.api_router)

    @app.exception_handler(LoginRequired)
    async def _login(_request: Request, exc: LoginRequired) -> Response:
        return back(f"/console/login?next={exc.next_url}")

    previous = app.exception_handlers.get(StarletteHTTPException)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith("/console"):
            return page(request, "error.html", status_code=exc.status_code, status=exc.status_code, detail=exc.detail)
        if previous is not None:
            answer: Response = await previous(request, exc)  # type: ignore[misc]
            return answer
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return back("/console/alerts")

    return state
