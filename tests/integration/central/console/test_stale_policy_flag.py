"""The devices page flags desks running an older policy than the current one, and a version never published."""

from __future__ import annotations

import html
import re

import httpx

from central.store import policies
from policy_client.schema import PolicyDocument
from tests.integration.central.console.live import Console


def test_devices_page_flags_desks_behind_the_current_policy_and_unknown_versions(console: Console) -> None:
    console.user("sam", "admin")
    runtime = console.runtime
    policies.publish(runtime.db, runtime.signer, PolicyDocument(version=2), author="test", now=runtime.clock())
    desks = {
        version: console.enroll(team="team-a", hostname=f"desk-v{version}") for version in (1, 2, 9)
    }  # behind, current, never published
    for version, (_agent, headers) in desks.items():
        answer = httpx.post(f"{console.url}/v1/heartbeat", json={"policy_version": version}, headers=headers)
        assert answer.status_code == 200, answer.text

    page = console.login("sam").get("/console/devices").text

    found = re.findall(r'<tr id="device-(\w+)".*?<td data-policy="(\w*)">(.*?)</td>', page, flags=re.S)
    states = {device_id: state for device_id, state, _cell in found}
    cells = {device_id: html.unescape(cell) for device_id, _state, cell in found}
    behind, current, unknown = (desks[v][0].device_id for v in (1, 2, 9))
    assert states == {behind: "stale", current: "current", unknown: "unknown"}
    assert "older than v2" in cells[behind]
    assert "badge" not in cells[current]
    assert "never published" in cells[unknown]
