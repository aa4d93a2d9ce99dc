"""The read API: API tokens only (admin or auditor), filters and paging over events, devices and alerts."""

from __future__ import annotations

import pytest

from central.simulate import batch_json
from policy_client.schema import EventKind
from tests.integration.central.conftest import LiveEndpoint

pytestmark = pytest.mark.integration


def test_read_api_needs_an_api_token(endpoint: LiveEndpoint) -> None:
    _agent, device_auth = endpoint.enroll()
    roles = {role: endpoint.api_headers(role) for role in ("admin", "auditor")}

    for path in ("/v1/events", "/v1/devices", "/v1/alerts"):
        assert endpoint.client.get(path).status_code == 401
        assert endpoint.client.get(path, headers={"Authorization": "Bearer dwa_wrong"}).status_code == 401
        assert endpoint.client.get(path, headers=device_auth).status_code == 401
        for headers in roles.values():
            assert endpoint.client.get(path, headers=headers).status_code == 200


def test_events_filter_by_device_kind_and_seq(endpoint: LiveEndpoint) -> None:
    one, one_auth = endpoint.enroll(team="a")
    two, two_auth = endpoint.enroll(team="b")
    events = [one.next_event(kind=EventKind.usb_mounted if i % 3 == 0 else EventKind.capture_hotkey) for i in range(9)]
    endpoint.client.post("/v1/events", content=batch_json(one.batch(events)), headers=one_auth)
    endpoint.client.post("/v1/events", content=batch_json(two.batch(two.events(4))), headers=two_auth)
    api = endpoint.api_headers()

    mine = endpoint.client.get("/v1/events", params={"device_id": one.device_id, "since_seq": 4}, headers=api).json()
    usb = endpoint.client.get("/v1/events", params={"kind": "usb.mounted"}, headers=api).json()
    team_b = endpoint.client.get("/v1/events", params={"team": "b"}, headers=api).json()
    page = endpoint.client.get("/v1/events", params={"limit": 5}, headers=api).json()
    rest = endpoint.client.get("/v1/events", params={"after_pk": page[-1]["pk"], "limit": 100}, headers=api).json()

    assert [e["seq"] for e in mine] == [5, 6, 7, 8, 9]
    assert {e["device_id"] for e in mine} == {one.device_id}
    assert [e["seq"] for e in usb] == [1, 4, 7]
    assert {e["device_id"] for e in team_b} == {two.device_id}
    assert len(page) + len(rest) == 13
    sample = mine[0]
    assert set(sample) >= {"id", "device_id", "seq", "ts", "kind", "severity", "user", "action", "rule", "data", "mac"}
    assert sample["rule"] == {"id": "clipboard.mask", "policy_version": 1}
    assert sample["mac"] == events[4].mac


def test_bad_query_parameters_are_422(endpoint: LiveEndpoint) -> None:
    api = endpoint.api_headers()
    answer = endpoint.client.get("/v1/events", params={"limit": 0}, headers=api)
    assert answer.status_code == 422
    assert "limit" in answer.json()["detail"]
    assert endpoint.client.get("/v1/alerts", params={"after_id": "x"}, headers=api).status_code == 422


def test_devices_list_shows_team_user_and_online(endpoint: LiveEndpoint) -> None:
    agent, _auth = endpoint.enroll(team="health", user="li")

    (device,) = endpoint.client.get("/v1/devices", headers=endpoint.api_headers()).json()

    assert device["device_id"] == agent.device_id
    assert (device["team"], device["hostname"], device["user"], device["online"]) == ("health", "desk-1", "li", True)
    assert device["last_seen"] is not None
