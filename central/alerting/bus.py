"""Live alert fan-out: an in-process hub of SSE subscribers, fed across processes by PostgreSQL LISTEN/NOTIFY.

`announce` is called from any thread after a commit; SSE handlers on the event loop `subscribe`.
On PostgreSQL a listener thread per process receives every NOTIFY (its own included) and feeds the
local hub; on SQLite (one process) `announce` feeds the hub directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

from central.store.engine import Database

log = logging.getLogger(__name__)

CHANNEL = "deskwarden_alerts"
MAX_NOTIFY_BYTES = 7000
QUEUE_LIMIT = 1000


@dataclass(frozen=True)
class Notice:
    """One live message: `event` is 'alert' (new, routed) or 'update' (acknowledged, closed, escalated)."""

    event: str
    alert: dict[str, Any]

    @property
    def team(self) -> str:
        return str(self.alert.get("team", ""))

    def to_json(self) -> str:
        return json.dumps({"event": self.event, "alert": self.alert}, separators=(",", ":"), default=str)

    @classmethod
    def from_json(cls, raw: str) -> Notice:
        parsed = json.loads(raw)
        return cls(event=str(parsed["event"]), alert=dict(parsed["alert"]))


@dataclass(eq=False)
class Subscription:
    loop: asyncio.AbstractEventLoop
    accepts: Callable[[Notice], bool]
    queue: asyncio.Queue[Notice | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    overflowed: bool = False

    def offer(self, notice: Notice) -> None:
        """Runs on the subscriber's loop."""
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(notice)
        except asyncio.QueueFull:
            # A stalled client: end its stream; it reconnects with Last-Event-ID and replays.
            self.overflowed = True
            self.queue.get_nowait()
            self.queue.put_nowait(None)


class AlertBus:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._subs: set[Subscription] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None
        self.listening = threading.Event()
        """Set once the PostgreSQL listener has issued LISTEN (at once on SQLite)."""

    # -- subscribers (event loop) ------------------------------------------------------------
    def subscribe(self, accepts: Callable[[Notice], bool]) -> Subscription:
        sub = Subscription(loop=asyncio.get_running_loop(), accepts=accepts)
        with self._lock:
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    # -- publishing (any thread) -------------------------------------------------------------
    def announce(self, notice: Notice) -> None:
        if self._db.is_sqlite:
            self.deliver_local(notice)
            return
        payload = notice.to_json()
        if len(payload.encode("utf-8")) > MAX_NOTIFY_BYTES:
            slim = {k: v for k, v in notice.alert.items() if k not in ("data", "playbook")}
            payload = Notice(event=notice.event, alert=slim).to_json()
        with self._db.engine.begin() as conn:
            conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": payload})

    def deliver_local(self, notice: Notice) -> None:
        with self._lock:
            subs = [s for s in self._subs if s.accepts(notice)]
        for sub in subs:
            try:
                sub.loop.call_soon_threadsafe(sub.offer, notice)
            except RuntimeError:  # loop closed: the client went away
                self.unsubscribe(sub)

    # -- PostgreSQL listener thread -----------------------------------------------------------
    def start(self) -> None:
        if self._db.is_sqlite:
            self.listening.set()
            return
        self._listener = threading.Thread(target=self._listen_loop, name="alert-bus-listen", daemon=True)
        self._listener.start()

    def stop(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.join(timeout=5)
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            with contextlib.suppress(RuntimeError, asyncio.QueueFull):
                sub.loop.call_soon_threadsafe(sub.queue.put_nowait, None)

    def _listen_loop(self) -> None:
        import psycopg

        url = self._db.engine.url
        conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        while not self._stop.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            self._on_payload(note.payload)
            except psycopg.Error as exc:
                log.warning("alert listener lost its PostgreSQL connection (%s); reconnecting", type(exc).__name__)
                self.listening.clear()
                self._stop.wait(1.0)

    def _on_payload(self, payload: str) -> None:
        try:
            notice = Notice.from_json(payload)
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed alert notification")
            return
        self.deliver_local(notice)
