"""What the `deskwarden server`, `admin` and `policy` sub-commands do; plain functions, no argument parsing.

Called on the CLI's main thread.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Literal

from central.runtime import open_store, prepare
from central.settings import ServerSettings
from central.store import policies, tokens
from central.store.policies import InvalidPolicyError
from policy_client.schema import utc_now

log = logging.getLogger(__name__)

__all__ = ["InvalidPolicyError", "create_api_token", "issue_enroll_token", "publish_policy", "run_server"]


def run_server(settings: ServerSettings) -> None:
    """Serve the endpoint with uvicorn until interrupted (creates key, schema and policy on first start)."""
    import uvicorn

    from central.app import create_app

    app = create_app(settings)
    log.info("DeskWarden endpoint listening on http://%s:%s", settings.host, settings.port)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


def issue_enroll_token(settings: ServerSettings, team: str, ttl: timedelta, *, max_uses: int | None = None) -> str:
    """A per-team enrolment token, usable by many devices until it expires (or `max_uses` is reached)."""
    db = open_store(settings)
    try:
        return tokens.issue_enroll_token(db, team, ttl=ttl, now=utc_now(), max_uses=max_uses)
    finally:
        db.dispose()


def revoke_enroll_token(settings: ServerSettings, token: str) -> bool:
    db = open_store(settings)
    try:
        return tokens.revoke_enroll_token(db, token, now=utc_now())
    finally:
        db.dispose()


def create_api_token(settings: ServerSettings, name: str, role: Literal["admin", "auditor"]) -> str:
    db = open_store(settings)
    try:
        return tokens.create_api_token(db, name, role, now=utc_now())
    finally:
        db.dispose()


def publish_policy(settings: ServerSettings, document_bytes: bytes, *, author: str = "cli") -> int:
    """Validate, number, sign and store a policy; return the published version.

    Raises `InvalidPolicyError` (a ValueError) listing every problem when the document is invalid.
    A version in the document that is not newer than the current one is replaced by current + 1.
    """
    document = policies.parse_policy(document_bytes)
    runtime = prepare(settings)
    try:
        published = policies.publish(runtime.db, runtime.signer, document, author=author, now=utc_now())
        return published.version
    finally:
        runtime.db.dispose()
