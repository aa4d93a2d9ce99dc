"""What the person must act on (an overdue acknowledgement) reaches the endpoint with the next heartbeat."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from agent_app.core.enrol import enrol_here
from agent_app.core.runtime import AgentRuntime
from tests.support.endpoint import EndpointProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

OVERDUE = "Policy acknowledgement is overdue"


def test_attention_reasons_show_on_the_endpoints_device_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    home = tmp_path / "agent"
    home.mkdir()
    endpoint = EndpointProcess(tmp_path / "server")
    endpoint.start()
    runtime: AgentRuntime | None = None
    try:
        device_id = enrol_here(endpoint.url, endpoint.enroll_token(), home=home)
        token = endpoint.api_token()
        runtime = AgentRuntime(home, collectors={})
        runtime.start()

        def device() -> dict[str, Any]:
            answer = requests.get(endpoint.url + "/v1/devices", headers={"Authorization": f"Bearer {token}"}, timeout=5)
            answer.raise_for_status()
            rows: list[dict[str, Any]] = answer.json()
            return next(row for row in rows if row["device_id"] == device_id)

        wait_for(lambda: device()["last_heartbeat"] is not None, timeout=20, what="the first heartbeat")
        runtime.set_attention((OVERDUE,))
        wait_for(lambda: device()["attention"] == [OVERDUE], timeout=20, what="the attention reason")
        runtime.set_attention(())
        wait_for(lambda: device()["attention"] == [], timeout=20, what="the reason to clear")
    finally:
        if runtime is not None:
            runtime.stop(reason="test")
        endpoint.stop()
