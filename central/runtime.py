"""Everything a running endpoint shares between requests: settings, database, signing key, limiter, clock.

Built once by `prepare` (app start-up or a CLI command); immutable afterwards and shared by all threads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from central.auth.device_credentials import DeviceCredentials
from central.settings import ServerSettings
from central.signing import PolicySigner, load_or_create_signer
from central.store import console_config, policies
from central.store.engine import Database, open_database
from central.store.migrations import migrate
from central.store.sealing import KEY_FILE, load_or_create_box, secure_data_dir
from policy_client import resources
from policy_client.schema import PolicyDocument, utc_now

log = logging.getLogger(__name__)

DEFAULT_POLICY_PATH = resources.assets_dir() / "policy" / "default.json"

Clock = Callable[[], datetime]


class IngestLimiter:
    """Counts batches being processed; `try_acquire` refuses beyond the limit instead of queueing."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("max_concurrent_ingest must be at least 1")
        self.limit = limit
        self._busy = 0
        self._lock = threading.Lock()

    def try_acquire(self) -> bool:
        with self._lock:
            if self._busy >= self.limit:
                return False
            self._busy += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._busy -= 1

    @property
    def busy(self) -> int:
        return self._busy


@dataclass(frozen=True)
class Runtime:
    settings: ServerSettings
    db: Database
    signer: PolicySigner
    limiter: IngestLimiter
    clock: Clock = field(default=utc_now)
    credentials: DeviceCredentials = field(default_factory=DeviceCredentials, compare=False)
    """Verified device credentials of this process, dropped when a device is revoked (`authenticate_device`)."""
    alert_wake: threading.Event = field(default_factory=threading.Event, compare=False)
    """Set after an ingest commit wrote alerts; this process's alerting thread waits on it (`AlertingService`)."""


def open_store(settings: ServerSettings) -> Database:
    """Secure the data directory, open and migrate the database, seal any secret still stored in clear (what
    every CLI command does first)."""
    secure_data_dir(settings.data_dir)
    box = load_or_create_box(settings.data_dir / KEY_FILE)
    db = open_database(settings.database_url, pool_size=settings.max_concurrent_ingest + 4, box=box)
    migrate(db)
    console_config.seal_stored_secrets(db)
    return db


def prepare(settings: ServerSettings, *, clock: Clock = utc_now) -> Runtime:
    """Migrate, load or create the signing key, and publish version 1 of the policy when there is none."""
    db = open_store(settings)
    signer = load_or_create_signer(settings.signing_key_path)
    if policies.current_policy(db) is None:
        document = _initial_policy()
        published = policies.publish_first(db, signer, document, author="first-start", now=clock())
        if published is not None:
            log.info("published initial policy version %s", published.version)
    return Runtime(
        settings=settings, db=db, signer=signer, limiter=IngestLimiter(settings.max_concurrent_ingest), clock=clock
    )


def _initial_policy(path: Path = DEFAULT_POLICY_PATH) -> PolicyDocument:
    if path.is_file():
        try:
            bundled = policies.parse_policy(path.read_bytes())
            return PolicyDocument.model_validate(bundled.model_dump() | {"version": 1})
        except (OSError, policies.InvalidPolicyError) as exc:
            log.warning("ignoring bundled default policy %s: %s", path, exc)
    return PolicyDocument(version=1)
