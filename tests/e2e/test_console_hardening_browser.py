"""The hardened console in Chromium: every page runs under the Content-Security-Policy without a violation (the
devices page still asks before revoking), a stored `javascript:` playbook link never runs, a user changes their
password, and an open live page stops streaming when its session is logged out elsewhere."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from central.alerting.rules import Playbook, RuleSpec, save_rule
from tests.e2e.console_browser import log_in, screenshot
from tests.integration.central.console.live import PASSWORD, Console

pytestmark = pytest.mark.e2e

PAGES = (
    "alerts",
    "devices",
    "attestations",
    "exceptions",
    "policy",
    "rules",
    "teams",
    "reports",
    "audit",
    "settings",
    "account",
    "deliveries",
)


def _csp_violations(page: Any) -> list[str]:
    seen: list[str] = []
    page.on(
        "console",
        lambda msg: (
            seen.append(msg.text) if "Content Security Policy" in msg.text or "Refused to" in msg.text else None
        ),
    )
    return seen


def test_every_page_runs_under_the_csp_and_revoking_still_asks_first(page: Any, console: Console) -> None:
    console.user("admin", "admin")
    agent, headers = console.enroll(team="team-a", hostname="desk-3")
    console.raise_tamper(agent, headers)
    violations = _csp_violations(page)
    log_in(page, console, "admin")
    page.wait_for_selector("#live.on")  # live.js (a script file) runs under script-src 'self'

    for name in PAGES:
        answer = page.goto(f"{console.url}/console/{name}")
        assert answer is not None
        assert answer.status == 200, name
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]

    page.goto(f"{console.url}/console/devices")
    page.once("dialog", lambda dialog: dialog.dismiss())
    with page.expect_event("dialog", timeout=5_000) as asked:  # fails if the inline onsubmit was blocked
        page.click(f"form[action='/console/devices/{agent.device_id}/revoke'] button")
    assert "Revoke this device?" in asked.value.message
    assert page.url.endswith("/console/devices")
    assert "revoked" not in page.inner_text("tbody")
    assert violations == []


def test_a_stored_javascript_playbook_link_never_runs(page: Any, console: Console) -> None:
    console.user("sup", "supervisor", ["team-a"])
    with console.runtime.db.write() as conn:
        save_rule(
            conn,
            RuleSpec(name="legacy", playbook=Playbook(steps=["call"], link="javascript:window.__pwned=1")),
            now=console.runtime.clock(),
        )
    agent, headers = console.enroll(team="team-a")
    console.raise_tamper(agent, headers)
    console.state.alerting.tick()
    log_in(page, console, "sup")

    page.goto(f"{console.url}/console/alerts/1")

    assert page.locator("a", has_text="Full procedure").count() == 0
    assert page.evaluate("() => window.__pwned === undefined")
    page.evaluate("() => { location.href = 'javascript:window.__pwned=1' }")  # even a forced navigation
    assert page.evaluate("() => window.__pwned === undefined")


def test_a_user_changes_their_password_in_the_browser(page: Any, console: Console) -> None:
    console.user("sup", "supervisor", ["team-a"])
    log_in(page, console, "sup")
    page.goto(f"{console.url}/console/account")
    page.fill("#current", PASSWORD)
    page.fill("#new", "a-new-long-passphrase")
    page.fill("#confirm", "a-new-long-passphrase")
    page.click("#change-password")
    page.wait_for_selector("text=Password changed")
    screenshot(page, "account")

    page.click("header .who button")  # sign out
    page.wait_for_url("**/console/login*")
    log_in(page, console, "sup", "a-new-long-passphrase")


def test_an_open_live_page_stops_streaming_after_logout_elsewhere(page: Any, console: Console) -> None:
    assert console.app is not None
    console.app.state.console = replace(console.app.state.console, stream_recheck_s=0.2)
    console.user("sup", "supervisor", ["team-a"])
    log_in(page, console, "sup")
    page.wait_for_selector("#live.on")
    other = page.context.new_page()  # same browser, same session cookie
    other.goto(f"{console.url}/console/alerts")
    other.click("header .who button")
    other.wait_for_url("**/console/login*")

    page.wait_for_selector("#live.off", timeout=10_000)
