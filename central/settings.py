"""Settings of the central endpoint, built once by the CLI (or a test) and passed to `create_app`.

A frozen value; read from any thread.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

import platformdirs


def default_data_dir() -> Path:
    """Where `deskwarden server` keeps its database and signing key unless told otherwise."""
    return Path(platformdirs.user_data_dir("DeskWarden", appauthor=False)) / "server"


def env_flag(name: str, default: bool) -> bool:
    """An on/off setting from the environment: 1/true/yes/on, 0/false/no/off; unset or empty is `default`."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be 1/true/yes/on or 0/false/no/off, not {value!r}")


@dataclass(frozen=True)
class ServerSettings:
    data_dir: Path
    db_url: str | None = None
    """SQLAlchemy URL; None means the embedded SQLite file data_dir/central.db."""
    host: str = "127.0.0.1"
    port: int = 8443
    max_concurrent_ingest: int = 8
    """Event batches processed at once; beyond this `POST /v1/events` answers 429 with Retry-After."""
    retry_after_s: int = 2
    max_body_bytes: int = 4 * 1024 * 1024
    """Cap on a request body after gzip decompression; larger bodies get 413."""
    offline_after: timedelta = timedelta(minutes=3)
    """A device not seen for this long is reported offline by the read API."""
    log_level: str = "info"
    workers: int = 1
    """uvicorn worker processes; more than one needs PostgreSQL (SQLite has a single writer)."""
    max_console_body_bytes: int = 2 * 1024 * 1024
    """Cap on a console request body (forms, the policy editor), checked before any parsing; larger is 413."""
    max_login_body_bytes: int = 8 * 1024
    """Cap on the (unauthenticated) login form's body."""
    max_console_fields: int = 100
    """Fields in one console form; more is 413."""
    max_console_field_bytes: int = 1024 * 1024
    """One form field, URL-encoded; more is 413."""
    console_body_timeout_s: float = 30.0
    """A console request body still arriving after this long is refused with 408."""
    max_concurrent_password_hashes: int = 4
    """argon2 computations at once per process (64 MiB each); twice as many more may wait, beyond that 503."""
    allow_internal_webhooks: bool = field(default_factory=lambda: env_flag("DESKWARDEN_ALLOW_INTERNAL_WEBHOOKS", False))
    """Let webhook URLs point at loopback, private and link-local addresses (refused by default: SSRF)."""
    api_docs: bool = field(default_factory=lambda: env_flag("DESKWARDEN_API_DOCS", True))
    """Serve the interactive API docs (/docs, /redoc) and /openapi.json; off: those paths answer 404."""
    forwarded_allow_ips: str = field(default_factory=lambda: os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1"))
    """Peers whose X-Forwarded-For / X-Forwarded-Proto uvicorn believes (comma-separated addresses or networks,
    `*` for any): the reverse proxy's address. Login throttling counts failures per client address from it."""

    @property
    def database_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite:///{self.data_dir / 'central.db'}"

    @property
    def signing_key_path(self) -> Path:
        return self.data_dir / "policy_signing.key"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def to_json(self) -> str:
        """For handing the settings to worker processes (through their environment)."""
        values = asdict(self)
        values["data_dir"] = str(self.data_dir)
        values["offline_after"] = self.offline_after.total_seconds()
        return json.dumps(values)

    @classmethod
    def from_json(cls, text: str) -> ServerSettings:
        values = json.loads(text)
        values["data_dir"] = Path(values["data_dir"])
        values["offline_after"] = timedelta(seconds=values["offline_after"])
        return cls(**values)
