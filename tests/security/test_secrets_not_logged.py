"""A full agent + endpoint run with DEBUG logging captured: no secret and no injected raw PII may appear in any log.

The agent runs in this process (its log records are captured); the endpoint is its own process (its log file is read).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from agent_app.core.enrol import enrol_here
from agent_app.core.runtime import AgentRuntime
from collectors.downloads.collector import DownloadsCollector
from policy_client.secrets import FILE_NAME, SecretStore, load_or_create_keys
from tests.support.endpoint import EndpointProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

CARD = "4111 1111 1111 1111"
CARD_DIGITS = CARD.replace(" ", "")
EMAIL = "priya.sharma@example.in"


def test_no_secret_or_raw_pii_reaches_any_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    downloads = tmp_path / "user" / "Downloads"
    downloads.mkdir(parents=True)
    home = tmp_path / "agent"
    home.mkdir()
    monkeypatch.setenv("DESKWARDEN_HOME", str(home))
    caplog.set_level(logging.DEBUG)

    endpoint = EndpointProcess(tmp_path / "server")
    endpoint.start()
    runtime: AgentRuntime | None = None
    try:
        enroll_token = endpoint.enroll_token()
        api = endpoint.api_token()
        device_id = enrol_here(endpoint.url, enroll_token, home=home)
        keys = load_or_create_keys(SecretStore(home))
        collector = DownloadsCollector(quarantine_dir=home / "quarantine", hash_key=keys.chain_key, settle_seconds=0.1)
        runtime = AgentRuntime(home, collectors={"downloads": collector})
        runtime.start()
        wait_for(lambda: bool(endpoint.events(api, kind="agent.started")), timeout=30, what="agent.started upload")
        (downloads / "customers.csv").write_text(f"name,card,email\nPriya,{CARD},{EMAIL}\n", encoding="utf-8")
        wait_for(
            lambda: any("card" in json.dumps(e["data"]) for e in endpoint.events(api, kind="download.detected")),
            timeout=30,
            what="the scanned download to reach the endpoint",
        )
        uploaded = json.dumps(endpoint.events(api, device_id=device_id))
    finally:
        if runtime is not None:
            runtime.stop(reason="test")
        endpoint.stop()

    stored = json.loads((home / FILE_NAME).read_text()) if (home / FILE_NAME).exists() else {}
    secrets = {
        "enrolment token": enroll_token,
        "API token": api,
        "device credential": SecretStore(home).get("device_credential") or "",
        "card number": CARD,
        "card digits": CARD_DIGITS,
        "e-mail address": EMAIL,
        **{f"stored secret {name}": str(value) for name, value in stored.items() if len(str(value)) >= 16},
        "data key (hex)": keys.data_key.hex(),
        "chain key (hex)": keys.chain_key.hex(),
    }
    assert secrets["device credential"], "enrolment should have stored a device credential"
    agent_log = "\n".join(record.getMessage() + "\n" + (record.exc_text or "") for record in caplog.records)
    logs = {"agent (captured)": agent_log, "endpoint": (tmp_path / "server" / "server.log").read_text()}
    logs |= {f"file {p.name}": p.read_text(errors="replace") for p in home.rglob("*.log")}
    assert len(agent_log) > 200, "the run should have logged something at DEBUG"
    found = [f"{what} in {where}" for where, text in logs.items() for what, value in secrets.items() if value in text]
    assert not found, "secrets in logs: " + ", ".join(found)
    assert device_id
    for raw in (CARD, CARD_DIGITS, EMAIL):
        assert raw not in uploaded, "raw PII left the agent in an event"
