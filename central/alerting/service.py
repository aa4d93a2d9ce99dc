"""The alerting thread of one API process: routes new alerts, delivers the outbox, escalates, raises derived alerts.

Started and stopped by the app's lifespan; `alerts_committed(runtime)` (any thread) wakes it at once
after an ingest commit that wrote alerts, so live delivery does not wait for the next poll.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from central.alerting import derived, outbox
from central.alerting.bus import AlertBus
from central.alerting.channels import NetworkSender, Sender
from central.alerting.router import AlertRouter
from central.store.console_config import load_config
from central.store.engine import Database

log = logging.getLogger(__name__)

_services: dict[int, AlertingService] = {}
_registry_lock = threading.Lock()


def alerts_committed(runtime: object) -> None:
    """Wake the alerting thread serving `runtime` (the ingest path calls this after committing alerts)."""
    service = _services.get(id(runtime))
    if service is not None:
        service.wake()


class AlertingService:
    def __init__(
        self,
        db: Database,
        bus: AlertBus,
        *,
        clock: Callable[[], datetime],
        offline_after: timedelta,
        poll_s: float = 0.5,
        housekeeping_s: float = 5.0,
        sender: Sender | None = None,
        extra_tasks: list[Callable[[], object]] | None = None,
    ) -> None:
        self.db = db
        self.bus = bus
        self.router = AlertRouter(db, bus, clock=clock)
        self._clock = clock
        self._offline_after = offline_after
        self._poll_s = poll_s
        self._housekeeping_s = housekeeping_s
        self._sender = sender or NetworkSender()
        self._extra = list(extra_tasks or [])
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._owner: int | None = None

    def start(self, *, owner: object | None = None) -> None:
        self.bus.start()
        if owner is not None:
            self._owner = id(owner)
            with _registry_lock:
                _services[self._owner] = self
        self._thread = threading.Thread(target=self._run, name="alerting", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._owner is not None:
            with _registry_lock:
                _services.pop(self._owner, None)
        self.bus.stop()

    def wake(self) -> None:
        self._wake.set()

    def tick(self, *, housekeeping: bool = True) -> None:
        """One pass; the thread calls it, and so can tests."""
        config = load_config(self.db)
        self.router.route_pending(config=config)
        if housekeeping:
            now = self._clock()
            derived.raise_offline(self.db, now=now, after=timedelta(minutes=config.offline_alert_minutes))
            derived.raise_shared_logins(self.db, now=now, window=self._offline_after)
            self.router.route_pending(config=config)
            self.router.escalate_due(config=config)
            for task in self._extra:
                task()
        outbox.deliver_due(self.db, self._sender, config, now=self._clock())

    def _run(self) -> None:
        last_housekeeping = 0.0
        import time

        while not self._stop.is_set():
            mono = time.monotonic()
            due = mono - last_housekeeping >= self._housekeeping_s
            try:
                self.tick(housekeeping=due)
            except Exception:
                log.exception("alerting pass failed")
            if due:
                last_housekeeping = mono
            self._wake.wait(self._poll_s)
            self._wake.clear()
