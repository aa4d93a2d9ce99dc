"""What the `deskwarden server`, `admin` and `policy` sub-commands do; plain functions, no argument parsing.

Called on the CLI's main thread.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import TYPE_CHECKING, Literal

from central.runtime import open_store, prepare
from central.settings import ServerSettings
from central.store import devices, policies, tokens, unlock_tokens
from central.store.policies import InvalidPolicyError
from policy_client.schema import utc_now

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger(__name__)

__all__ = [
    "ApprovalRequired",
    "InvalidPolicyError",
    "create_api_token",
    "create_user",
    "issue_enroll_token",
    "issue_unlock_token",
    "list_tokens",
    "publish_policy",
    "reset_password",
    "revoke_api_token",
    "revoke_user_token",
    "run_server",
]


DEFAULT_UNLOCK_TTL = timedelta(hours=8)
"""How long an unlock token may wait to be entered at the desk, unless the caller says otherwise."""

SETTINGS_ENV = "DESKWARDEN_SERVER_SETTINGS"
"""How `run_server` hands its settings to uvicorn worker processes (see `app_from_environment`)."""


def run_server(settings: ServerSettings) -> None:
    """Serve the endpoint with uvicorn until interrupted (creates key, schema and policy on first start).

    `settings.workers` > 1 runs that many uvicorn worker processes (PostgreSQL only). uvicorn picks
    uvloop and httptools when they are installed.
    """
    import uvicorn

    from central.safe_text import install_single_line_logs

    install_single_line_logs()  # agent-supplied names (hostnames...) never break a log line
    options: dict[str, object] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": 10,
        # Behind a reverse proxy, the client address (login throttling, audit) comes from X-Forwarded-For,
        # believed only from these peers.
        "proxy_headers": True,
        "forwarded_allow_ips": settings.forwarded_allow_ips,
    }
    if settings.workers > 1:
        if settings.is_sqlite:
            raise ValueError("several workers need PostgreSQL (--db postgresql+psycopg://...); SQLite has one writer")
        prepare(settings).db.dispose()  # first-start work (schema, key, policy) once, before the workers start
        os.environ[SETTINGS_ENV] = settings.to_json()
        where = f"http://{settings.host}:{settings.port}"
        log.info("DeskWarden endpoint listening on %s with %s workers", where, settings.workers)
        uvicorn.run("central.commands:app_from_environment", factory=True, workers=settings.workers, **options)  # type: ignore[arg-type]
        return

    from central.app import create_app

    app = create_app(settings)
    log.info("DeskWarden endpoint listening on http://%s:%s", settings.host, settings.port)
    uvicorn.run(app, **options)  # type: ignore[arg-type]


def app_from_environment() -> FastAPI:
    """uvicorn factory for worker processes: the app for the settings `run_server` put in the environment."""
    from central.app import create_app
    from central.safe_text import install_single_line_logs

    install_single_line_logs()
    return create_app(ServerSettings.from_json(os.environ[SETTINGS_ENV]))


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


def issue_unlock_token(
    settings: ServerSettings,
    device_id: str,
    *,
    scope: str = "quit",
    minutes: int = 60,
    ttl: timedelta = DEFAULT_UNLOCK_TTL,
    actor: str = "cli",
) -> str:
    """A signed unlock token for one device (`quit`: its tray helper may stay stopped for `minutes`; `uninstall`).

    The device's service verifies it offline with the policy key it pinned at enrolment, until `ttl` from now.
    The token is registered and audit-logged (`device.unlock_token`). Raises ValueError for an unknown device,
    scope, `minutes` outside 1..10080 for `quit`, or a `ttl` not within 30 days.
    """
    runtime = prepare(settings)
    try:
        issued = unlock_tokens.issue(
            runtime.db,
            runtime.signer,
            device_id,
            scope=scope,
            minutes=minutes,
            ttl=ttl,
            actor=actor,
            now=utc_now(),
        )
    except unlock_tokens.UnknownDevice:
        raise ValueError(f"no device {device_id!r}") from None
    finally:
        runtime.db.dispose()
    log.info("issued unlock token %s (%s) for device %s", issued.token.token_id, issued.token.scope, issued.device_id)
    return issued.text


def revoke_device(settings: ServerSettings, device_id: str, *, actor: str = "cli") -> bool:
    """Refuse a device's credential from now on (a lost or re-imaged PC); its agent asks to be re-enrolled."""
    from central.store import audit

    db = open_store(settings)
    try:
        now = utc_now()
        revoked = devices.revoke_device(db, device_id, now=now)
        if revoked:
            with db.write() as conn:
                audit.record(conn, actor=actor, action="device.revoke", target=device_id, now=now)
        return revoked
    finally:
        db.dispose()


def create_api_token(
    settings: ServerSettings, name: str, role: Literal["admin", "auditor"], *, ttl: timedelta | None = None
) -> str:
    """A read-API token, valid until `ttl` from now (None: until revoked); audit-logged (`api-token.create`)."""
    from central.store import audit

    db = open_store(settings)
    try:
        now = utc_now()
        token = tokens.create_api_token(db, name, role, now=now, ttl=ttl, created_by="cli")
        with db.write() as conn:
            audit.record(
                conn,
                actor="cli",
                action="api-token.create",
                target=f"api-token:{name}",
                now=now,
                after={"role": role, "expires_at": None if ttl is None else (now + ttl).isoformat()},
            )
        return token
    finally:
        db.dispose()


class ApprovalRequired(RuntimeError):
    """The two-person rule is on: the policy was saved as a draft that a second admin must approve."""

    def __init__(self, draft_id: int) -> None:
        super().__init__(
            f"the two-person rule is on: saved as policy draft #{draft_id}; "
            "a second admin must approve it on the console's Policy page before agents get it"
        )
        self.draft_id = draft_id


def publish_policy(settings: ServerSettings, document_bytes: bytes, *, author: str = "cli", summary: str = "") -> int:
    """Validate a policy and publish it through change control; return the published version.

    Like a console publish: audited (`policy.draft`, `policy.publish`, via "cli"), and approved USB exceptions
    still in force are kept. With the two-person rule on, it is saved as a draft for a second admin and
    `ApprovalRequired` (a RuntimeError) is raised. Raises `InvalidPolicyError` (a ValueError) listing every
    problem when the document is invalid. A version in the document that is not newer than the current one is
    replaced by current + 1.
    """
    from central.store import policy_changes
    from central.store.console_config import load_config

    document = policies.parse_policy(document_bytes)
    runtime = prepare(settings)
    try:
        submitted = policy_changes.submit(
            runtime.db,
            runtime.signer,
            document,
            actor=author,
            summary=summary or "policy file published with the CLI",
            two_person=load_config(runtime.db).two_person_rule,
            now=utc_now(),
            via="cli",
        )
    finally:
        runtime.db.dispose()
    if submitted.published_version is None:
        raise ApprovalRequired(submitted.draft_id)
    return submitted.published_version


def create_user(settings: ServerSettings, name: str, *, role: str, teams: list[str], password: str | None) -> None:
    """Create a console user; when `password` is None, generate one and print it once on stdout.

    Creating an admin raises the `governance.admin_granted` alert, as granting the role in the console does. The
    CLI runs on the endpoint's host with its data directory (and signing key), so it is not held for a second
    admin: the alert is how other admins learn of it (and how the first admin of a new endpoint is recorded).
    Raises ValueError (unknown role, supervisor without team, short password, existing name).
    """
    from central import change_control
    from central.auth.passwords import generate_password
    from central.store import audit

    chosen = password if password is not None else generate_password()
    db = open_store(settings)
    try:
        now = utc_now()
        created, _held = change_control.create_user(
            db,
            name,
            role=role,
            teams=teams,
            password=chosen,
            actor="cli",
            two_person=False,
            now=now,
        )
        with db.write() as conn:
            audit.record(
                conn,
                actor="cli",
                action="user.create",
                target=f"user:{created.name}",
                now=now,
                after={"role": created.role, "teams": sorted(created.teams)},
            )
    finally:
        db.dispose()
    if password is None:
        print(f"password for {name}: {chosen}")


def list_tokens(settings: ServerSettings) -> list[str]:
    """One line per API token and personal token: kind, id, owner or name, role, state, created, expires."""
    from central.auth import users

    db = open_store(settings)
    try:
        now = utc_now()
        lines = [
            f"api\t{t.id}\t{t.name}\t{t.role}\t{t.state(now)}\t{t.created_at:%Y-%m-%d %H:%M}\t"
            f"{'never' if t.expires_at is None else f'{t.expires_at:%Y-%m-%d %H:%M}'}"
            for t in tokens.list_api_tokens(db)
        ]
        lines += [
            f"personal\t{t.token_id}\t{t.user}\t-\t{t.state(now)}\t{t.created_at:%Y-%m-%d %H:%M}\t"
            f"{'never' if t.expires_at is None else f'{t.expires_at:%Y-%m-%d %H:%M}'}"
            for t in users.list_user_tokens(db)
        ]
        return lines
    finally:
        db.dispose()


def revoke_api_token(settings: ServerSettings, token_id: int, *, actor: str = "cli") -> bool:
    """Refuse a read-API token from now on (by the id `list_tokens` shows); audit-logged (`api-token.revoke`)."""
    from central.store import audit

    db = open_store(settings)
    try:
        now = utc_now()
        revoked = tokens.revoke_api_token(db, token_id, now=now)
        if revoked is not None:
            with db.write() as conn:
                audit.record(
                    conn,
                    actor=actor,
                    action="api-token.revoke",
                    target=f"api-token:{revoked.name}",
                    now=now,
                    before={"id": revoked.id, "role": revoked.role},
                )
        return revoked is not None
    finally:
        db.dispose()


def revoke_user_token(settings: ServerSettings, token_id: str, *, actor: str = "cli") -> bool:
    """Refuse a personal token from now on (by the id `list_tokens` shows); audit-logged (`token.revoke`)."""
    from central.auth import users
    from central.store import audit

    db = open_store(settings)
    try:
        now = utc_now()
        revoked = users.revoke_user_token(db, token_id, now=now)
        if revoked is not None:
            with db.write() as conn:
                audit.record(
                    conn,
                    actor=actor,
                    action="token.revoke",
                    target=f"user:{revoked.user}",
                    now=now,
                    before={"token_id": revoked.token_id},
                )
        return revoked is not None
    finally:
        db.dispose()


def reset_password(settings: ServerSettings, name: str, *, password: str | None, actor: str = "cli") -> None:
    """Set a console user's password and end their sessions; when `password` is None, generate one and print it
    once on stdout. Audit-logged (`user.password_reset`). Raises LookupError (unknown user), ValueError (rules).
    """
    from central.auth import users
    from central.auth.passwords import generate_password
    from central.store import audit

    chosen = password if password is not None else generate_password()
    db = open_store(settings)
    try:
        user_id = users.user_id_by_name(db, name)
        if user_id is None:
            raise LookupError(f"no console user {name!r}")
        now = utc_now()
        users.reset_password(db, user_id, new=chosen, now=now)
        with db.write() as conn:
            audit.record(conn, actor=actor, action="user.password_reset", target=f"user:{name}", now=now)
    finally:
        db.dispose()
    if password is None:
        print(f"password for {name}: {chosen}")
