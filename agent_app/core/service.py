"""`deskwarden service`: the privileged per-machine process (ARCHITECTURE.md section 6).

It owns the engine (`AgentRuntime` in the service role: secrets, outbox, policy, uploader, USB, downloads and
the process scanner) and serves the session helpers over local IPC. Who a helper runs as comes from the OS;
a helper that goes away while its session lives is recorded as tamper and started again. The main thread
constructs, ticks and stops it; request handlers run on IPC connection threads.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from agent_app.core.ipc.channel import Listener
from agent_app.core.ipc.protocol import (
    HELPER_KINDS,
    Attention,
    Hello,
    HistoryRequest,
    QuitRequest,
    Record,
    StatusRequest,
)
from agent_app.core.ipc.server import HelperConnection, IpcServer, Refused, RequestMessage
from agent_app.core.pipeline import Notice
from agent_app.core.runtime import AgentRuntime
from agent_app.core.sessions import DeskSession, HelperLauncher, SessionSource
from agent_app.core.status import AgentStatus
from policy_client.schema import EventDraft, EventKind, PolicyDocument, Severity

log = logging.getLogger(__name__)

RESTARTS_PER_WINDOW = 3
RESTART_WINDOW = timedelta(minutes=10)
MISSING_GRACE = timedelta(seconds=60)
"""How long a logged-in session may run without a helper before the service starts one and says so."""
MAX_CLOCK_SKEW = timedelta(minutes=10)
DISCONNECT_GRACE_S = 2.0


def helper_argv() -> list[str]:
    """The command that starts a helper: the service's own executable, never one the desk user chose."""
    if getattr(sys, "frozen", False):  # PyInstaller bundle
        return [sys.executable, "agent"]
    return [sys.executable, "-m", "agent_app", "agent"]


def notice_to_json(notice: Notice) -> dict[str, Any]:
    body = asdict(notice)
    body["decision"]["severity"] = notice.decision.severity.value
    body["outcome"] = notice.outcome.value
    return body


@dataclass
class _Helper:
    conn: HelperConnection
    session: DeskSession | None
    quit_allowed: bool = False
    attention: tuple[str, ...] = ()


@dataclass
class _SessionBook:
    """Per session: restarts in the window, when it was first seen without a helper, until when quitting is ok."""

    restarts: deque[datetime] = field(default_factory=deque)
    missing_since: datetime | None = None
    reported_missing: bool = False
    quit_until: datetime | None = None


class DeskService:
    """Implements `agent_app.core.ipc.server.ConnectionHandler` over an `AgentRuntime` in the service role."""

    def __init__(
        self,
        runtime: AgentRuntime,
        *,
        listener: Callable[[], Listener],
        sessions: SessionSource,
        launcher: HelperLauncher,
        socket_path: Path,
        clock: Callable[[], datetime],
        disconnect_grace: float = DISCONNECT_GRACE_S,
    ) -> None:
        self.runtime = runtime
        self._disconnect_grace = disconnect_grace
        self._sessions = sessions
        self._launcher = launcher
        self._socket_path = socket_path
        self._clock = clock
        self._lock = threading.Lock()
        self._helpers: dict[int, _Helper] = {}
        self._books: dict[tuple[str, str], _SessionBook] = {}
        self.server = IpcServer(listener, self)
        runtime.add_notice_listener(self._on_notice)
        runtime.add_policy_listener(self._on_policy)

    # --- life cycle (main thread) -------------------------------------------------------------------------

    def start(self) -> None:
        self.runtime.start()
        self.server.start()

    def tick(self) -> None:
        self.runtime.tick()
        status = self.status_json()
        self.server.broadcast("status", status)
        self._expect_helpers()

    def stop(self, *, reason: str) -> None:
        self.server.stop()
        self.runtime.stop(reason=reason)

    # --- ConnectionHandler (connection threads) -----------------------------------------------------------

    def on_connect(self, conn: HelperConnection) -> None:
        if conn.hello is None or conn.hello.role != "helper":
            return
        session = self._sessions.session_of(conn.peer.pid) if conn.peer.pid else None
        with self._lock:
            self._helpers[conn.id] = _Helper(conn, session)
            if session is not None:
                book = self._books.setdefault(session.key, _SessionBook())
                book.missing_since, book.reported_missing = None, False
        log.info("helper %s connected for %s (session %s)", conn.id, conn.peer.user, session and session.session_id)
        self.runtime.user_session_started()
        self._refresh_attention()

    def on_disconnect(self, conn: HelperConnection) -> None:
        with self._lock:
            helper = self._helpers.pop(conn.id, None)
        # Another helper of the same session does not excuse this one: a desk user can connect a do-nothing
        # client of their own, and a real helper never drops its connection while the service runs.
        if helper is None:
            return
        self._refresh_attention()
        if helper.quit_allowed or self.runtime.policy.controls.agent.allow_quit:
            log.info("helper of %s quit with permission", conn.peer.user)
            return
        session = helper.session
        if session is None:
            return
        # At logout the helper may go a moment before its session does: judge the session a little later.
        if self._disconnect_grace <= 0:
            self._helper_gone(conn, session)
            return
        timer = threading.Timer(self._disconnect_grace, self._helper_gone, args=(conn, session))
        timer.daemon = True
        timer.start()

    def _helper_gone(self, conn: HelperConnection, session: DeskSession) -> None:
        if not self._sessions.alive(session):
            log.info("helper of %s ended with its session", conn.peer.user)
            return
        self.runtime.record(
            EventDraft(
                kind=EventKind.agent_tamper,
                severity=Severity.high,
                user=conn.peer.user,
                data={"reason": "helper_stopped", "session": session.session_id[:64], "pid": conn.peer.pid},
            )
        )
        self.runtime.upload_now()
        self._restart(session)

    def handle(self, conn: HelperConnection, request: RequestMessage) -> dict[str, Any]:
        if isinstance(request, Hello):
            policy = self.runtime.policy
            return {
                "user": conn.peer.user,
                "device_id": self.runtime.device_id,
                "mode": self.runtime.mode,
                "policy": policy.model_dump(mode="json"),
                "status": self.status_json(),
            }
        if isinstance(request, Record):
            return {"seqs": self._record(conn, request)}
        if isinstance(request, StatusRequest):
            return self.status_json()
        if isinstance(request, HistoryRequest):
            return {"events": self._history(conn.peer.user, request.limit)}
        if isinstance(request, Attention):
            with self._lock:
                helper = self._helpers.get(conn.id)
                if helper is not None:
                    helper.attention = tuple(request.reasons)
            self._refresh_attention()
            return {}
        if isinstance(request, QuitRequest):
            return self._quit(conn, request)
        raise Refused("bad_request", "unknown request")

    # --- requests -------------------------------------------------------------------------------------------

    def _record(self, conn: HelperConnection, request: Record) -> list[int]:
        now = self._clock()
        drafts: list[EventDraft] = []
        for draft in request.events:
            if draft.kind not in HELPER_KINDS:
                raise Refused("forbidden_kind", f"a session helper may not record {draft.kind.value}")
            update: dict[str, Any] = {"user": conn.peer.user}  # the OS says who, never the message
            if abs(draft.ts - now) > MAX_CLOCK_SKEW:
                update["ts"] = now
            drafts.append(draft.model_copy(update=update))
        seqs = self.runtime.record_batch(drafts)
        if seqs is None:
            raise Refused("unavailable", "the outbox did not commit in time; retry")
        return seqs

    def _history(self, user: str, limit: int) -> list[dict[str, Any]]:
        """Only the asking user's own events (the service's own life-cycle events are nobody's)."""
        mine = [event for event in self.runtime.history(limit=min(limit * 5, 2000)) if event.get("user") == user]
        return mine[:limit]

    def _quit(self, conn: HelperConnection, request: QuitRequest) -> dict[str, Any]:
        allowed = self.runtime.policy.controls.agent.allow_quit
        minutes = 0
        if not allowed and request.token:
            grant = self.runtime.accept_unlock(request.token, scope="quit", user=conn.peer.user)
            if grant is not None:
                allowed, minutes = True, grant.minutes
        with self._lock:
            helper = self._helpers.get(conn.id)
            if helper is not None and allowed:
                helper.quit_allowed = True
                if helper.session is not None:
                    book = self._books.setdefault(helper.session.key, _SessionBook())
                    # Policy allows quitting: not expected again this session; a token: for its minutes.
                    book.quit_until = self._clock() + (timedelta(minutes=minutes) if minutes else timedelta(days=365))
        return {"allowed": allowed, "minutes": minutes}

    # --- pushes and bookkeeping -----------------------------------------------------------------------------

    def status_json(self) -> dict[str, Any]:
        status: AgentStatus = self.runtime.status()
        body = status.to_json()
        body["socket"] = str(self._socket_path)
        body["ca_bundle"] = self.runtime.ca_bundle  # where the endpoint's CA is; helpers verify TLS with it too
        helpers = [c for c in self.server.connections() if c.hello is not None and c.hello.role == "helper"]
        body["helpers"] = len(helpers)
        body["helper_users"] = sorted({c.peer.user for c in helpers})
        return body

    def _on_notice(self, notice: Notice) -> None:
        """A notice about a desk user's event goes to that user's helpers; one about the machine to all."""
        body = notice_to_json(notice)
        if notice.user and notice.user != self.runtime.user:
            self.server.broadcast("notice", body, user=notice.user)
        else:
            self.server.broadcast("notice", body)

    def _on_policy(self, policy: PolicyDocument) -> None:
        self.server.broadcast("policy", policy.model_dump(mode="json"))

    def _refresh_attention(self) -> None:
        """What the endpoint hears with heartbeats: what the people must act on, and who is at the desk."""
        with self._lock:
            reasons = sorted({reason for helper in self._helpers.values() for reason in helper.attention})
            users = tuple(sorted({helper.conn.peer.user for helper in self._helpers.values()}))
        self.runtime.set_desk_users(users)
        self.runtime.set_attention(tuple(reasons[:10]))

    def _restart(self, session: DeskSession) -> None:
        now = self._clock()
        with self._lock:
            book = self._books.setdefault(session.key, _SessionBook())
            while book.restarts and now - book.restarts[0] > RESTART_WINDOW:
                book.restarts.popleft()
            if len(book.restarts) >= RESTARTS_PER_WINDOW:
                log.warning(
                    "helper of %s stopped %d times in %s; not restarting",
                    session.user,
                    len(book.restarts),
                    RESTART_WINDOW,
                )
                return
            book.restarts.append(now)
        self._launcher.launch(session, [*helper_argv(), "--socket", str(self._socket_path)])

    def _expect_helpers(self) -> None:
        """Every graphical session should have a helper; one without (never started, or quit past its
        unlock) is reported once and gets one started."""
        active = self._sessions.active()
        if active is None:
            return
        now = self._clock()
        with self._lock:
            served = {h.session.key for h in self._helpers.values() if h.session is not None}
            served_users = {h.conn.peer.user for h in self._helpers.values()}
        for session in active:
            if session.key in served or session.user in served_users:
                continue
            book = self._books.setdefault(session.key, _SessionBook())
            if book.quit_until is not None and now < book.quit_until:
                continue
            if book.missing_since is None:
                book.missing_since = now
                continue
            if now - book.missing_since < MISSING_GRACE or book.reported_missing:
                continue
            book.reported_missing = True
            self.runtime.record(
                EventDraft(
                    kind=EventKind.agent_tamper,
                    severity=Severity.high,
                    user=session.user,
                    data={"reason": "helper_missing", "session": session.session_id[:64]},
                )
            )
            self._restart(session)


def run_until(service: DeskService, should_stop: Callable[[], bool], *, tick_seconds: float) -> None:
    """The service's main loop: main-thread work as it comes, a tick every few seconds."""
    next_tick = time.monotonic()
    while not should_stop():
        if time.monotonic() >= next_tick:
            service.tick()
            next_tick = time.monotonic() + tick_seconds
        service.runtime.process_main_calls(timeout=max(0.05, min(1.0, next_tick - time.monotonic())))
