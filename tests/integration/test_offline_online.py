"""Offline then online: events raised while the endpoint is down arrive exactly once when it returns."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_app.core.enrol import enrol_here
from agent_app.core.runtime import AgentRuntime
from policy_client.schema import Event, EventBatch, EventDraft, EventKind, IngestResult
from policy_client.secrets import SecretStore
from policy_client.transport import Transport
from tests.support.endpoint import EndpointProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

FAST_RETRY = {"backoff_base": 0.05, "backoff_cap": 0.5}


@pytest.fixture
def agent_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    home = tmp_path / "agent"
    home.mkdir()
    monkeypatch.setenv("DESKWARDEN_HOME", str(home))
    return home


def test_a_thousand_events_raised_offline_arrive_exactly_once(tmp_path: Path, agent_env: Path) -> None:
    endpoint = EndpointProcess(tmp_path / "server")
    endpoint.start()
    runtime: AgentRuntime | None = None
    try:
        device_id = enrol_here(endpoint.url, endpoint.enroll_token(), home=agent_env)
        api = endpoint.api_token()
        runtime = AgentRuntime(agent_env, collectors={}, uploader_options=FAST_RETRY)
        runtime.start()
        wait_for(lambda: bool(endpoint.events(api, kind="agent.started")), timeout=30, what="agent.started upload")

        endpoint.kill()
        for index in range(1000):
            runtime.record(EventDraft(kind=EventKind.download_detected, data={"name": f"file-{index}.pdf"}))
        assert runtime.flush(10)
        assert runtime.status().queue_depth >= 1000

        endpoint.start()
        wait_for(
            lambda: len(endpoint.events(api, kind="download.detected")) >= 1000,
            timeout=60,
            what="the offline backlog to arrive",
        )
        wait_for(lambda: runtime is not None and runtime.status().queue_depth == 0, timeout=30, what="an empty queue")

        stored = endpoint.events(api, device_id=device_id)
        seqs = [event["seq"] for event in stored]
        assert len(seqs) == len(set(seqs)), "an event was stored twice"
        assert sorted(seqs) == list(range(1, max(seqs) + 1)), "seqs are not gap-free"
        names = sorted(e["data"]["name"] for e in stored if e["kind"] == "download.detected")
        assert names == sorted(f"file-{index}.pdf" for index in range(1000))
        assert not [a for a in endpoint.alerts(api) if a["kind"].startswith("tamper.chain")], "chain broke"

        # A replayed batch is counted as duplicates and stored nowhere.
        replay = [Event.model_validate({k: e[k] for k in Event.model_fields}) for e in stored[:200]]
        credential = SecretStore(agent_env).get("device_credential")
        transport = Transport(endpoint.url, credential=credential)
        try:
            response = transport.post_json(
                "/v1/events", EventBatch(device_id=device_id, events=replay).model_dump_json().encode()
            )
        finally:
            transport.close()
        assert response.status_code == 200, response.text
        assert IngestResult.model_validate(response.json()) == IngestResult(accepted=0, duplicates=200)
        assert len(endpoint.events(api, device_id=device_id)) == len(stored)
    finally:
        if runtime is not None:
            runtime.stop(reason="test")
        endpoint.stop()
