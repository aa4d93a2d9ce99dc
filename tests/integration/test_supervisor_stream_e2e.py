"""A supervisor's desktop client receives an agent's alert live from a real endpoint's stream."""

from __future__ import annotations

import queue
from pathlib import Path

import pytest

from agent_app.core.enrol import enrol_here
from agent_app.core.runtime import AgentRuntime
from agent_app.core.supervisor_alerts import SseAlertClient, SupervisorAlert
from policy_client.schema import EventDraft, EventKind, Severity
from tests.support.endpoint import EndpointProcess

pytestmark = pytest.mark.integration


def test_a_tamper_event_reaches_the_supervisor_tray_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    home = tmp_path / "agent"
    home.mkdir()
    endpoint = EndpointProcess(tmp_path / "server")
    endpoint.start()
    received: queue.Queue[SupervisorAlert] = queue.Queue()
    client = SseAlertClient(endpoint.url, endpoint.api_token())
    runtime: AgentRuntime | None = None
    try:
        client.start(received.put)
        assert client.connected.wait(15), "the alert stream did not open"
        device_id = enrol_here(endpoint.url, endpoint.enroll_token("blue"), home=home)
        runtime = AgentRuntime(home, collectors={})
        runtime.start()
        runtime.record(EventDraft(kind=EventKind.agent_tamper, severity=Severity.high, data={"reason": "test"}))
        alert = received.get(timeout=20)
        while alert.device_id != device_id:
            alert = received.get(timeout=20)
        assert alert.team == "blue"
        assert alert.url.startswith(endpoint.url + "/console/alerts/")
    finally:
        client.stop()
        if runtime is not None:
            runtime.stop(reason="test")
        endpoint.stop()
