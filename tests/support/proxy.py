"""A fault-injecting HTTP/1.1 proxy of our own, between the agent and a real endpoint on loopback.

Runs an asyncio loop on its own "fault-proxy" thread; `start`, `set_mix`, `counts` and `stop` are called from the
test's thread. Each request (not each connection) draws one fault, so keep-alive sessions see faults too.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import random
import socket
import struct
import threading
import zlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class Fault(StrEnum):
    passthrough = "pass"
    drop = "drop"
    """Close the client connection as soon as the request has been read, before anything is forwarded."""
    reset = "reset"
    """Read part of the request, then answer with a TCP RST."""
    delay = "delay"
    """Wait a little, then forward as usual."""
    truncate = "truncate"
    """Forward the request (the endpoint commits), then relay only part of the answer and close."""
    reset_after = "reset_after"
    """Forward the request (the endpoint commits), then reset instead of answering."""
    reply_429 = "429"
    reply_500 = "500"
    reply_503 = "503"
    reply_413 = "413"
    """Only for a POST /v1/events batch of two or more events (a real endpoint answers 413 only for those)."""


CALM: Mapping[Fault, float] = {Fault.passthrough: 1.0}
STORMY: Mapping[Fault, float] = {
    Fault.passthrough: 0.40,
    Fault.drop: 0.06,
    Fault.reset: 0.06,
    Fault.delay: 0.08,
    Fault.truncate: 0.10,
    Fault.reset_after: 0.08,
    Fault.reply_429: 0.06,
    Fault.reply_500: 0.06,
    Fault.reply_503: 0.04,
    Fault.reply_413: 0.06,
}

_REASONS = {
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_MAX_HEADER = 64 * 1024


@dataclass(frozen=True)
class _Message:
    head: bytes
    body: bytes

    @property
    def raw(self) -> bytes:
        return self.head + self.body

    def header(self, name: str) -> str | None:
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name.lower().encode():
                return value.strip().decode("latin-1")
        return None

    @property
    def start_line(self) -> str:
        return self.head.split(b"\r\n", 1)[0].decode("latin-1")


async def _read_message(reader: asyncio.StreamReader, *, response_to: str | None = None) -> _Message | None:
    """One HTTP/1.1 message with its body (Content-Length or chunked); None at a clean EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ConnectionError("connection closed inside a header") from None
        return None
    except asyncio.LimitOverrunError:
        raise ConnectionError("header too large") from None
    message = _Message(head, b"")
    if response_to == "HEAD" or (response_to is not None and message.start_line.split(" ")[1] in ("204", "304")):
        return message
    length = message.header("content-length")
    if length is not None:
        return _Message(head, await reader.readexactly(int(length)))
    if (message.header("transfer-encoding") or "").lower() == "chunked":
        body = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            body += size_line
            size = int(size_line.split(b";")[0].strip(), 16)
            chunk = await reader.readexactly(size + 2)
            body += chunk
            if size == 0:
                return _Message(head, bytes(body))
    if response_to is not None:
        return _Message(head, await reader.read())  # close-delimited answer
    return message


def _batch_size(request: _Message) -> int:
    """Events in a POST /v1/events body, 0 when it is not one (or cannot be read)."""
    if not request.start_line.startswith("POST /v1/events"):
        return 0
    body = request.body
    try:
        if (request.header("content-encoding") or "").lower() == "gzip":
            body = gzip.decompress(body)
        events = json.loads(body).get("events")
    except (OSError, EOFError, zlib.error, ValueError, AttributeError):
        return 0
    return len(events) if isinstance(events, list) else 0


def _canned(status: int) -> bytes:
    body = json.dumps({"detail": f"fault proxy says {status}"}).encode()
    retry = "Retry-After: 0\r\n" if status in (429, 503) else ""
    return (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{retry}Connection: close\r\n\r\n"
    ).encode() + body


def _abort_with_rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _cancel_others() -> None:
    current = asyncio.current_task()
    pending = [task for task in asyncio.all_tasks() if task is not current]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


class FaultProxy:
    """Listens on a free loopback port and forwards to 127.0.0.1:`upstream_port`, injecting faults by `mix`."""

    def __init__(self, upstream_port: int, *, seed: int = 0, mix: Mapping[Fault, float] = CALM) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self._rng = random.Random(seed)
        self._mix = dict(mix)
        self._lock = threading.Lock()
        self._counts: Counter[Fault] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._connections: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_mix(self, mix: Mapping[Fault, float]) -> None:
        with self._lock:
            self._mix = dict(mix)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {fault.value: n for fault, n in self._counts.items()}

    def start(self, *, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or not self.port:
            raise RuntimeError("fault proxy did not start")

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
        self._thread = None

    def _draw(self, request: _Message) -> Fault:
        with self._lock:
            faults, weights = zip(*self._mix.items(), strict=True)
            fault: Fault = self._rng.choices(faults, weights)[0]
            if fault is Fault.reply_413 and _batch_size(request) < 2:
                fault = Fault.passthrough
            self._counts[fault] += 1
            return fault

    def _delay(self) -> float:
        with self._lock:
            return self._rng.uniform(0.02, 0.4)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._serve, "127.0.0.1", 0, limit=_MAX_HEADER, reuse_address=True)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()
            loop.run_forever()
            self._server.close()
            for writer in list(self._connections):
                writer.transport.abort()
            loop.run_until_complete(self._server.wait_closed())
            loop.run_until_complete(_cancel_others())
        finally:
            self._ready.set()
            loop.close()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self._connections.add(client_writer)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                request = await _read_message(client_reader)
                if request is None:
                    return
                fault = self._draw(request)
                if fault is Fault.drop:
                    return
                if fault is Fault.reset:
                    _abort_with_rst(client_writer)
                    return
                if fault in (Fault.reply_429, Fault.reply_500, Fault.reply_503, Fault.reply_413):
                    client_writer.write(_canned(int(fault.value)))
                    await client_writer.drain()
                    return
                if fault is Fault.delay:
                    await asyncio.sleep(self._delay())
                if upstream is None:
                    try:
                        upstream = await asyncio.open_connection("127.0.0.1", self.upstream_port)
                    except OSError:
                        _abort_with_rst(client_writer)  # the endpoint is down: the agent sees a reset
                        return
                up_reader, up_writer = upstream
                up_writer.write(request.raw)
                await up_writer.drain()
                method = request.start_line.split(" ", 1)[0]
                answer = await _read_message(up_reader, response_to=method)
                if answer is None:
                    _abort_with_rst(client_writer)
                    return
                if fault is Fault.reset_after:
                    _abort_with_rst(client_writer)
                    return
                if fault is Fault.truncate:
                    raw = answer.raw
                    with self._lock:
                        cut = self._rng.randrange(0, max(1, len(raw) - 1))
                    client_writer.write(raw[:cut])
                    await client_writer.drain()
                    return
                client_writer.write(answer.raw)
                await client_writer.drain()
                if (answer.header("connection") or "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError, ValueError):
            _abort_with_rst(client_writer)
        finally:
            self._connections.discard(client_writer)
            if upstream is not None:
                upstream[1].transport.abort()
            if not client_writer.transport.is_closing():
                client_writer.close()
