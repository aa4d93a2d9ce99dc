"""A real threaded HTTP endpoint on a free loopback port that plays a scripted sequence of faults.

It speaks the agent API (enroll, policy, events, heartbeat), stores each accepted event once by seq
(like the real endpoint) and records every request, so tests can check what the agent actually sent.
Server threads are its own; tests read its state through the lock-protected accessors.
"""

from __future__ import annotations

import gzip
import json
import socket
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from policy_client.schema import EnrollRequest, EnrollResponse, EventBatch, Heartbeat, HeartbeatResponse


@dataclass(frozen=True)
class Reply:
    """Answer the next /v1/events request with this status, headers and body instead of processing it."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


@dataclass(frozen=True)
class Drop:
    """Close the connection after reading part of the request body, without answering."""


@dataclass(frozen=True)
class Reset:
    """Abort the connection with a TCP RST, without answering."""


@dataclass(frozen=True)
class CommitThenDrop:
    """Store the batch, then close the connection without answering (the agent must resend; dedup counts it)."""


Action = Reply | Drop | Reset | CommitThenDrop


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    at: float
    """time.monotonic() when the request arrived."""
    status: int | None
    """None when the connection was dropped or reset."""
    seqs: tuple[int, ...] = ()
    credential: str | None = None
    gzip: bool = False


@dataclass
class _State:
    credential: str
    device_id: str
    max_events: int | None
    poison_seqs: set[int]
    script: deque[Action]
    accepted: dict[int, dict[str, Any]] = field(default_factory=dict)
    duplicates: int = 0
    requests: list[RequestRecord] = field(default_factory=list)
    heartbeats: list[Heartbeat] = field(default_factory=list)
    enroll_tokens: set[str] = field(default_factory=set)
    enrolments: list[EnrollRequest] = field(default_factory=list)
    policy_envelope: bytes | None = None
    policy_etag: str = ""
    policy_version: int = 0
    policy_key_id: str = "k1"
    policy_public_key: str = ""
    team: str = "collections"


class FaultyServer:
    """Use as a context manager; `url` is http://127.0.0.1:<port>."""

    def __init__(
        self,
        *,
        credential: str = "cred-0123456789abcdef",
        device_id: str = "dev-test-1",
        max_events: int | None = None,
        poison_seqs: Iterable[int] = (),
        script: Iterable[Action] = (),
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._cond = threading.Condition()
        self._state = _State(
            credential=credential,
            device_id=device_id,
            max_events=max_events,
            poison_seqs=set(poison_seqs),
            script=deque(script),
        )
        handler = _make_handler(self)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._scheme = "http"
        if tls is not None:
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
            self._scheme = "https"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="faulty-server", daemon=True)

    # --- lifecycle -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"{self._scheme}://{host!s}:{port}"

    def __enter__(self) -> FaultyServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # --- configuration (test thread) -------------------------------------------------------------

    def script(self, *actions: Action) -> None:
        with self._cond:
            self._state.script.extend(actions)

    def set_credential(self, credential: str) -> None:
        with self._cond:
            self._state.credential = credential

    def add_enroll_token(self, token: str) -> None:
        with self._cond:
            self._state.enroll_tokens.add(token)

    def publish_policy(self, envelope: bytes, *, version: int, key_id: str, public_key_b64: str) -> None:
        with self._cond:
            self._state.policy_envelope = envelope
            self._state.policy_version = version
            self._state.policy_etag = f'"v{version}-{len(envelope)}"'
            self._state.policy_key_id = key_id
            self._state.policy_public_key = public_key_b64

    # --- observation (test thread) ---------------------------------------------------------------

    def accepted_seqs(self) -> list[int]:
        with self._cond:
            return sorted(self._state.accepted)

    def accepted_events(self) -> dict[int, dict[str, Any]]:
        with self._cond:
            return dict(self._state.accepted)

    @property
    def duplicates(self) -> int:
        with self._cond:
            return self._state.duplicates

    def requests(self, path: str | None = None) -> list[RequestRecord]:
        with self._cond:
            return [r for r in self._state.requests if path is None or r.path == path]

    def heartbeats(self) -> list[Heartbeat]:
        with self._cond:
            return list(self._state.heartbeats)

    def enrolments(self) -> list[EnrollRequest]:
        with self._cond:
            return list(self._state.enrolments)

    def wait_until(self, predicate: Callable[[FaultyServer], bool], timeout: float = 10.0) -> bool:
        """Block until predicate(server) holds (re-checked after every request), or timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if predicate(self):
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)

    # --- request handling (server threads) -------------------------------------------------------

    def _record(self, record: RequestRecord) -> None:
        with self._cond:
            self._state.requests.append(record)
            self._cond.notify_all()

    def _store(self, batch: EventBatch) -> tuple[int, int]:
        accepted = duplicates = 0
        with self._cond:
            for event in batch.events:
                if event.seq in self._state.accepted:
                    duplicates += 1
                else:
                    self._state.accepted[event.seq] = event.model_dump(mode="json")
                    accepted += 1
            self._state.duplicates += duplicates
        return accepted, duplicates


def _make_handler(server: FaultyServer) -> type[BaseHTTPRequestHandler]:
    state = server._state
    cond = server._cond

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        # -- helpers --

        def _credential(self) -> str | None:
            header = self.headers.get("Authorization", "")
            return header[len("Bearer ") :] if header.startswith("Bearer ") else None

        def _authorised(self) -> bool:
            with cond:
                return self._credential() == state.credential

        def _read_body(self) -> bytes:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            return body

        def _send(self, status: int, body: bytes = b"", headers: Iterable[tuple[str, str]] = ()) -> None:
            self.send_response(status)
            names = set()
            for name, value in headers:
                self.send_header(name, value)
                names.add(name.lower())
            if body and "content-type" not in names:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body:
                self.wfile.write(body)

        def _json(self, status: int, obj: Any, headers: Iterable[tuple[str, str]] = ()) -> None:
            self._send(status, json.dumps(obj).encode(), headers)

        def _rec(self, status: int | None, seqs: tuple[int, ...] = ()) -> None:
            server._record(
                RequestRecord(
                    method=self.command,
                    path=self.path,
                    at=time.monotonic(),
                    status=status,
                    seqs=seqs,
                    credential=self._credential(),
                    gzip=self.headers.get("Content-Encoding") == "gzip",
                )
            )

        # -- routes --

        def do_GET(self) -> None:
            if self.path != "/v1/policy":
                self._rec(404)
                self._json(404, {"detail": "not found"})
                return
            if not self._authorised():
                self._rec(401)
                self._json(401, {"detail": "unknown credential"})
                return
            with cond:
                envelope, etag = state.policy_envelope, state.policy_etag
            if envelope is None:
                self._rec(404)
                self._json(404, {"detail": "no policy published"})
            elif self.headers.get("If-None-Match") == etag:
                self._rec(304)
                self._send(304, headers=[("ETag", etag)])
            else:
                self._rec(200)
                self._send(200, envelope, [("ETag", etag)])

        def do_POST(self) -> None:
            if self.path == "/v1/events":
                self._events()
            elif self.path == "/v1/heartbeat":
                self._heartbeat()
            elif self.path == "/v1/enroll":
                self._enroll()
            else:
                self._read_body()
                self._rec(404)
                self._json(404, {"detail": "not found"})

        def _enroll(self) -> None:
            request = EnrollRequest.model_validate_json(self._read_body())
            with cond:
                ok = request.token in state.enroll_tokens
                if ok:
                    state.enroll_tokens.discard(request.token)
                    state.enrolments.append(request)
                answer = EnrollResponse(
                    device_id=state.device_id,
                    credential=state.credential,
                    team=state.team,
                    policy_key_id=state.policy_key_id,
                    policy_public_key=state.policy_public_key,
                )
            if ok:
                self._rec(200)
                self._send(200, answer.model_dump_json().encode())
            else:
                self._rec(401)
                self._json(401, {"detail": "enrolment token unknown or expired"})

        def _heartbeat(self) -> None:
            body = self._read_body()
            if not self._authorised():
                self._rec(401)
                self._json(401, {"detail": "unknown credential"})
                return
            beat = Heartbeat.model_validate_json(body)
            with cond:
                state.heartbeats.append(beat)
                version = state.policy_version
            self._rec(200)
            self._send(200, HeartbeatResponse(policy_version=version).model_dump_json().encode())

        def _events(self) -> None:
            with cond:
                action = state.script.popleft() if state.script else None
            if isinstance(action, Drop):
                length = int(self.headers.get("Content-Length", "0"))
                self.rfile.read(min(length, 16))  # mid-request: part of the body, then gone
                self._abort(reset=False)
                self._rec(None)
                return
            if isinstance(action, Reset):
                self._abort(reset=True)
                self._rec(None)
                return
            body = self._read_body()
            if not self._authorised():
                self._rec(401)
                self._json(401, {"detail": "unknown credential"})
                return
            if isinstance(action, Reply):
                self._rec(action.status)
                self._send(action.status, action.body, action.headers)
                return
            batch = EventBatch.model_validate_json(body)
            seqs = tuple(e.seq for e in batch.events)
            if batch.device_id != state.device_id:
                self._rec(403, seqs)
                self._json(403, {"detail": "batch device differs from the credential's device"})
                return
            if state.max_events is not None and len(seqs) > state.max_events:
                self._rec(413, seqs)
                self._json(413, {"detail": f"batch of {len(seqs)} events exceeds {state.max_events}"})
                return
            poisoned = sorted(set(seqs) & state.poison_seqs)
            if poisoned:
                self._rec(400, seqs)
                self._json(400, {"detail": f"event seq {poisoned[0]} is malformed"})
                return
            with cond:  # stored and recorded together, so waiters see both or neither
                accepted, duplicates = server._store(batch)
                self._rec(None if isinstance(action, CommitThenDrop) else 200, seqs)
            if isinstance(action, CommitThenDrop):
                self._abort(reset=False)
                return
            self._json(200, {"accepted": accepted, "duplicates": duplicates})

        def _abort(self, *, reset: bool) -> None:
            self.close_connection = True
            if reset:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                self.connection.shutdown(socket.SHUT_RDWR)

    return Handler
