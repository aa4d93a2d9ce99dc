"""Over HTTP and in a real server process: an admin cannot point a webhook at internal addresses unless the
operator allows it, and a hostname with a newline cannot forge a line in the server log."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from central import commands
from central.alerting.rules import Channel, RuleSpec, list_rules
from central.settings import ServerSettings
from central.simulate import SimulatedAgent
from tests.integration.central.console.live import Console, csrf_of, serve_console
from tests.support.endpoint import EndpointProcess

pytestmark = pytest.mark.integration

INTERNAL = [
    "http://127.0.0.1:5432/",
    "http://localhost:6379/",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.20.30.40/hook",
    "http://[::1]/hook",
]


def _save(client: httpx.Client, spec: RuleSpec) -> httpx.Response:
    csrf = csrf_of(client.get("/console/rules").text)
    return client.post("/console/rules", data={"csrf_token": csrf, "spec": spec.model_dump_json()})


@pytest.mark.parametrize("url", INTERNAL)
def test_a_rule_with_an_internal_webhook_is_refused(console: Console, url: str) -> None:
    console.user("ada", "admin")
    client = console.login("ada")

    direct = _save(client, RuleSpec(name="r", channels=[Channel(type="webhook", url=url)]))  # type: ignore[arg-type]
    escalation = _save(client, RuleSpec(name="r", escalate_to=[Channel(type="webhook", url=url)]))  # type: ignore[arg-type]

    for answer in (direct, escalation):
        assert answer.status_code == 303
        assert "internal" in httpx.URL(answer.headers["location"]).params["err"]
    assert list_rules(console.runtime.db) == []


def test_internal_webhooks_are_accepted_when_the_operator_allows_them(tmp_path: Path) -> None:
    settings = replace(ServerSettings(data_dir=tmp_path / "server", port=0), allow_internal_webhooks=True)
    with serve_console(settings) as console:
        console.user("ada", "admin")
        client = console.login("ada")

        answer = _save(client, RuleSpec(name="r", channels=[Channel(type="webhook", url=INTERNAL[0])]))  # type: ignore[arg-type]

        assert "msg=" in answer.headers["location"]
        assert len(list_rules(console.runtime.db)) == 1


def test_the_allowance_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert ServerSettings(data_dir=tmp_path).allow_internal_webhooks is False
    monkeypatch.setenv("DESKWARDEN_ALLOW_INTERNAL_WEBHOOKS", "yes")
    assert ServerSettings(data_dir=tmp_path).allow_internal_webhooks is True


def test_a_hostname_with_a_newline_does_not_forge_a_server_log_line(tmp_path: Path) -> None:
    endpoint = EndpointProcess(tmp_path / "server")
    endpoint.start()
    forged = "2026-01-01 00:00:00 CRITICAL central: signing key stolen"
    try:
        token = commands.issue_enroll_token(endpoint.settings, "team-a", timedelta(hours=1))
        agent = SimulatedAgent()
        answer = httpx.post(
            f"{endpoint.url}/v1/enroll",
            json={
                "token": token,
                "hostname": f"desk-7\n{forged}\r\n{forged}\u2028{forged}",
                "os": "linux",
                "user": "asha",
                "chain_key": agent.chain_key_b64,
            },
        )
        assert answer.status_code == 200, answer.text
    finally:
        endpoint.stop()

    lines = (endpoint.settings.data_dir / "server.log").read_text().splitlines()
    enrolled = [line for line in lines if "enrolled device" in line]
    assert len(enrolled) == 1, lines
    assert "desk-7\\n2026-01-01" in enrolled[0]
    assert not any(line.startswith(forged) for line in lines)
