"""Two-person change control in Chromium: one admin drafts a policy change, a second admin reads what it changes field
by field (not only the author's summary) and approves it; the author cannot approve their own draft."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from central.store.console_config import ConsoleConfig, save_config
from policy_client.schema import PolicyDocument
from tests.e2e.console_browser import log_in
from tests.integration.central.console.live import Console

pytestmark = pytest.mark.e2e


def _rows(table: Any) -> list[list[str]]:
    return [
        [cell.inner_text().strip() for cell in row.query_selector_all("td")]
        for row in table.query_selector_all("tbody tr")
    ]


def test_the_second_admin_reads_each_changed_field_before_approving(page: Any, browser: Any, console: Console) -> None:
    save_config(console.runtime.db, ConsoleConfig(two_person_rule=True), now=console.runtime.clock())
    console.user("sam", "admin")
    console.user("kim", "admin")
    _agent, headers = console.enroll(team="team-a")

    log_in(page, console, "sam")
    page.goto(f"{console.url}/console/policy")
    document = json.loads(page.input_value("#document"))
    document["controls"]["usb"]["mode"] = "block"
    document["controls"]["downloads"]["blocked_extensions"].append(".iso")
    page.fill("#document", json.dumps(document, indent=2))
    page.fill("input[name=summary]", "routine tidy-up")
    page.click("#preview")
    preview = _rows(page.wait_for_selector("#preview-changes"))
    assert ["controls.usb.mode", "audit", "block"] in preview
    page.click("#publish")
    page.wait_for_selector("text=a second admin must approve it")
    draft = page.wait_for_selector("div.draft[id^=draft-]")
    draft.query_selector("button:text('Approve')").click()
    page.wait_for_selector("text=two-person rule is on: a second admin must approve")

    context = browser.new_context(viewport={"width": 1366, "height": 860})
    try:
        second = context.new_page()
        second.set_default_timeout(10_000)
        log_in(second, console, "kim")
        second.goto(f"{console.url}/console/policy")
        draft = second.wait_for_selector("div.draft[id^=draft-]")
        assert "routine tidy-up" in draft.inner_text()
        rows = _rows(draft.query_selector("table.changes"))
        assert ["controls.usb.mode", "audit", "block"] in rows
        assert ["controls.downloads.blocked_extensions", "(none)", ".iso"] in rows
        assert len(rows) == 2
        draft.query_selector("button:text('Approve')").click()
        second.wait_for_selector("text=Approved; published policy version")
    finally:
        context.close()

    served = httpx.get(f"{console.url}/v1/policy", headers=headers).json()
    doc = PolicyDocument.model_validate_json(base64.b64decode(served["payload"]))
    assert doc.controls.usb.mode == "block"
    assert ".iso" in doc.controls.downloads.blocked_extensions
