"""Unlock tokens in the store: issuing registers and audits, the device verifies them with the pinned policy key,
and reported uses mark the token used or, for a token the endpoint never issued to that device, raise an alert."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from central.alerting.classify import classify_events
from central.runtime import Runtime
from central.simulate import SimulatedAgent
from central.store import alerts, audit, events, unlock_tokens
from central.store.ingest import ingest_batch
from policy_client.schema import EventKind, Severity
from policy_client.unlock_token import UnlockTokenError, verify_unlock_token
from tests.unit.central.conftest import FakeClock, enroll_agent


def _issue(runtime: Runtime, device_id: str, **overrides: Any) -> unlock_tokens.IssuedUnlock:
    request: dict[str, Any] = {"scope": "quit", "minutes": 30, "ttl": timedelta(hours=8), "actor": "sam"}
    return unlock_tokens.issue(runtime.db, runtime.signer, device_id, now=runtime.clock(), **(request | overrides))


def _report_use(runtime: Runtime, agent: SimulatedAgent, data: dict[str, Any], *, ts_offset_s: int = 0) -> None:
    event = agent.next_event(
        kind=EventKind.agent_unlock_used,
        severity=Severity.info,
        action="allowed",
        data=data,
        ts=runtime.clock() + timedelta(seconds=ts_offset_s),
    )
    ingest_batch(runtime.db, agent.device_id, agent.batch([event]), now=runtime.clock(), classify=classify_events)


def _alerts(runtime: Runtime, device_id: str) -> list[dict[str, Any]]:
    return alerts.list_alerts(runtime.db, device_id=device_id)


def test_issued_token_verifies_on_its_device_and_is_registered_and_audited(runtime: Runtime) -> None:
    agent = enroll_agent(runtime, team="kyc")

    issued = _issue(runtime, agent.device_id)

    token = verify_unlock_token(
        issued.text, device_id=agent.device_id, public_key=runtime.signer.public_raw, now=runtime.clock()
    )
    assert token == issued.token
    assert (token.scope, token.minutes, token.expires_at) == ("quit", 30, runtime.clock() + timedelta(hours=8))
    (row,) = unlock_tokens.list_issued(runtime.db, device_id=agent.device_id)
    assert row["token_id"] == token.token_id
    assert (row["team"], row["scope"], row["minutes"], row["issued_by"]) == ("kyc", "quit", 30, "sam")
    assert row["expires_at"] == token.expires_at
    assert (row["used_at"], row["used_seq"]) == (None, None)
    (entry,) = [e for e in audit.list_entries(runtime.db) if e["action"] == "device.unlock_token"]
    assert (entry["actor"], entry["target"], entry["team"]) == ("sam", agent.device_id, "kyc")
    assert entry["after"]["token_id"] == token.token_id
    assert issued.text not in str(entry)


def test_token_does_not_verify_on_another_device(runtime: Runtime) -> None:
    one, two = enroll_agent(runtime), enroll_agent(runtime)
    issued = _issue(runtime, one.device_id, scope="uninstall")
    with pytest.raises(UnlockTokenError) as refused:
        verify_unlock_token(
            issued.text, device_id=two.device_id, public_key=runtime.signer.public_raw, now=runtime.clock()
        )
    assert refused.value.reason == "bad_signature"


def test_uninstall_tokens_carry_no_minutes(runtime: Runtime) -> None:
    agent = enroll_agent(runtime)
    issued = _issue(runtime, agent.device_id, scope="uninstall", minutes=90)
    assert (issued.token.scope, issued.token.minutes) == ("uninstall", 0)


@pytest.mark.parametrize(
    "overrides",
    [
        {"scope": "reboot"},
        {"minutes": 0},
        {"minutes": unlock_tokens.MAX_QUIT_MINUTES + 1},
        {"ttl": timedelta(0)},
        {"ttl": unlock_tokens.MAX_TTL + timedelta(seconds=1)},
    ],
)
def test_bad_requests_are_refused_and_nothing_is_registered(runtime: Runtime, overrides: dict[str, Any]) -> None:
    agent = enroll_agent(runtime)
    with pytest.raises(ValueError, match=r"scope|minutes|expire"):
        _issue(runtime, agent.device_id, **overrides)
    assert unlock_tokens.list_issued(runtime.db) == []


def test_unknown_device_is_refused(runtime: Runtime) -> None:
    with pytest.raises(unlock_tokens.UnknownDevice):
        _issue(runtime, "no-such-device")
    assert unlock_tokens.list_issued(runtime.db) == []


def test_reported_use_of_an_issued_token_marks_it_used_without_an_alert(runtime: Runtime) -> None:
    agent = enroll_agent(runtime)
    issued = _issue(runtime, agent.device_id)

    _report_use(runtime, agent, {"token_id": issued.token.token_id, "scope": "quit", "minutes": 30})

    assert _alerts(runtime, agent.device_id) == []
    (row,) = unlock_tokens.list_issued(runtime.db)
    assert (row["used_at"], row["used_seq"]) == (runtime.clock(), 1)
    stored = events.list_events(runtime.db, device_id=agent.device_id, kind="agent.unlock_used")
    assert [e["data"]["token_id"] for e in stored] == [issued.token.token_id]


def test_first_use_is_kept_when_uses_arrive_late_or_out_of_order(runtime: Runtime, clock: FakeClock) -> None:
    agent = enroll_agent(runtime)
    token_id = _issue(runtime, agent.device_id).token.token_id
    clock.advance(timedelta(minutes=10))

    _report_use(runtime, agent, {"token_id": token_id, "scope": "quit", "minutes": 30})
    _report_use(runtime, agent, {"token_id": token_id.upper()}, ts_offset_s=-300)  # an earlier use, sent later
    _report_use(runtime, agent, {"token_id": token_id}, ts_offset_s=600)

    (row,) = unlock_tokens.list_issued(runtime.db)
    assert (row["used_at"], row["used_seq"]) == (clock.now - timedelta(seconds=300), 2)
    assert _alerts(runtime, agent.device_id) == []


def test_use_of_a_token_never_issued_is_a_forgery_alert(runtime: Runtime) -> None:
    agent = enroll_agent(runtime)
    _issue(runtime, agent.device_id)

    _report_use(runtime, agent, {"token_id": "00112233445566ff", "scope": "uninstall", "minutes": 0})

    (alert,) = _alerts(runtime, agent.device_id)
    assert (alert["kind"], alert["severity"], alert["event_seq"]) == (alerts.UNLOCK_FORGED, "high", 1)
    assert alert["data"]["token_id"] == "00112233445566ff"
    assert alert["data"]["reason"] == "no token with this id was issued"
    assert [r["used_at"] for r in unlock_tokens.list_issued(runtime.db)] == [None]


def test_use_of_another_devices_token_is_a_forgery_alert_and_leaves_it_unused(runtime: Runtime) -> None:
    mine, other = enroll_agent(runtime, team="a"), enroll_agent(runtime, team="b")
    token_id = _issue(runtime, other.device_id).token.token_id

    _report_use(runtime, mine, {"token_id": token_id, "scope": "quit", "minutes": 30})

    (alert,) = _alerts(runtime, mine.device_id)
    assert alert["kind"] == alerts.UNLOCK_FORGED
    assert alert["team"] == "a"
    assert alert["data"]["reason"] == "the token was issued for another device"
    assert other.device_id not in str(alert["data"])
    assert _alerts(runtime, other.device_id) == []
    assert [r["used_at"] for r in unlock_tokens.list_issued(runtime.db)] == [None]


@pytest.mark.parametrize(
    "data",
    [{}, {"token_id": 42}, {"token_id": "not-hex-at-all!!"}, {"token_id": "0011"}, {"scope": "uninstall"}],
)
def test_use_reports_naming_no_valid_token_id_are_forgery_alerts(runtime: Runtime, data: dict[str, Any]) -> None:
    agent = enroll_agent(runtime)
    _report_use(runtime, agent, data)
    assert [a["kind"] for a in _alerts(runtime, agent.device_id)] == [alerts.UNLOCK_FORGED]


def test_use_reported_with_another_scope_than_issued_is_a_forgery_alert(runtime: Runtime) -> None:
    agent = enroll_agent(runtime)
    token_id = _issue(runtime, agent.device_id, scope="quit").token.token_id

    _report_use(runtime, agent, {"token_id": token_id, "scope": "uninstall", "minutes": 0})

    (alert,) = _alerts(runtime, agent.device_id)
    assert alert["kind"] == alerts.UNLOCK_FORGED
    assert "issued for quit" in alert["data"]["reason"]


def test_replayed_use_report_changes_nothing(runtime: Runtime) -> None:
    agent = enroll_agent(runtime)
    event = agent.next_event(kind=EventKind.agent_unlock_used, data={"token_id": "ffffffffffffffff"})
    batch = agent.batch([event])

    ingest_batch(runtime.db, agent.device_id, batch, now=runtime.clock(), classify=classify_events)
    ingest_batch(runtime.db, agent.device_id, batch, now=runtime.clock(), classify=classify_events)

    assert [a["kind"] for a in _alerts(runtime, agent.device_id)] == [alerts.UNLOCK_FORGED]
