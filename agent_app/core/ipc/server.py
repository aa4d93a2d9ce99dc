"""The service's side of the IPC channel: accepts helpers, reads their requests, answers and pushes.

One accept thread plus one thread per connected helper (a machine has a handful of sessions). The handler's
methods run on a connection's thread; `push`/`broadcast` may be called from any thread. The peer's identity
comes from the transport (the OS), never from a message.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Protocol

from agent_app.core.ipc.channel import Channel, Listener, Peer, recv_exact
from agent_app.core.ipc.protocol import (
    HEADER,
    Attention,
    Hello,
    HistoryRequest,
    ProtocolError,
    Push,
    QuitRequest,
    Record,
    Reply,
    StatusRequest,
    encode,
    frame_length,
    parse_request,
    request_id,
)

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 64
MAX_PER_PEER = 4
"""Connections one user may hold at once: a helper, a `deskwarden status`, a reconnect in flight."""
BODY_TIMEOUT_S = 10.0
SEND_TIMEOUT_S = 2.0
EVENTS_PER_SECOND = 200.0
EVENT_BURST = 2000.0
MAX_BAD_REQUESTS = 20

RequestMessage = Hello | Record | StatusRequest | HistoryRequest | Attention | QuitRequest


class Refused(Exception):
    """A request the handler will not serve; `code` goes back to the helper."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(detail or code)
        self.code = code
        self.detail = detail


class HelperConnection:
    """One connected helper. `push` is thread-safe; a peer too slow to read a push is disconnected."""

    _ids = itertools.count(1)

    def __init__(self, channel: Channel) -> None:
        self.id = next(self._ids)
        self.channel = channel
        self.peer: Peer = channel.peer
        self.hello: Hello | None = None
        self.connected_at = time.monotonic()
        self._send_lock = threading.Lock()
        self._tokens = EVENT_BURST
        self._tokens_at = time.monotonic()
        self.closed = threading.Event()

    def send(self, message: Reply | Push) -> bool:
        data = encode(message)
        with self._send_lock:
            if self.closed.is_set():
                return False
            try:
                self.channel.settimeout(SEND_TIMEOUT_S)
                self.channel.sendall(data)
            except OSError:
                log.warning("helper %s (%s) does not read; disconnecting", self.id, self.peer.user)
                self.close()
                return False
            finally:
                if not self.closed.is_set():
                    self.channel.settimeout(None)
        return True

    def push(self, topic: str, body: dict[str, Any]) -> bool:
        return self.send(Push(topic=topic, body=body))  # type: ignore[arg-type]

    def take_events(self, count: int) -> bool:
        """Token bucket over recorded events, so one session cannot flood the outbox."""
        now = time.monotonic()
        self._tokens = min(EVENT_BURST, self._tokens + (now - self._tokens_at) * EVENTS_PER_SECOND)
        self._tokens_at = now
        if count > self._tokens:
            return False
        self._tokens -= count
        return True

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            self.channel.close()


class ConnectionHandler(Protocol):
    def on_connect(self, conn: HelperConnection) -> None: ...

    def handle(self, conn: HelperConnection, request: RequestMessage) -> dict[str, Any]:
        """The result of one request (raises Refused)."""
        ...

    def on_disconnect(self, conn: HelperConnection) -> None: ...


class IpcServer:
    def __init__(self, listener_factory: Callable[[], Listener], handler: ConnectionHandler) -> None:
        self._listener_factory = listener_factory
        self._handler = handler
        self._listener: Listener | None = None
        self._lock = threading.Lock()
        self._connections: dict[int, HelperConnection] = {}
        self._per_peer: defaultdict[str, int] = defaultdict(int)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Listen now (so a helper started right after this returns can connect), accept on a thread."""
        self._listener = self._listener_factory()
        self._thread = threading.Thread(target=self._accept_loop, name="ipc-accept", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            connections = list(self._connections.values())
        for conn in connections:
            conn.close()
        if self._thread is not None:
            self._thread.join(5)

    def connections(self) -> list[HelperConnection]:
        with self._lock:
            return [c for c in self._connections.values() if c.hello is not None]

    def broadcast(self, topic: str, body: dict[str, Any], *, user: str | None = None) -> int:
        """Push to every greeted helper (of `user` when given); returns how many took it."""
        sent = 0
        for conn in self.connections():
            if (user is None or conn.peer.user == user) and conn.push(topic, body):
                sent += 1
        return sent

    # --- threads --------------------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        listener = self._listener
        if listener is None:
            return
        while not self._stopping.is_set():
            try:
                channel = listener.accept()
            except OSError:
                if self._stopping.is_set():
                    return
                log.exception("accept failed")
                self._stopping.wait(0.5)
                continue
            conn = HelperConnection(channel)
            with self._lock:
                full = len(self._connections) >= MAX_CONNECTIONS or self._per_peer[conn.peer.key] >= MAX_PER_PEER
                if not full:
                    self._connections[conn.id] = conn
                    self._per_peer[conn.peer.key] += 1
            if full:
                log.warning("refusing a connection from %s: too many connections", conn.peer.user)
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(conn,), name=f"ipc-{conn.id}", daemon=True).start()

    def _serve(self, conn: HelperConnection) -> None:
        bad = 0
        try:
            while not self._stopping.is_set() and not conn.closed.is_set():
                body = self._read(conn)
                try:
                    request = parse_request(body)
                except ProtocolError as exc:
                    bad += 1
                    log.warning("bad request from %s: %s", conn.peer.user, exc)
                    conn.send(Reply(re=request_id(body), ok=False, error="bad_request", result={"detail": str(exc)}))
                    if bad >= MAX_BAD_REQUESTS:
                        return
                    continue
                conn.send(self._answer(conn, request))
        except (ProtocolError, OSError):
            pass
        finally:
            conn.close()
            with self._lock:
                self._connections.pop(conn.id, None)
                self._per_peer[conn.peer.key] -= 1
            if conn.hello is not None:
                try:
                    self._handler.on_disconnect(conn)
                except Exception:
                    log.exception("disconnect handling failed")

    def _read(self, conn: HelperConnection) -> bytes:
        # Idle helpers wait for the next header indefinitely (a stalled header costs only that user's own
        # connection slots); once the header has arrived the body must follow promptly.
        conn.channel.settimeout(None)
        header = recv_exact(conn.channel, HEADER.size)
        conn.channel.settimeout(BODY_TIMEOUT_S)
        return recv_exact(conn.channel, frame_length(header))

    def _answer(self, conn: HelperConnection, request: RequestMessage) -> Reply:
        if conn.hello is None and not isinstance(request, Hello):
            return Reply(re=request.id, ok=False, error="bad_request", result={"detail": "say hello first"})
        if isinstance(request, Record) and not conn.take_events(len(request.events)):
            return Reply(re=request.id, ok=False, error="rate_limited")
        try:
            result = self._handler.handle(conn, request)
        except Refused as exc:
            return Reply(re=request.id, ok=False, error=exc.code, result={"detail": exc.detail})
        except Exception:
            log.exception("request %s from %s failed", request.type, conn.peer.user)
            return Reply(re=request.id, ok=False, error="internal")
        if isinstance(request, Hello):
            conn.hello = request
            try:
                self._handler.on_connect(conn)
            except Exception:
                log.exception("connect handling failed")
        return Reply(re=request.id, result=result)
