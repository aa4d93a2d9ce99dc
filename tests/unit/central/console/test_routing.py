"""Routing with a fake clock: dedupe per device and rule, escalation past SLA, webhook retries and signature,
SMTP delivery to a local aiosmtpd server."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message

from central.alerting import outbox
from central.alerting.channels import SIGNATURE_HEADER, TIMESTAMP_HEADER, DeliveryError, NetworkSender
from central.alerting.router import AlertRouter
from central.alerting.rules import Channel, RuleSpec, save_rule
from central.runtime import Runtime
from central.store.alerts import NewAlert, insert_alerts
from central.store.console_config import ConsoleConfig
from tests.unit.central.conftest import FakeClock, enroll_agent


def _alert(runtime: Runtime, device_id: str, *, kind: str = "tamper.seq_gap", team: str = "collections") -> None:
    with runtime.db.write() as conn:
        insert_alerts(
            conn,
            [NewAlert(kind=kind, severity="high", event_seq=None)],
            device_id=device_id,
            team=team,
            now=runtime.clock(),
        )


def _rule(runtime: Runtime, **spec: Any) -> int:
    with runtime.db.write() as conn:
        return save_rule(conn, RuleSpec.model_validate({"name": "r"} | spec), now=runtime.clock())


class Recorder:
    def __init__(self, *, fail_first: int = 0) -> None:
        self.sent: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        self.fail_first = fail_first

    def __call__(self, channel: str, target: dict[str, Any], payload: dict[str, Any], config: ConsoleConfig) -> None:
        if self.fail_first > 0:
            self.fail_first -= 1
            raise DeliveryError("down")
        self.sent.append((channel, target, payload))


def test_second_alert_within_the_dedupe_window_is_closed_as_a_duplicate(runtime: Runtime, clock: FakeClock) -> None:
    device = enroll_agent(runtime).device_id
    _rule(
        runtime,
        kinds=["tamper.*"],
        dedupe_seconds=300,
        channels=[{"type": "webhook", "url": "http://127.0.0.1:9/hook"}],
    )
    router = AlertRouter(runtime.db, None, clock=clock)
    _alert(runtime, device)
    first = router.route_pending()
    clock.advance(timedelta(seconds=120))
    _alert(runtime, device)
    second = router.route_pending()
    clock.advance(timedelta(seconds=400))
    _alert(runtime, device)
    third = router.route_pending()

    assert first[0].deduped_of is None
    assert second[0].deduped_of == first[0].alert_id
    assert third[0].deduped_of is None
    assert len(outbox.pending(runtime.db)) == 2
    assert router.route_pending() == []


def test_an_alert_is_routed_once_by_two_routers(runtime: Runtime, clock: FakeClock) -> None:
    device = enroll_agent(runtime).device_id
    _alert(runtime, device)
    one = AlertRouter(runtime.db, None, clock=clock).route_pending()
    two = AlertRouter(runtime.db, None, clock=clock).route_pending()
    assert len(one) == 1
    assert two == []


def test_unacknowledged_alert_escalates_once_after_its_sla(runtime: Runtime, clock: FakeClock) -> None:
    device = enroll_agent(runtime).device_id
    _rule(runtime, kinds=["*"], sla_minutes=30, escalate_to=[{"type": "email", "to": ["lead@example.com"]}])
    router = AlertRouter(runtime.db, None, clock=clock)
    _alert(runtime, device)
    router.route_pending()
    clock.advance(timedelta(minutes=29))
    assert router.escalate_due() == []
    clock.advance(timedelta(minutes=2))
    escalated = router.escalate_due()
    assert len(escalated) == 1
    assert router.escalate_due() == []
    [mail] = outbox.pending(runtime.db)
    assert mail["channel"] == "email"
    assert mail["payload"]["escalated"] is True


def test_failed_deliveries_are_retried_with_backoff(runtime: Runtime, clock: FakeClock) -> None:
    device = enroll_agent(runtime).device_id
    _rule(runtime, channels=[{"type": "webhook", "url": "http://127.0.0.1:9/hook"}])
    AlertRouter(runtime.db, None, clock=clock).route_pending()
    _alert(runtime, device)
    AlertRouter(runtime.db, None, clock=clock).route_pending()
    sender = Recorder(fail_first=2)
    config = ConsoleConfig()
    assert outbox.deliver_due(runtime.db, sender, config, now=clock()) == 0
    assert outbox.deliver_due(runtime.db, sender, config, now=clock()) == 0  # not due again yet
    clock.advance(outbox.backoff(1))
    assert outbox.deliver_due(runtime.db, sender, config, now=clock()) == 0
    clock.advance(outbox.backoff(2))
    assert outbox.deliver_due(runtime.db, sender, config, now=clock()) == 1
    [row] = outbox.pending(runtime.db)
    assert row["attempts"] == 3
    assert row["delivered_at"] is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_webhook_is_signed_and_retried_against_a_real_http_server() -> None:
    received: list[tuple[dict[str, str], bytes]] = []
    statuses = [500, 204]

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(({k: v for k, v in self.headers.items()}, body))
            self.send_response(statuses.pop(0))
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        sender = NetworkSender(allow_internal=True)  # the receiver is on loopback
        config = ConsoleConfig(webhook_secret="s3cret")
        payload = {"text": "hello", "alert": {"id": 1}}
        with pytest.raises(DeliveryError, match="internal"):
            NetworkSender()("webhook", {"url": url}, payload, config)
        assert received == []
        with pytest.raises(DeliveryError, match="500"):
            sender("webhook", {"url": url}, payload, config)
        sender("webhook", {"url": url}, payload, config)
    finally:
        server.shutdown()
        server.server_close()
    headers, body = received[-1]
    stamp = headers[TIMESTAMP_HEADER]
    expected = "sha256=" + hmac.new(b"s3cret", stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == expected
    assert json.loads(body)["text"] == "hello"


def test_email_is_delivered_to_a_local_smtp_server() -> None:
    got: list[Any] = []
    done = threading.Event()

    class Collect(Message):
        def handle_message(self, message: Any) -> None:
            got.append(message)
            done.set()

    port = _free_port()
    controller = Controller(Collect(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        config = ConsoleConfig(smtp_host="127.0.0.1", smtp_port=port, smtp_from="dw@example.com")
        payload = {"text": "[HIGH] tamper.seq_gap on desk-1", "alert": {"id": 7, "playbook": {"steps": ["Call IT"]}}}
        NetworkSender()("email", {"to": ["lead@example.com"]}, payload, config)
        assert done.wait(10)
    finally:
        controller.stop()
    message = got[0]
    assert message["To"] == "lead@example.com"
    assert "tamper.seq_gap" in message["Subject"]
    assert "Call IT" in message.get_payload()


def test_console_channel_is_not_queued_and_unmatched_alerts_get_the_default_sla(
    runtime: Runtime, clock: FakeClock
) -> None:
    device = enroll_agent(runtime).device_id
    _rule(runtime, team="other-team", channels=[{"type": "webhook", "url": "http://127.0.0.1:9/x"}])
    _alert(runtime, device)
    [routed] = AlertRouter(runtime.db, None, clock=clock).route_pending()
    assert routed.rule_id is None
    assert outbox.pending(runtime.db) == []
    assert Channel(type="console").type == "console"
