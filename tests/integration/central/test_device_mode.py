"""A device's mode (protected by a privileged service, or unprotected) from its heartbeat, in the read API."""

from __future__ import annotations

import pytest

from tests.integration.central.conftest import LiveEndpoint

pytestmark = pytest.mark.integration


def _modes(endpoint: LiveEndpoint) -> dict[str, str]:
    answer = endpoint.client.get("/v1/devices", headers=endpoint.api_headers())
    assert answer.status_code == 200, answer.text
    return {d["device_id"]: d["mode"] for d in answer.json()}


def test_heartbeat_mode_shows_in_the_device_list(endpoint: LiveEndpoint) -> None:
    guarded, guarded_auth = endpoint.enroll(user="asha")
    demo, demo_auth = endpoint.enroll(user="li")
    silent, _silent_auth = endpoint.enroll(user="ravi")

    assert endpoint.client.post("/v1/heartbeat", json={"mode": "protected"}, headers=guarded_auth).status_code == 200
    assert endpoint.client.post("/v1/heartbeat", json={"mode": "unprotected"}, headers=demo_auth).status_code == 200

    assert _modes(endpoint) == {
        guarded.device_id: "protected",
        demo.device_id: "unprotected",
        silent.device_id: "unprotected",  # no heartbeat yet: nothing says a privileged service runs there
    }


def test_an_older_agents_heartbeat_without_mode_counts_as_unprotected(endpoint: LiveEndpoint) -> None:
    agent, auth = endpoint.enroll()
    endpoint.client.post("/v1/heartbeat", json={"mode": "protected"}, headers=auth)
    assert _modes(endpoint) == {agent.device_id: "protected"}

    endpoint.client.post("/v1/heartbeat", json={"queue_depth": 3}, headers=auth)

    assert _modes(endpoint) == {agent.device_id: "unprotected"}


def test_an_unknown_mode_is_refused(endpoint: LiveEndpoint) -> None:
    _agent, auth = endpoint.enroll()
    answer = endpoint.client.post("/v1/heartbeat", json={"mode": "root"}, headers=auth)
    assert answer.status_code == 422
