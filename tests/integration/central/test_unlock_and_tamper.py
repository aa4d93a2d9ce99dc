"""Unlock tokens and tamper reasons through the running endpoint: the CLI command issues a token the device
verifies with the key it got at enrolment; `agent.unlock_used` and `agent.tamper` events posted by an agent
raise (or do not raise) the alerts the read API lists."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import pytest

from central import commands
from central.simulate import SimulatedAgent, batch_json
from central.store import audit, unlock_tokens
from policy_client.schema import EventKind, Severity, utc_now
from policy_client.unlock_token import UnlockTokenError, verify_unlock_token
from tests.integration.central.conftest import LiveEndpoint

pytestmark = pytest.mark.integration


def _enroll(endpoint: LiveEndpoint, *, team: str = "collections") -> tuple[SimulatedAgent, dict[str, str], bytes]:
    """A simulated agent, its Authorization header, and the raw policy key it pinned at enrolment."""
    token = commands.issue_enroll_token(endpoint.settings, team, timedelta(hours=1))
    agent = SimulatedAgent(user="asha")
    answer = endpoint.client.post(
        "/v1/enroll",
        json={"token": token, "hostname": "desk-4", "os": "linux", "user": "asha", "chain_key": agent.chain_key_b64},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    agent.device_id = body["device_id"]
    return agent, {"Authorization": f"Bearer {body['credential']}"}, base64.b64decode(body["policy_public_key"])


def _post(endpoint: LiveEndpoint, agent: SimulatedAgent, auth: dict[str, str], kind: EventKind, data: Any) -> None:
    event = agent.next_event(kind=kind, severity=Severity.high, data=data, action="allowed")
    answer = endpoint.client.post("/v1/events", content=batch_json(agent.batch([event])), headers=auth)
    assert answer.json() == {"accepted": 1, "duplicates": 0}, answer.text


def _alerts(endpoint: LiveEndpoint, device_id: str) -> list[dict[str, Any]]:
    answer = endpoint.client.get("/v1/alerts", params={"device_id": device_id}, headers=endpoint.api_headers())
    assert answer.status_code == 200, answer.text
    alerts: list[dict[str, Any]] = answer.json()
    return alerts


def test_cli_issues_a_token_the_device_verifies_and_it_is_registered_and_audited(endpoint: LiveEndpoint) -> None:
    agent, _auth, pinned = _enroll(endpoint, team="kyc")

    text = commands.issue_unlock_token(
        endpoint.settings, agent.device_id, scope="uninstall", ttl=timedelta(hours=2), actor="cli:ops"
    )

    token = verify_unlock_token(text, device_id=agent.device_id, public_key=pinned, now=utc_now())
    assert (token.scope, token.minutes) == ("uninstall", 0)
    assert timedelta(hours=1, minutes=59) < token.expires_at - utc_now() <= timedelta(hours=2)
    (row,) = unlock_tokens.list_issued(endpoint.runtime.db, device_id=agent.device_id)
    assert (row["token_id"], row["team"], row["issued_by"]) == (token.token_id, "kyc", "cli:ops")
    entries = [e for e in audit.list_entries(endpoint.runtime.db) if e["action"] == "device.unlock_token"]
    assert [(e["actor"], e["target"], e["after"]["token_id"]) for e in entries] == [
        ("cli:ops", agent.device_id, token.token_id)
    ]


def test_cli_defaults_to_quitting_for_an_hour_within_eight_hours(endpoint: LiveEndpoint) -> None:
    agent, _auth, pinned = _enroll(endpoint)
    text = commands.issue_unlock_token(endpoint.settings, agent.device_id)
    token = verify_unlock_token(text, device_id=agent.device_id, public_key=pinned, now=utc_now())
    assert (token.scope, token.minutes) == ("quit", 60)
    assert timedelta(hours=7, minutes=59) < token.expires_at - utc_now() <= timedelta(hours=8)
    assert unlock_tokens.list_issued(endpoint.runtime.db)[0]["issued_by"] == "cli"


def test_cli_refuses_unknown_devices_and_bad_requests(endpoint: LiveEndpoint) -> None:
    agent, _auth, _pinned = _enroll(endpoint)
    with pytest.raises(ValueError, match="no device"):
        commands.issue_unlock_token(endpoint.settings, "nope")
    with pytest.raises(ValueError, match="minutes"):
        commands.issue_unlock_token(endpoint.settings, agent.device_id, minutes=0)
    with pytest.raises(ValueError, match="scope"):
        commands.issue_unlock_token(endpoint.settings, agent.device_id, scope="forever")
    assert unlock_tokens.list_issued(endpoint.runtime.db) == []


def test_reported_use_of_an_issued_token_raises_no_alert_and_marks_it_used(endpoint: LiveEndpoint) -> None:
    agent, auth, pinned = _enroll(endpoint)
    text = commands.issue_unlock_token(endpoint.settings, agent.device_id, minutes=15)
    token = verify_unlock_token(text, device_id=agent.device_id, public_key=pinned, now=utc_now())

    use = {"token_id": token.token_id, "scope": "quit", "minutes": 15}
    _post(endpoint, agent, auth, EventKind.agent_unlock_used, use)

    assert _alerts(endpoint, agent.device_id) == []
    (row,) = unlock_tokens.list_issued(endpoint.runtime.db)
    assert row["used_at"] is not None
    assert row["used_seq"] == 1
    stored = endpoint.client.get(
        "/v1/events", params={"device_id": agent.device_id, "kind": "agent.unlock_used"}, headers=endpoint.api_headers()
    ).json()
    assert [e["data"]["token_id"] for e in stored] == [token.token_id]


def test_reported_use_of_an_unknown_token_is_a_forgery_alert(endpoint: LiveEndpoint) -> None:
    agent, auth, _pinned = _enroll(endpoint)

    _post(endpoint, agent, auth, EventKind.agent_unlock_used, {"token_id": "0123456789abcdef", "scope": "uninstall"})

    (alert,) = _alerts(endpoint, agent.device_id)
    assert (alert["kind"], alert["severity"], alert["event_seq"]) == ("tamper.unlock_forged", "high", 1)
    assert alert["data"]["token_id"] == "0123456789abcdef"


def test_a_token_issued_for_device_a_reported_by_device_b_is_a_forgery_alert(endpoint: LiveEndpoint) -> None:
    a, _auth_a, pinned = _enroll(endpoint, team="team-a")
    b, auth_b, _pinned_b = _enroll(endpoint, team="team-b")
    text = commands.issue_unlock_token(endpoint.settings, a.device_id)
    token = verify_unlock_token(text, device_id=a.device_id, public_key=pinned, now=utc_now())
    with pytest.raises(UnlockTokenError):
        verify_unlock_token(text, device_id=b.device_id, public_key=pinned, now=utc_now())

    use = {"token_id": token.token_id, "scope": "quit", "minutes": 60}
    _post(endpoint, b, auth_b, EventKind.agent_unlock_used, use)

    (alert,) = _alerts(endpoint, b.device_id)
    assert (alert["kind"], alert["team"]) == ("tamper.unlock_forged", "team-b")
    assert _alerts(endpoint, a.device_id) == []
    assert unlock_tokens.list_issued(endpoint.runtime.db)[0]["used_at"] is None


def test_keyring_unavailable_is_kept_without_an_alert_and_helper_stopped_is_alerted(endpoint: LiveEndpoint) -> None:
    agent, auth, _pinned = _enroll(endpoint)

    _post(endpoint, agent, auth, EventKind.agent_tamper, {"reason": "keyring_unavailable", "detail": "no D-Bus"})
    assert _alerts(endpoint, agent.device_id) == []
    _post(endpoint, agent, auth, EventKind.agent_tamper, {"reason": "helper_stopped", "user": "asha"})

    assert [(a["kind"], a["severity"], a["event_seq"]) for a in _alerts(endpoint, agent.device_id)] == [
        ("tamper.helper_stopped", "high", 2)
    ]
    stored = endpoint.client.get(
        "/v1/events", params={"device_id": agent.device_id, "kind": "agent.tamper"}, headers=endpoint.api_headers()
    ).json()
    assert [e["data"]["reason"] for e in stored] == ["keyring_unavailable", "helper_stopped"]
