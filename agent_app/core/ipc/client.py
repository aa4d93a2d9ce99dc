"""The helper's side of the IPC channel: one connection to the service, kept up across service restarts.

A reader thread owns the connection: it says hello after each connect, hands replies to the threads waiting in
`request`, and passes pushes to `on_push` (which must not block). `request` may be called from any thread.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from agent_app import __version__
from agent_app.core.ipc.channel import Channel, connect, read_frame
from agent_app.core.ipc.protocol import Hello, ProtocolError, Push, Reply, encode, parse_server_message

log = logging.getLogger(__name__)

RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 10.0


class ServiceUnavailable(ConnectionError):
    """No connection to the service right now (not running, restarting, or refused us)."""


class ServiceRefused(Exception):
    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code


class _Pending:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.reply: Reply | None = None


class ServiceClient:
    def __init__(
        self,
        socket_path: Path,
        *,
        on_push: Callable[[str, dict[str, Any]], None],
        on_connected: Callable[[dict[str, Any]], None] = lambda welcome: None,
        on_disconnected: Callable[[], None] = lambda: None,
        connector: Callable[[Path], Channel] = connect,
    ) -> None:
        self._path = socket_path
        self._on_push = on_push
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self._connector = connector
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._channel: Channel | None = None
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.welcome: dict[str, Any] | None = None
        self.last_error = ""

    # --- life cycle ---------------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="service-client", daemon=True)
        self._thread.start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def stop(self) -> None:
        self._stopping.set()
        channel = self._channel
        if channel is not None:
            channel.close()
        if self._thread is not None:
            self._thread.join(5)

    # --- requests (any thread) ----------------------------------------------------------------------------

    def request(self, build: Callable[[int], BaseModel], *, timeout: float = 10.0) -> dict[str, Any]:
        """Send the request `build(id)` and wait for its reply's result."""
        if not self._connected.is_set():
            raise ServiceUnavailable(self.last_error or "not connected to the DeskWarden service")
        return self._exchange(build, timeout=timeout)

    def _exchange(self, build: Callable[[int], BaseModel], *, timeout: float) -> dict[str, Any]:
        request_id = next(self._ids)
        pending = _Pending()
        with self._lock:
            self._pending[request_id] = pending
            channel = self._channel
        try:
            if channel is None:
                raise ServiceUnavailable("not connected to the DeskWarden service")
            try:
                with self._send_lock:
                    channel.sendall(encode(build(request_id)))
            except OSError as exc:
                raise ServiceUnavailable(f"lost the service: {exc}") from None
            if not pending.done.wait(timeout):
                raise ServiceUnavailable("the service did not answer in time")
        finally:
            with self._lock:
                self._pending.pop(request_id, None)
        reply = pending.reply
        if reply is None:
            raise ServiceUnavailable("the connection to the service closed")
        if not reply.ok:
            raise ServiceRefused(reply.error, str(reply.result.get("detail", "")))
        return reply.result

    # --- reader thread ------------------------------------------------------------------------------------

    def _run(self) -> None:
        delay = RECONNECT_MIN_S
        while not self._stopping.is_set():
            try:
                channel = self._connector(self._path)
            except OSError as exc:
                self.last_error = f"cannot reach the DeskWarden service at {self._path}: {exc.strerror or exc}"
                self._stopping.wait(delay)
                delay = min(RECONNECT_MAX_S, delay * 2)
                continue
            delay = RECONNECT_MIN_S
            with self._lock:
                self._channel = channel
            reader = threading.Thread(target=self._read, args=(channel,), name="service-reader", daemon=True)
            reader.start()
            try:
                self.welcome = self._exchange(lambda i: Hello(id=i, helper_version=__version__[:64]), timeout=10)
            except (ServiceUnavailable, ServiceRefused) as exc:
                self.last_error = str(exc)
                channel.close()
                reader.join()
                self._stopping.wait(delay)
                continue
            self._connected.set()
            self.last_error = ""
            self._safe(self._on_connected, self.welcome)
            reader.join()
            self._connected.clear()
            with self._lock:
                self._channel = None
            if not self._stopping.is_set():
                self.last_error = "lost the connection to the DeskWarden service"
                self._safe(self._on_disconnected)

    def _read(self, channel: Channel) -> None:
        try:
            while True:
                message = parse_server_message(read_frame(channel))
                if isinstance(message, Push):
                    self._safe(self._on_push, message.topic, message.body)
                    continue
                with self._lock:
                    pending = self._pending.get(message.re)
                if pending is not None:
                    pending.reply = message
                    pending.done.set()
        except (OSError, ProtocolError) as exc:
            log.debug("service connection ended: %s", exc)
        finally:
            channel.close()
            with self._lock:
                waiting = list(self._pending.values())
            for pending in waiting:
                pending.done.set()

    @staticmethod
    def _safe(callback: Callable[..., None], *args: Any) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("service client callback failed")
