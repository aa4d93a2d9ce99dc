"""Builds the endpoint's FastAPI application; called once by `run_server` (or a test) on the main thread."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from central.alerting.channels import Sender
from central.console.install import install_console
from central.console.state import ConsoleState
from central.http import agent, commands, read
from central.http.errors import install_error_handlers
from central.http.headers import SecurityHeaders
from central.runtime import Clock, prepare
from central.settings import ServerSettings
from policy_client.schema import SCHEMA_VERSION, utc_now

log = logging.getLogger(__name__)

REQUEST_THREADS = 12
"""Worker threads for blocking request work (anyio's default is 40). The work holds the GIL most of the time or
waits on the one SQLite writer, so 40 threads mostly convoy on the GIL; see docs/bench/fleet.md for the measurement.
"""


def create_app(
    settings: ServerSettings,
    *,
    clock: Clock = utc_now,
    console: bool = True,
    alert_poll_s: float = 0.5,
    alert_sender: Sender | None = None,
    request_threads: int = REQUEST_THREADS,
) -> FastAPI:
    """Migrate the store, make sure a signing key and a policy exist, and wire the routers.

    `console` adds the supervisor console, the alert stream and the alerting thread (routing,
    deliveries, escalation, derived alerts, retention), started and stopped with the app. `request_threads` caps
    the worker threads that run blocking request work (the event loop's default thread limiter).
    """
    runtime = prepare(settings, clock=clock)
    console_state: ConsoleState | None = None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = request_threads
        if console_state is not None:
            console_state.alerting.start()
        try:
            yield
        finally:
            if console_state is not None:
                console_state.alerting.stop()
            runtime.db.dispose()

    app = FastAPI(
        lifespan=lifespan,
        title="DeskWarden central endpoint",
        version=f"1.{SCHEMA_VERSION}",
        summary="Agent API (enrolment, signed policy, event ingest, heartbeat), read API and live alert stream.",
        docs_url="/docs" if settings.api_docs else None,
        redoc_url="/redoc" if settings.api_docs else None,
        openapi_url="/openapi.json" if settings.api_docs else None,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    app.include_router(agent.router)
    app.include_router(commands.router)
    app.include_router(read.router)
    if console:
        console_state = install_console(app, runtime, poll_s=alert_poll_s, sender=alert_sender)
    app.add_middleware(SecurityHeaders)  # added last: outermost, so even the console's early refusals carry it

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
