"""The alerting thread of one API process: routes new alerts, delivers the outbox, escalates, raises derived alerts.

Started and stopped by the app's lifespan. The runtime owns its wake-up (`Runtime.alert_wake`): after an ingest
commit that wrote alerts, `alerts_committed(runtime)` (any thread) sets it, so live delivery does not wait for the
next poll. Without a console (no alerting thread) nobody waits on it and setting it costs nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from central.alerting import derived, outbox
from central.alerting.bus import AlertBus
from central.alerting.channels import NetworkSender, Sender
from central.alerting.router import AlertRouter
from central.runtime import Runtime
from central.store.console_config import load_config
from central.store.engine import Database

log = logging.getLogger(__name__)


def alerts_committed(runtime: Runtime) -> None:
    """Wake the alerting thread serving `runtime` (the ingest path calls this after committing alerts)."""
    runtime.alert_wake.set()


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
        wake: threading.Event | None = None,
    ) -> None:
        """`wake` is the runtime's `alert_wake` (set after ingest commits alerts); a private event without one."""
        self.db = db
        self.bus = bus
        self.router = AlertRouter(db, bus, clock=clock)
        self._clock = clock
        self._offline_after = offline_after
        self._poll_s = poll_s
        self._housekeeping_s = housekeeping_s
        self._sender = sender or NetworkSender()
        self._extra = list(extra_tasks or [])
        self._wake = wake if wake is not None else threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.bus.start()
        self._thread = threading.Thread(target=self._run, name="alerting", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
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
