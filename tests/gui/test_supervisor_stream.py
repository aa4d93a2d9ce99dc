"""The supervisor alert stream client against a real SSE server on loopback (no sleeps: events with timeouts)."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from agent_app.core.backoff import Backoff
from agent_app.core.supervisor_alerts import SseAlertClient, SseParser, SupervisorAlert
from policy_client.transport import InsecureUrlError

ALERT: dict[str, Any] = {
    "id": "42",
    "device_id": "dev-1",
    "team": "blue",
    "kind": "usb.mounted",
    "severity": "high",
    "created_at": "2025-03-03T09:00:00Z",
    "url": "https://console.example/alerts/42",
}


# --- parser ---------------------------------------------------------------------------------------


def test_parser_handles_fields_comments_and_multiline_data() -> None:
    parser = SseParser()
    messages = parser.feed(b': keep-alive\n\nid: 7\nevent: alert\ndata: {"a":\ndata: 1}\nretry: 2500\n\n')
    assert len(messages) == 1
    assert messages[0].event == "alert"
    assert messages[0].data == '{"a":\n1}'
    assert messages[0].id == "7"
    assert parser.retry_ms == 2500


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_parser_byte_by_byte_with_every_newline(newline: bytes) -> None:
    stream = b"data: one" + newline + newline + "data: twö".encode() + newline + newline
    parser = SseParser()
    messages = [m for byte in range(len(stream)) for m in parser.feed(stream[byte : byte + 1])]
    assert [m.data for m in messages] == ["one", "twö"]


def test_parser_ignores_events_without_data() -> None:
    assert SseParser().feed(b"event: ping\n\n") == []


def test_alert_from_json_rejects_missing_fields() -> None:
    with pytest.raises(ValueError, match="kind"):
        SupervisorAlert.from_json({k: v for k, v in ALERT.items() if k != "kind"})


def test_plain_http_to_a_remote_host_is_refused() -> None:
    with pytest.raises(InsecureUrlError):
        SseAlertClient("http://console.example.com", "token")


# --- real server ----------------------------------------------------------------------------------


class _Server:
    """Serves scripted connections: each item of `scripts` is the list of raw chunks for one connection;
    `None` as the last chunk keeps the connection open until the client goes away."""

    def __init__(self) -> None:
        self.scripts: queue.Queue[tuple[int, list[bytes | None]]] = queue.Queue()
        self.requests: queue.Queue[dict[str, str]] = queue.Queue()
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer.requests.put({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
                try:
                    status, chunks = outer.scripts.get(timeout=10)
                except queue.Empty:
                    status, chunks = 503, []
                self.send_response(status)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                for chunk in chunks:
                    if chunk is None:
                        outer.release.wait(10)
                        return
                    self.wfile.write(chunk)
                    self.wfile.flush()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    yield srv
    srv.close()


def _event(alert: dict[str, Any], *, event_id: str) -> bytes:
    return f"id: {event_id}\nevent: alert\ndata: {json.dumps(alert)}\n\n".encode()


def _client(server: _Server) -> SseAlertClient:
    return SseAlertClient(
        server.url, "console-token", teams=["blue"], backoff=Backoff(base=0.01, cap=0.05), auth_retry_s=0.05
    )


def _stop_in_thread(client: SseAlertClient, stopped: threading.Event) -> None:
    def run() -> None:
        client.stop(timeout=5)
        stopped.set()

    threading.Thread(target=run, daemon=True).start()


def test_stream_delivers_alerts_and_resumes_with_last_event_id(server: _Server) -> None:
    received: queue.Queue[SupervisorAlert] = queue.Queue()
    server.scripts.put((200, [b": hello\n\n", _event(ALERT, event_id="41"), b"data: not json\n\n"]))
    server.scripts.put((200, [_event({**ALERT, "id": "43"}, event_id="43"), None]))
    client = _client(server)
    client.start(received.put)
    try:
        first = server.requests.get(timeout=5)
        assert first["path"] == "/v1/alerts/stream?team=blue"
        assert first["authorization"] == "Bearer console-token"
        assert first["accept"] == "text/event-stream"
        assert "last-event-id" not in first
        assert received.get(timeout=5).id == "42"
        second = server.requests.get(timeout=5)
        assert second["last-event-id"] == "41"
        assert received.get(timeout=5).id == "43"
        assert received.empty(), "the unreadable alert must be skipped"
        assert client.connected.wait(5)
    finally:
        stopped = threading.Event()
        _stop_in_thread(client, stopped)
        assert stopped.wait(6), "stop() must interrupt a blocking read"
    assert client.connections == 2


def test_refused_token_retries_slowly_and_stops(server: _Server) -> None:
    server.scripts.put((401, []))
    server.scripts.put((200, [_event(ALERT, event_id="1"), None]))
    received: queue.Queue[SupervisorAlert] = queue.Queue()
    client = _client(server)
    client.start(received.put)
    try:
        assert received.get(timeout=5).kind == "usb.mounted"
    finally:
        client.stop(timeout=5)
    assert server.requests.qsize() == 2


def test_unreachable_server_backs_off_and_stops_promptly() -> None:
    client = SseAlertClient("http://127.0.0.1:9", "t", backoff=Backoff(base=0.01, cap=0.02))
    client.start(lambda alert: None)
    stopped = threading.Event()
    _stop_in_thread(client, stopped)
    assert stopped.wait(6)
