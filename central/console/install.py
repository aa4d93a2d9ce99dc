"""Wires the console into the FastAPI app: routers, static files, the login redirect, the alerting thread.

Called once by `central.app.create_app` on the main thread.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from central.alerting.bus import AlertBus
from central.alerting.channels import NetworkSender, Sender
from central.alerting.service import AlertingService
from central.auth.passwords import HashGate
from central.console import (
    account_pages,
    admin_pages,
    alert_pages,
    delivery_pages,
    device_pages,
    fleet_pages,
    login,
    policy_pages,
    report_pages,
)
from central.console.deps import LoginRequired, back, page
from central.console.limits import BodyLimits, ConsoleBodyLimit
from central.console.state import ConsoleState
from central.http.errors import describe_errors
from central.retention import RetentionScheduler
from central.runtime import Runtime
from central.store import exception_requests, quarantine

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
        sender=sender or NetworkSender(allow_internal=runtime.settings.allow_internal_webhooks),
        extra_tasks=[
            lambda: exception_requests.import_requests(runtime.db),
            lambda: quarantine.import_outcomes(runtime.db, now=runtime.clock()),
            scheduler.tick,
        ],
        wake=runtime.alert_wake,
    )
    state = ConsoleState(
        runtime=runtime,
        bus=bus,
        alerting=service,
        retention=scheduler,
        hash_gate=HashGate(runtime.settings.max_concurrent_password_hashes),
    )
    app.state.console = state
    settings = runtime.settings
    app.add_middleware(
        ConsoleBodyLimit,
        limits=BodyLimits(
            max_bytes=settings.max_console_body_bytes,
            max_login_bytes=settings.max_login_body_bytes,
            max_fields=settings.max_console_fields,
            max_field_bytes=settings.max_console_field_bytes,
            timeout_s=settings.console_body_timeout_s,
        ),
    )
    app.mount("/console/static", StaticFiles(directory=str(STATIC)), name="console-static")
    for module in (
        login,
        alert_pages,
        device_pages,
        fleet_pages,
        delivery_pages,
        admin_pages,
        policy_pages,
        report_pages,
        account_pages,
    ):
        app.include_router(module.router)
    app.include_router(alert_pages.api_router)

    @app.exception_handler(LoginRequired)
    async def _login(_request: Request, exc: LoginRequired) -> Response:
        return back(f"/console/login?next={quote(exc.next_url, safe='/')}")

    previous_invalid = app.exception_handlers.get(RequestValidationError)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        # A console form or link with a wrong-typed field: a page with a message, not raw JSON.
        if request.url.path.startswith("/console"):
            problems = describe_errors(exc.errors(), skip_loc=1)
            detail = f"Some values in the request were not valid ({problems}). Go back and correct them."
            return page(request, "error.html", status_code=422, status=422, detail=detail)
        if previous_invalid is not None:
            answer: Response = await previous_invalid(request, exc)  # type: ignore[misc]
            return answer
        return JSONResponse({"detail": "invalid request: " + describe_errors(exc.errors())}, status_code=422)

    previous_overflow = app.exception_handlers.get(OverflowError)

    @app.exception_handler(OverflowError)
    async def _overflow(request: Request, exc: OverflowError) -> Response:
        if request.url.path.startswith("/console"):
            detail = "A number or date in the request is out of range."
            return page(request, "error.html", status_code=422, status=422, detail=detail)
        if previous_overflow is not None:
            answer: Response = await previous_overflow(request, exc)  # type: ignore[misc]
            return answer
        return JSONResponse({"detail": "a number or date in the request is out of range"}, status_code=422)

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
