"""Client of the endpoint's supervisor alert stream (Server-Sent Events at GET /v1/alerts/stream).

Runs on its own daemon thread ("supervisor-alerts"), reconnects with full-jitter backoff and Last-Event-ID,
and hands each alert to a callback on that thread (the tray re-emits it as a queued Qt signal).
The contract it assumes is documented in docs/supervisor-notifications.md.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urljoin

import requests

from agent_app.core.backoff import Backoff
from policy_client.transport import Transport, TransportError, validate_base_url

log = logging.getLogger(__name__)

STREAM_PATH = "/v1/alerts/stream"
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0
"""The endpoint sends a `: keep-alive` comment at least every 15 s; a silent minute means a dead connection."""
NO_RETRY_STATUSES = frozenset({401, 403})
AUTH_RETRY_S = 300.0
"""After 401/403 the token is wrong or revoked: try again rarely (an admin may fix it) and say so in the log."""


@dataclass(frozen=True, slots=True)
class SupervisorAlert:
    id: str
    device_id: str
    team: str
    kind: str
    severity: str
    created_at: str
    url: str

    @classmethod
    def from_json(cls, data: Any) -> SupervisorAlert:
        if not isinstance(data, dict):
            raise ValueError("alert is not a JSON object")
        values: dict[str, str] = {}
        for name in ("id", "device_id", "team", "kind", "severity", "created_at", "url"):
            value = data.get(name)
            if value is None and name in ("team", "url", "device_id"):
                value = ""
            if not isinstance(value, str | int):
                raise ValueError(f"alert field {name!r} is missing or not a string")
            values[name] = str(value)
        return cls(**values)


AlertCallback = Callable[[SupervisorAlert], None]


class SupervisorAlertSource(Protocol):
    """What the tray needs: start delivering alerts to a callback (any thread), and stop."""

    def start(self, callback: AlertCallback) -> None: ...

    def stop(self, timeout: float = 5.0) -> None: ...


@dataclass(frozen=True, slots=True)
class SseMessage:
    event: str
    data: str
    id: str | None


class SseParser:
    """Incremental text/event-stream parser (WHATWG HTML, section 9.2). Feed bytes, get messages."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._pending_cr = False
        self._event = ""
        self._data: list[str] = []
        self.last_id: str | None = None
        self.retry_ms: int | None = None

    def feed(self, chunk: bytes) -> list[SseMessage]:
        text = self._decoder.decode(chunk)
        if not text:
            return []
        if self._pending_cr and text.startswith("\n"):
            text = text[1:]  # the \n of a \r\n split across two chunks
        self._pending_cr = False
        messages: list[SseMessage] = []
        self._buffer += text
        while True:
            index = _line_end(self._buffer)
            if index < 0:
                break
            line, end = self._buffer[:index], self._buffer[index]
            skip = 2 if self._buffer.startswith("\r\n", index) else 1
            if end == "\r" and index + 1 == len(self._buffer):
                self._pending_cr = True
            self._buffer = self._buffer[index + skip :]
            message = self._line(line)
            if message is not None:
                messages.append(message)
        return messages

    def _line(self, line: str) -> SseMessage | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> SseMessage | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return SseMessage(event=event or "message", data="\n".join(data), id=self.last_id)


def _line_end(text: str) -> int:
    positions = [pos for pos in (text.find("\r"), text.find("\n")) if pos >= 0]
    return min(positions) if positions else -1


class SseAlertClient:
    """Subscribes to the alert stream with an API/console token; one thread, stoppable within `timeout`."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        teams: Sequence[str] = (),
        ca_bundle: str | Path | None = None,
        backoff: Backoff | None = None,
        read_timeout: float = READ_TIMEOUT_S,
        auth_retry_s: float = AUTH_RETRY_S,
    ) -> None:
        self.base_url = validate_base_url(base_url)
        self._token = token
        self._teams = list(teams)
        self._ca_bundle = ca_bundle
        self._backoff = backoff or Backoff(base=1.0, cap=60.0)
        self._read_timeout = read_timeout
        self._auth_retry_s = auth_retry_s
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._response: requests.Response | None = None
        self._last_id: str | None = None
        self.connected = threading.Event()
        """Set while a stream is open (tests and the tray tooltip use it)."""
        self.connections = 0

    def __repr__(self) -> str:  # never shows the token
        return f"SseAlertClient({self.base_url!r})"

    def start(self, callback: AlertCallback) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, args=(callback,), name="supervisor-alerts", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._abort_stream()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("supervisor alert stream did not stop within %.1f s", timeout)
        self._thread = None

    # --- stream thread ------------------------------------------------------------------------------

    def _run(self, callback: AlertCallback) -> None:
        # The same endpoint client as the service's uploader: TLS verification, CA bundle, no redirects.
        session = Transport(
            self.base_url,
            credential=self._token,
            ca_bundle=self._ca_bundle,
            connect_timeout=CONNECT_TIMEOUT_S,
            read_timeout=self._read_timeout,
        )
        try:
            while not self._stopping.is_set():
                try:
                    delay = self._connect_once(session, callback)
                except Exception:
                    log.exception("supervisor alert stream failed")
                    delay = None
                if delay is None:
                    delay = self._backoff.next_delay()
                log.info("supervisor alert stream closed; reconnecting in %.1f s", delay)
                self._stopping.wait(delay)
        finally:
            session.close()

    def _connect_once(self, session: Transport, callback: AlertCallback) -> float | None:
        """Read one connection to its end. Returns a delay to wait before reconnecting, or None for backoff."""
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self._last_id is not None:
            headers["Last-Event-ID"] = self._last_id
        params = [("team", team) for team in self._teams]
        try:
            response = session.stream(STREAM_PATH, headers=headers, params=params)
        except TransportError as exc:
            log.warning("supervisor alert stream: cannot connect to %s (%s)", self.base_url, type(exc).__name__)
            return None
        with self._lock:
            self._response = response
        try:
            if response.status_code in NO_RETRY_STATUSES:
                log.error("supervisor alert stream refused the token (HTTP %d)", response.status_code)
                return self._auth_retry_s
            if response.status_code != 200:
                log.warning("supervisor alert stream answered HTTP %d", response.status_code)
                return None
            self.connections += 1
            self.connected.set()
            parser = SseParser()
            self._read(response, parser, callback)
            if parser.retry_ms is not None:
                return parser.retry_ms / 1000.0
            return None
        except (requests.RequestException, OSError, ValueError) as exc:
            if not self._stopping.is_set():
                log.warning("supervisor alert stream broke (%s)", type(exc).__name__)
            return None
        finally:
            self.connected.clear()
            with self._lock:
                self._response = None
            response.close()

    def _read(self, response: requests.Response, parser: SseParser, callback: AlertCallback) -> None:
        raw = response.raw
        while not self._stopping.is_set():
            chunk = raw.read1(8192)
            if not chunk:
                return
            for message in parser.feed(chunk):
                if message.id is not None:
                    self._last_id = message.id
                if message.event not in ("message", "alert"):
                    continue
                self._backoff.reset()
                self._deliver(message, callback)

    def _deliver(self, message: SseMessage, callback: AlertCallback) -> None:
        try:
            alert = SupervisorAlert.from_json(json.loads(message.data))
        except ValueError as exc:
            log.warning("supervisor alert stream sent an unreadable alert: %s", exc)
            return
        if alert.url and not alert.url.startswith(("https://", "http://")):
            # The endpoint sends console paths (/console/alerts/N); they live on the endpoint's own origin.
            alert = dataclasses.replace(alert, url=urljoin(self.base_url + "/", alert.url))
        try:
            callback(alert)
        except Exception:
            log.exception("supervisor alert callback failed")

    def _abort_stream(self) -> None:
        """Unblock a read in progress by shutting the connection's socket down (close() alone does not wake
        recv on Linux, and closing the response from this thread would race with the reader: http.client is
        not thread-safe). The reader then sees EOF and closes the response itself."""
        with self._lock:
            response = self._response
            if response is None:
                return
            try:
                fd = response.raw.fileno()
            except (OSError, ValueError, AttributeError):
                return
            # The lock keeps the reader from closing (and the OS from reusing) the descriptor meanwhile.
            with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as sock:
                sock.shutdown(socket.SHUT_RDWR)
