"""A supervisor's and an admin's tour of a busy floor in Chromium: every console page, the device page and an alert
search render without a script error, without a page wider than the window (at a laptop's 1366 px and a narrow 1024
px), and with their data in the tables. With `DESKWARDEN_SCREENSHOTS=1` it saves docs/screenshots/console-*.png."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from central.alerting.rules import Channel, RuleSpec, save_rule
from central.settings import ServerSettings
from central.simulate import SimulatedAgent
from policy_client.schema import Event, EventKind, Severity
from tests.e2e.console_browser import log_in, screenshot
from tests.integration.central.console.live import Console, serve_console
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

ADMIN_PAGES = (
    "alerts",
    "devices",
    "attestations",
    "exceptions",
    "deliveries",
    "policy",
    "rules",
    "teams",
    "reports",
    "audit",
    "settings",
    "account",
)
SUPERVISOR_PAGES = ("alerts", "devices", "attestations", "exceptions", "deliveries", "reports", "audit", "account")


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    """The console, allowed to post webhooks to loopback: the floor's chat webhook is a closed local port."""
    settings = replace(ServerSettings(data_dir=tmp_path / "server", port=0), allow_internal_webhooks=True)
    with serve_console(settings, poll_s=0.1) as live:
        yield live


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _post(console: Console, agent: SimulatedAgent, headers: dict[str, str], events: list[Event]) -> None:
    answer = httpx.post(
        f"{console.url}/v1/events",
        content=agent.batch(events).model_dump_json(),
        headers=headers | {"Content-Type": "application/json"},
    )
    assert answer.status_code == 200, answer.text


def _heartbeat(console: Console, headers: dict[str, str], user: str) -> None:
    beat = {
        "ts": datetime.now(UTC).isoformat(),
        "user": user,
        "agent_version": "1.4.0",
        "policy_version": 1,
        "queue_depth": 0,
        "collectors": {"usb": "running", "downloads": "running", "clipboard": "running", "capture": "running"},
    }
    assert httpx.post(f"{console.url}/v1/heartbeat", json=beat, headers=headers).status_code == 200


def _a_shift(agent: SimulatedAgent, start: datetime) -> list[Event]:
    """What one desk's morning looks like: the controls firing, a request, a missed attestation, masked copies."""
    at = iter(start + timedelta(minutes=7 * i) for i in range(20))
    card = {"type": "card", "count": 1, "sample": "XXXX XXXX XXXX 4242", "confidence": "high"}
    usb = {"vendor_id": "0781", "product_id": "5581", "serial": "4C530001", "label": "SANDISK", "filesystem": "vfat"}
    return [
        agent.next_event(
            kind=EventKind.policy_acknowledged,
            severity=Severity.info,
            action="observed",
            data={"version": 1, "text_sha256": "ab" * 32},
            ts=next(at),
        ),
        agent.next_event(
            kind=EventKind.clipboard_sensitive,
            action="masked",
            ts=next(at),
            data={"findings": [card], "length": 212, "format": "text/plain"},
        ),
        agent.next_event(
            kind=EventKind.usb_blocked,
            severity=Severity.high,
            action="blocked",
            ts=next(at),
            data=usb | {"size_bytes": 32_010_928_128, "mount_point": "/media/usb0"},
        ),
        agent.next_event(
            kind=EventKind.usb_exception_requested,
            severity=Severity.medium,
            action="observed",
            ts=next(at),
            data=usb | {"reason": "Customer's signed mandate form to scan", "minutes": 30},
        ),
        agent.next_event(
            kind=EventKind.download_quarantined,
            severity=Severity.high,
            action="quarantined",
            ts=next(at),
            data={
                "name": "statement_march.csv",
                "extension": ".csv",
                "size_bytes": 48_211,
                "folder": "Downloads",
                "quarantine_id": f"{start:%Y%m%dT%H%M%S}Z-{agent.seq:012x}",
                "findings": [card | {"count": 37}],
            },
        ),
        agent.next_event(
            kind=EventKind.capture_tool_terminated,
            severity=Severity.high,
            action="terminated",
            ts=next(at),
            data={"name": "flameshot", "exe": "/usr/bin/flameshot", "same_user": True},
        ),
        agent.next_event(
            kind=EventKind.cleandesk_missed,
            severity=Severity.medium,
            action="observed",
            ts=next(at),
            data={"trigger": "lock", "items": 3, "snoozes": 2},
        ),
    ]


def _a_busy_floor(console: Console) -> SimulatedAgent:
    console.user("ada", "admin")
    console.user("sam", "supervisor", ["collections-1"])
    with console.runtime.db.write() as conn:
        hook = Channel.model_validate({"type": "webhook", "url": f"http://127.0.0.1:{_closed_port()}/hooks/floor-chat"})
        save_rule(
            conn, RuleSpec(name="tamper to chat", channels=[hook], kinds=["capture.*"]), now=console.runtime.clock()
        )
    start = datetime.now(UTC) - timedelta(hours=3)
    shown: SimulatedAgent | None = None
    for team, desks in (
        ("collections-1", ("cx-ldn-014", "cx-ldn-015", "cx-ldn-016")),
        ("cards-helpdesk", ("hd-mnl-201",)),
    ):
        for n, hostname in enumerate(desks):
            user = f"{hostname.split('-')[1]}.agent{n + 1}"
            agent, headers = console.enroll(team=team, hostname=hostname, user=user)
            _post(console, agent, headers, _a_shift(agent, start + timedelta(minutes=n)))
            _heartbeat(console, headers, user)
            shown = shown or agent
    console.state.alerting.wake()
    assert shown is not None
    return shown


def _wait_for_failed_deliveries(page: Any, console: Console) -> None:
    def listed() -> bool:
        page.goto(f"{console.url}/console/deliveries")
        return "retrying" in page.inner_text("#deliveries")

    wait_for(listed, timeout=20, what="the chat webhook's failed deliveries listed")


def _page_is_whole(page: Any, errors: list[str], path: str) -> None:
    answer = page.goto(path)
    assert answer is not None
    assert answer.status == 200, path
    page.wait_for_load_state("load")
    width = page.evaluate("document.documentElement.scrollWidth")
    viewport = page.evaluate("window.innerWidth")
    assert width <= viewport, f"{path} is {width}px wide in a {viewport}px window"
    assert page.query_selector("h1, h2") is not None, f"{path} has no heading"
    assert not errors, f"{path}: {errors}"


def test_an_admin_tours_a_busy_floor_at_laptop_and_narrow_widths(browser: Any, console: Console) -> None:
    desk = _a_busy_floor(console)
    for width in (1366, 1024):
        context = browser.new_context(viewport={"width": width, "height": 860}, timezone_id="Europe/London")
        try:
            page = context.new_page()
            page.set_default_timeout(10_000)
            errors: list[str] = []
            page.on("pageerror", lambda exc, seen=errors: seen.append(str(exc)))
            log_in(page, console, "ada")
            page.wait_for_selector("#alerts tbody tr[id^=alert-]")
            _wait_for_failed_deliveries(page, console)
            for name in ADMIN_PAGES:
                _page_is_whole(page, errors, f"{console.url}/console/{name}")
                if width == 1366:
                    screenshot(page, name)
            _page_is_whole(page, errors, f"{console.url}/console/devices/{desk.device_id}")
            assert "statement_march.csv" in page.inner_text("#quarantine"), "the quarantined download is listed"
            assert "XXXX XXXX XXXX 4242" in page.inner_text("#device-events")
            if width == 1366:
                screenshot(page, "device")
            _page_is_whole(page, errors, f"{console.url}/console/alerts?status=&device=cx-ldn-015")
            rows = page.inner_text("#alerts tbody")
            assert "cx-ldn-015" in rows
            assert "cx-ldn-014" not in rows
            if width == 1366:
                screenshot(page, "alert-search")
        finally:
            context.close()


def test_a_supervisor_tours_only_their_own_team(page: Any, console: Console) -> None:
    _a_busy_floor(console)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    log_in(page, console, "sam")
    for name in SUPERVISOR_PAGES:
        _page_is_whole(page, errors, f"{console.url}/console/{name}")
        assert "hd-mnl-201" not in page.inner_text("body"), f"another team's desk on {name}"
    page.goto(f"{console.url}/console/devices")
    assert "cx-ldn-014" in page.inner_text("body")
