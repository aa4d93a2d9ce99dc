"""The agent API over real uvicorn: 409 for another event under a stored seq (a resend stays a duplicate),
`last_seq`/`last_mac` in heartbeat answers for agents that ask, and an alert for an unpublished policy version."""

from __future__ import annotations

import pytest

from central.simulate import SimulatedAgent, batch_json
from policy_client.schema import SEQ_RESYNC_HEADER, EventKind, Heartbeat, HeartbeatResponse, Severity
from tests.integration.central.conftest import LiveEndpoint

pytestmark = pytest.mark.integration


def _alerts(endpoint: LiveEndpoint, kind: str) -> list[dict[str, object]]:
    answer = endpoint.client.get("/v1/alerts", params={"kind": kind}, headers=endpoint.api_headers())
    assert answer.status_code == 200, answer.text
    rows: list[dict[str, object]] = answer.json()
    return rows


def test_another_event_under_a_stored_seq_is_409_and_alerted(endpoint: LiveEndpoint) -> None:
    agent, auth = endpoint.enroll()
    sent = agent.events(3)
    assert endpoint.client.post("/v1/events", content=batch_json(agent.batch(sent)), headers=auth).status_code == 200
    reborn = SimulatedAgent(device_id=agent.device_id, chain_key=agent.chain_key, user=agent.user)
    quarantined = reborn.next_event(
        kind=EventKind.download_quarantined, severity=Severity.high, action="quarantined", data={"sha256": "cd" * 32}
    )

    refused = endpoint.client.post("/v1/events", content=batch_json(reborn.batch([quarantined])), headers=auth)
    resent = endpoint.client.post("/v1/events", content=batch_json(agent.batch(sent[:1])), headers=auth)

    assert refused.status_code == 409, refused.text
    assert "resynchronise" in refused.json()["detail"]
    assert resent.json() == {"accepted": 0, "duplicates": 1}
    [alert] = _alerts(endpoint, "tamper.seq_reuse")
    assert alert["device_id"] == agent.device_id
    assert alert["event_seq"] == 1


def test_heartbeat_answer_carries_the_chain_head_only_when_asked(endpoint: LiveEndpoint) -> None:
    agent, auth = endpoint.enroll()
    endpoint.client.post("/v1/events", content=batch_json(agent.batch(agent.events(4))), headers=auth)
    beat = Heartbeat(policy_version=1).model_dump_json()

    plain = endpoint.client.post("/v1/heartbeat", content=beat, headers=auth)
    asked = endpoint.client.post("/v1/heartbeat", content=beat, headers=auth | {SEQ_RESYNC_HEADER: "1"})

    assert plain.json() == {"policy_version": 1}  # what agents older than resync accept
    head = HeartbeatResponse.model_validate_json(asked.content)
    assert (head.last_seq, head.last_mac) == (4, agent.mac)


def test_heartbeat_advertising_an_unpublished_policy_version_raises_an_alert(endpoint: LiveEndpoint) -> None:
    agent, auth = endpoint.enroll()
    for version in (1, 42, 42):
        answer = endpoint.client.post(
            "/v1/heartbeat", content=Heartbeat(policy_version=version).model_dump_json(), headers=auth
        )
        assert answer.status_code == 200, answer.text
    [alert] = _alerts(endpoint, "tamper.policy_unknown")
    assert alert["device_id"] == agent.device_id
    assert alert["data"] == {
        "policy_version": 42,
        "newest_version": 1,
        "reason": "the device runs a policy version this endpoint never published",
    }
