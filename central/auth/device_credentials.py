"""Verified device credentials, cached in the process so most agent requests authenticate without a query.

Called from request worker threads (one instance per `Runtime`, shared by them). Only revocation takes a credential
back (a credential's hash is written once, with its device's row), and the cache drops everything when it sees one:
- at once, when this process revoked a device (`devices.revocations_in_this_process`);
- within `recheck_s` (1 s), when another process or host did: one thread at a time compares the count of revoked
  devices (`devices.revocation_marker`, one statement) once per `recheck_s`.
The writes do not rely on it: ingest and the heartbeat refuse a revoked device in their own transaction, so what a
stale entry can still get in that second is a read of the signed, fleet-wide policy.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from central.store import devices
from central.store.devices import DeviceAuth
from central.store.engine import Database
from central.store.tokens import token_hash

log = logging.getLogger(__name__)

MAX_ENTRIES = 50_000
RECHECK_S = 1.0


class DeviceCredentials:
    """A bounded map from credential hash to device, emptied whenever a device is revoked (see the module)."""

    def __init__(
        self,
        *,
        max_entries: int = MAX_ENTRIES,
        recheck_s: float = RECHECK_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max = max_entries
        self._recheck_s = recheck_s
        self._monotonic = monotonic
        self._entries: dict[str, DeviceAuth] = {}
        self._lock = threading.Lock()
        self._epoch = 0
        """Counts the clears: a lookup that started before one must not put its (maybe revoked) answer back."""
        self._seen_here = devices.revocations_in_this_process()
        self._marker: int | None = None
        self._checked_at = float("-inf")

    def find(self, db: Database, credential: str) -> DeviceAuth | None:
        """The device holding `credential`, or None when it is unknown or revoked."""
        self._notice_revocations(db)
        key = token_hash(credential)
        device = self._entries.get(key)
        if device is not None:
            return device
        epoch = self._epoch
        device = devices.find_device_by_hash(db, key)
        if device is not None:
            with self._lock:
                if epoch == self._epoch:
                    if len(self._entries) >= self._max:
                        del self._entries[next(iter(self._entries))]  # the oldest entry
                    self._entries[key] = device
        return device

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._epoch += 1

    def __len__(self) -> int:
        return len(self._entries)

    def _notice_revocations(self, db: Database) -> None:
        here = devices.revocations_in_this_process()
        if here != self._seen_here:
            with self._lock:
                self._seen_here = here
                self._entries.clear()
                self._epoch += 1
        now = self._monotonic()
        if now - self._checked_at < self._recheck_s or not self._lock.acquire(blocking=False):
            return  # fresh enough, or another thread is checking right now
        try:
            self._checked_at = now
            # Read under the lock: a clear and the epoch that guards lookups move together with the marker.
            # The first read clears too: a lookup that raced a revocation this read already counts must not land.
            marker = devices.revocation_marker(db)
            if marker != self._marker:
                if self._marker is not None:
                    log.info("a device was revoked elsewhere; dropping %s cached credentials", len(self._entries))
                self._entries.clear()
                self._epoch += 1
            self._marker = marker
        finally:
            self._lock.release()
