"""The console in Chromium: login, a live alert arriving on an open page, acknowledge and close with a note,
another team's alert refused by URL, CSRF rejection, and a policy publish round trip to GET /v1/policy."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from policy_client.schema import PolicyDocument, utc_now
from policy_client.unlock_token import verify_unlock_token
from tests.e2e.console_browser import log_in, screenshot
from tests.integration.central.console.live import Console

pytestmark = pytest.mark.e2e


def test_live_alert_then_acknowledge_and_close_with_a_note(page: Any, console: Console) -> None:
    console.user("sup", "supervisor", ["team-a"])
    agent, headers = console.enroll(team="team-a", hostname="desk-7")
    page.goto(f"{console.url}/console/login")
    screenshot(page, "login")
    log_in(page, console, "sup")
    page.wait_for_selector("#live.on")
    console.raise_tamper(agent, headers)
    row = page.wait_for_selector("#alerts tbody tr[id^=alert-]")
    assert "tamper.agent_reported" in row.inner_text()
    assert "desk-7" in row.inner_text()
    screenshot(page, "alerts")
    row.query_selector("a").click()
    page.click("#ack")
    page.wait_for_selector("text=Acknowledged.")
    screenshot(page, "alert-detail")
    page.fill("#close-note", "Agent restarted by IT; no data left the desk")
    page.click("#close")
    page.wait_for_selector("#note")
    assert "no data left the desk" in page.inner_text("#note")
    assert "closed" in page.inner_text("#status")


def test_supervisor_is_refused_another_teams_alert_and_forged_forms(page: Any, console: Console) -> None:
    console.user("sup-b", "supervisor", ["team-b"])
    agent, headers = console.enroll(team="team-a")
    console.raise_tamper(agent, headers)
    console.state.alerting.tick()
    log_in(page, console, "sup-b")
    answer = page.goto(f"{console.url}/console/alerts/1")
    assert answer is not None
    assert answer.status == 404
    # A form posted without the session's CSRF token (as a forged cross-site form would be).
    status = page.evaluate(
        """async () => (await fetch('/console/retention/purge', {method: 'POST',
            headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: 'csrf_token=forged'})).status"""
    )
    assert status == 403


def test_policy_publish_round_trip_and_every_page(page: Any, console: Console) -> None:
    console.user("admin", "admin", ["team-a"])
    agent, headers = console.enroll(team="team-a", hostname="desk-3")
    console.raise_tamper(agent, headers)
    log_in(page, console, "admin")
    page.goto(f"{console.url}/console/policy")
    document = json.loads(page.input_value("#document"))
    document["controls"]["usb"]["mode"] = "block"
    page.fill("#document", json.dumps(document, indent=2))
    page.click("#preview")
    page.wait_for_selector("#diff")
    screenshot(page, "policy")
    page.click("#publish")
    page.wait_for_selector("text=Published policy version")
    served = httpx.get(f"{console.url}/v1/policy", headers=headers).json()
    doc = PolicyDocument.model_validate_json(base64.b64decode(served["payload"]))
    assert doc.controls.usb.mode == "block"
    assert doc.version == 2
    for name in ("devices", "attestations", "exceptions", "rules", "teams", "reports", "audit", "settings"):
        answer = page.goto(f"{console.url}/console/{name}")
        assert answer is not None
        assert answer.status == 200, name
        screenshot(page, name)


def test_admin_issues_an_unlock_token_from_the_devices_page(page: Any, console: Console) -> None:
    console.user("admin", "admin")
    agent, headers = console.enroll(team="team-a", hostname="desk-5")
    assert httpx.post(f"{console.url}/v1/heartbeat", json={"mode": "protected"}, headers=headers).status_code == 200
    console.enroll(team="team-a", hostname="desk-6")  # no heartbeat yet: shown as unprotected
    log_in(page, console, "admin")
    page.goto(f"{console.url}/console/devices")
    row = f"#device-{agent.device_id}"
    assert page.inner_text(f"{row} .badge") == "protected"
    assert "unprotected — not tamper-resistant" in page.inner_text("tbody")

    page.select_option(f"{row} select[name=scope]", "quit")
    page.fill(f"{row} input[name=minutes]", "20")
    page.click(f"{row} form.unlock button")

    page.wait_for_selector("#unlock-token")
    assert "quit for 20 minutes" in page.inner_text("#unlock")
    text = page.inner_text("#unlock-token")
    token = verify_unlock_token(
        text, device_id=agent.device_id, public_key=console.runtime.signer.public_raw, now=utc_now()
    )
    assert (token.scope, token.minutes) == ("quit", 20)
    screenshot(page, "devices-unlock-token")
