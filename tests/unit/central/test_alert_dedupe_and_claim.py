"""Routing: dedupe keys on the alert's kind and subject, not only rule and device; a claim is won by one router.

Fake clock; SQLite and (marker postgres) PostgreSQL, where the claim's `rowcount` used to read -1.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import JsonValue

from central.alerting import outbox
from central.alerting.router import AlertRouter, Routed
from central.alerting.rules import RuleSpec, save_rule
from central.runtime import Runtime
from central.store.alerts import NewAlert, insert_alerts
from central.store.console_tables import alert_workflow
from tests.unit.central.conftest import FakeClock, enroll_agent

WEBHOOK = [{"type": "webhook", "url": "http://127.0.0.1:9/hook"}]


def _rule(runtime: Runtime, **spec: Any) -> int:
    with runtime.db.write() as conn:
        return save_rule(conn, RuleSpec.model_validate({"name": "all"} | spec), now=runtime.clock())


def _raise(runtime: Runtime, device_id: str, kind: str, data: dict[str, JsonValue] | None = None) -> None:
    with runtime.db.write() as conn:
        insert_alerts(
            conn,
            [NewAlert(kind=kind, severity="high", event_seq=None, data=data or {})],
            device_id=device_id,
            team="collections",
            now=runtime.clock(),
        )


def _route_after(runtime: Runtime, router: AlertRouter, clock: FakeClock, seconds: int, *alert: Any) -> Routed:
    clock.advance(timedelta(seconds=seconds))
    _raise(runtime, *alert)
    [routed] = router.route_pending()
    return routed


def test_a_capture_tool_alert_is_not_a_duplicate_of_a_download_alert_20s_earlier(
    runtime: Runtime, clock: FakeClock
) -> None:
    device = enroll_agent(runtime).device_id
    _rule(runtime, kinds=["*"], dedupe_seconds=300, channels=WEBHOOK)
    router = AlertRouter(runtime.db, None, clock=clock)
    download = _route_after(runtime, router, clock, 0, device, "download.quarantined", {"sha256": "ab" * 32})
    capture = _route_after(runtime, router, clock, 20, device, "capture.tool_started", {"name": "flameshot"})
    assert download.deduped_of is None
    assert capture.deduped_of is None
    assert len(outbox.pending(runtime.db)) == 2  # both paged


def test_an_exception_request_is_not_a_duplicate_of_a_missed_clean_desk(runtime: Runtime, clock: FakeClock) -> None:
    device = enroll_agent(runtime).device_id
    _rule(runtime, kinds=["*"], dedupe_seconds=300, channels=WEBHOOK)
    router = AlertRouter(runtime.db, None, clock=clock)
    missed = _route_after(runtime, router, clock, 0, device, "cleandesk.missed", {"slot": "13:00"})
    request = _route_after(runtime, router, clock, 20, device, "usb.exception_requested", {"serial": "4C53"})
    assert (missed.deduped_of, request.deduped_of) == (None, None)
    assert len(outbox.pending(runtime.db)) == 2


def test_the_same_kind_and_subject_is_still_deduped_and_another_subject_is_not(
    runtime: Runtime, clock: FakeClock
) -> None:
    device = enroll_agent(runtime).device_id
    _rule(runtime, kinds=["*"], dedupe_seconds=300, channels=WEBHOOK)
    router = AlertRouter(runtime.db, None, clock=clock)
    first = _route_after(runtime, router, clock, 0, device, "capture.tool_started", {"name": "flameshot", "pid": 10})
    again = _route_after(runtime, router, clock, 30, device, "capture.tool_started", {"name": "flameshot", "pid": 11})
    other = _route_after(runtime, router, clock, 30, device, "capture.tool_started", {"name": "ShareX.exe", "pid": 12})
    assert first.deduped_of is None
    assert again.deduped_of == first.alert_id  # a restarted tool (new pid) is the same subject
    assert other.deduped_of is None
    assert len(outbox.pending(runtime.db)) == 2


def test_a_claim_already_taken_is_refused(runtime: Runtime, clock: FakeClock) -> None:
    """Two routers that both listed the alert before either claimed it: only one may route it."""
    device = enroll_agent(runtime).device_id
    _raise(runtime, device, "tamper.seq_gap")
    values = {
        "alert_id": 1,
        "team": "collections",
        "device_id": device,
        "rule_id": None,
        "routed_at": clock(),
        "deduped_of": None,
        "sla_due_at": clock(),
        "escalation_level": 0,
        "incident": False,
    }
    one, two = AlertRouter(runtime.db, None, clock=clock), AlertRouter(runtime.db, None, clock=clock)
    with runtime.db.write() as conn:
        assert one._claim(conn, values) is True
    with runtime.db.write() as conn:
        assert two._claim(conn, values) is False
    with runtime.db.read() as conn:
        assert len(conn.execute(alert_workflow.select()).all()) == 1
