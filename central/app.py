"""Builds the endpoint's FastAPI application; called once by `run_server` (or a test) on the main thread."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from central.http import agent, read
from central.http.errors import install_error_handlers
from central.runtime import Clock, prepare
from central.settings import ServerSettings
from policy_client.schema import SCHEMA_VERSION, utc_now

log = logging.getLogger(__name__)


def create_app(settings: ServerSettings, *, clock: Clock = utc_now) -> FastAPI:
    """Migrate the store, make sure a signing key and a policy exist, and wire the routers."""
    runtime = prepare(settings, clock=clock)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        runtime.db.dispose()

    app = FastAPI(
        lifespan=lifespan,
        title="DeskWarden central endpoint",
        version=f"1.{SCHEMA_VERSION}",
        summary="Agent API (enrolment, signed policy, event ingest, heartbeat) and read API.",
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    app.include_router(agent.router)
    app.include_router(read.router)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
