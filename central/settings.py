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


AGENT_BODY_TIMEOUT_ENV = "DESKWARDEN_AGENT_BODY_TIMEOUT_S"
INGEST_PER_DEVICE_ENV = "DESKWARDEN_INGEST_PER_DEVICE"


def env_number(name: str, default: float) -> float:
    """A number from the environment; unset or empty is `default`. Range checks are the settings' own."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, not {raw!r}") from None


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
    agent_body_timeout_s: float = field(default_factory=lambda: env_number(AGENT_BODY_TIMEOUT_ENV, 30.0))
    """An agent request body (event batch, heartbeat, enrolment) still arriving after this long is refused with 408
    and the connection closed: a 1 MB batch needs 35 KB/s. Environment: DESKWARDEN_AGENT_BODY_TIMEOUT_S."""
    ingest_per_device: int = field(default_factory=lambda: int(env_number(INGEST_PER_DEVICE_ENV, 2)))
    """Event batches one device may have in flight; beyond it 429. An agent sends one at a time, the second slot
    covers a retry racing a request the server still holds. Environment: DESKWARDEN_INGEST_PER_DEVICE."""
    forwarded_allow_ips: str = field(default_factory=lambda: os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1"))
    """Peers whose X-Forwarded-For / X-Forwarded-Proto uvicorn believes (comma-separated addresses or networks,
    `*` for any): the reverse proxy's address. Login throttling counts failures per client address from it."""

    def __post_init__(self) -> None:
        """Refuse settings the endpoint cannot run with, naming the setting (CLI flags and environment alike)."""
        checks: list[tuple[bool, str]] = [
            (1 <= self.port <= 65535 or self.port == 0, "port must be between 1 and 65535"),
            (self.workers >= 1, "workers must be at least 1"),
            (self.max_concurrent_ingest >= 1, "max_concurrent_ingest must be at least 1"),
            (self.retry_after_s >= 1, "retry_after_s must be at least 1"),
            (self.max_body_bytes >= 1024, "max_body_bytes must be at least 1024"),
            (
                0.1 <= self.agent_body_timeout_s <= 3600,  # also refuses NaN
                f"agent body timeout ({AGENT_BODY_TIMEOUT_ENV}) must be between 0.1 and 3600 seconds",
            ),
            (
                1 <= self.ingest_per_device <= 64,
                f"batches in flight per device ({INGEST_PER_DEVICE_ENV}) must be between 1 and 64",
            ),
            (0.1 <= self.console_body_timeout_s <= 3600, "console_body_timeout_s must be between 0.1 and 3600"),
            (self.max_concurrent_password_hashes >= 1, "max_concurrent_password_hashes must be at least 1"),
            (bool(self.forwarded_allow_ips.strip()), "forwarded_allow_ips must name at least one address or '*'"),
        ]
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise ValueError("invalid server settings: " + "; ".join(problems))

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
