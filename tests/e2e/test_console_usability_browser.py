"""What a person sees in the console, in Chromium: times in the viewer's own zone, long unbroken text that wraps
instead of widening the page, a menu without the admin pages a supervisor cannot use, alert search and paging,
failed webhook deliveries with their retry state and an admin's retry, and a page per device."""

from __future__ import annotations

import http.server
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from central.alerting.rules import Channel, RuleSpec, save_rule
from central.settings import ServerSettings
from central.simulate import SimulatedAgent
from central.store import tables
from policy_client.schema import EventKind, Severity
from tests.e2e.console_browser import log_in
from tests.integration.central.console.live import Console, serve_console
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


def _send(console: Console, agent: SimulatedAgent, headers: dict[str, str], events: list[Any]) -> None:
    answer = httpx.post(
        f"{console.url}/v1/events",
        content=agent.batch(events).model_dump_json(),
        headers=headers | {"Content-Type": "application/json"},
    )
    assert answer.status_code == 200, answer.text
    console.state.alerting.wake()


def _tamper(agent: SimulatedAgent, **data: Any) -> Any:
    return agent.next_event(kind=EventKind.agent_tamper, severity=Severity.high, data={"what": "test", **data})


def test_times_show_in_the_viewers_own_zone_with_utc_kept_in_the_markup(browser: Any, console: Console) -> None:
    console.user("ada", "admin")
    agent, headers = console.enroll(team="floor-1")
    _send(console, agent, headers, [_tamper(agent)])
    context = browser.new_context(timezone_id="Asia/Kolkata", locale="en-GB")
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        log_in(page, console, "ada")
        page.wait_for_selector("#alerts time[data-local='1']")
        stamp = page.get_attribute("#alerts time", "datetime")
        shown = page.inner_text("#alerts time")
        title = page.get_attribute("#alerts time", "title")
    finally:
        context.close()
    assert stamp is not None
    assert stamp.endswith("Z"), "the markup keeps the UTC value"
    utc = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    local = utc + timedelta(hours=5, minutes=30)
    assert shown.startswith(local.strftime("%Y-%m-%d %H:%M:%S")), shown
    assert shown.endswith(("IST", "GMT+5:30", "UTC+05:30")), shown
    assert title == utc.strftime("%Y-%m-%d %H:%M:%S") + " UTC"


def test_long_unbroken_text_wraps_instead_of_widening_the_page(page: Any, console: Console) -> None:
    console.user("ada", "admin")
    endless = "x" * 240
    agent, headers = console.enroll(team="floor-1", hostname="desk-" + endless, user="u" + "y" * 200)
    _send(console, agent, headers, [_tamper(agent, detail="z" * 3000)])
    log_in(page, console, "ada")
    assert "desk-xxx" in page.inner_text("#alerts")
    for path in ("/console/alerts", "/console/devices", f"/console/devices/{agent.device_id}"):
        page.goto(console.url + path)
        width = page.evaluate("document.documentElement.scrollWidth")
        viewport = page.evaluate("window.innerWidth")
        assert width <= viewport, f"{path} is {width}px wide in a {viewport}px window"


def test_a_supervisor_sees_no_admin_menu_items(page: Any, console: Console) -> None:
    console.user("sam", "supervisor", ["floor-1"])
    log_in(page, console, "sam")
    menu = page.inner_text("header.top nav")
    for hidden in ("Policy", "Routing", "Teams & users", "Settings"):
        assert hidden not in menu, f"{hidden} is in a supervisor's menu: {menu!r}"
    for shown in ("Alerts", "Devices", "Exceptions", "Deliveries", "Reports", "Audit log"):
        assert shown in menu
    assert page.goto(console.url + "/console/settings").status == 403


def test_an_admin_sees_the_whole_menu(page: Any, console: Console) -> None:
    console.user("ada", "admin")
    log_in(page, console, "ada")
    menu = page.inner_text("header.top nav")
    for item in ("Policy", "Routing", "Teams & users", "Settings", "Deliveries"):
        assert item in menu


def test_alert_search_and_keyset_paging(page: Any, console: Console) -> None:
    console.user("ada", "admin")
    one, one_headers = console.enroll(team="floor-1", hostname="desk-alpha", user="asha")
    two, two_headers = console.enroll(team="floor-2", hostname="desk-beta", user="ravi")
    _send(console, one, one_headers, [_tamper(one, n=i) for i in range(130)])
    _send(console, two, two_headers, [_tamper(two, needle="blue-marker-77")])
    log_in(page, console, "ada")

    page.goto(console.url + "/console/alerts?status=")
    first = page.eval_on_selector_all("#alerts tbody tr", "rows => rows.map(r => r.id)")
    assert len(first) == 100
    page.click("#older")
    second = page.eval_on_selector_all("#alerts tbody tr", "rows => rows.map(r => r.id)")
    with console.runtime.db.read() as conn:
        total = conn.execute(select(func.count()).select_from(tables.alerts)).scalar_one()
    assert total >= 131
    assert len(second) == total - 100
    assert not set(first) & set(second)
    ids = [int(i.split("-")[1]) for i in first + second]
    assert ids == sorted(ids, reverse=True)
    assert page.query_selector("#older") is None

    page.goto(console.url + "/console/alerts")
    page.fill("input[name=device]", "BETA")
    page.click("#search")
    rows = page.inner_text("#alerts tbody")
    assert "desk-beta" in rows
    assert "desk-alpha" not in rows
    page.goto(console.url + "/console/alerts?status=&q=blue-marker-77")
    assert page.eval_on_selector_all("#alerts tbody tr[id^=alert-]", "rows => rows.length") == 1
    page.goto(console.url + "/console/alerts?status=&user=ash&kind=tamper")
    assert page.eval_on_selector_all("#alerts tbody tr[id^=alert-]", "rows => rows.length") == 100
    page.goto(console.url + "/console/alerts?status=&kind=usb")
    assert page.query_selector("#no-alerts") is not None


class _Receiver:
    """A real webhook receiver on loopback that refuses (503) until told to accept."""

    def __init__(self) -> None:
        self.accept = threading.Event()
        self.got = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                ok = receiver.accept.is_set()
                if ok:
                    receiver.got.set()
                self.send_response(200 if ok else 503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                return

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def internal_console(tmp_path: Path) -> Iterator[Console]:
    settings = replace(ServerSettings(data_dir=tmp_path / "server", port=0), allow_internal_webhooks=True)
    with serve_console(settings, poll_s=0.1) as live:
        yield live


def test_a_failed_webhook_shows_its_retry_state_and_an_admin_retries_it(page: Any, internal_console: Console) -> None:
    console = internal_console
    receiver = _Receiver()
    try:
        console.user("ada", "admin")
        console.user("sam", "supervisor", ["floor-1"])
        with console.runtime.db.write() as conn:
            url = f"http://127.0.0.1:{receiver.port}/hook"
            spec = RuleSpec(name="to chat", channels=[Channel(type="webhook", url=url)], kinds=["tamper.*"])
            save_rule(conn, spec, now=console.runtime.clock())
        agent, headers = console.enroll(team="floor-1")
        _send(console, agent, headers, [_tamper(agent)])
        log_in(page, console, "ada")

        def retrying() -> bool:
            page.goto(console.url + "/console/deliveries")
            return "retrying" in page.inner_text("#deliveries")

        wait_for(retrying, timeout=20, what="the failed delivery listed as retrying")
        row = page.inner_text("#deliveries tbody tr")
        assert "503" in row, row
        assert re.search(r"\b[1-8] / 8\b", row), row
        assert "127.0.0.1" in row
        assert "/hook" not in row, "a webhook's path is its secret and is not shown"

        receiver.accept.set()
        page.click("#deliveries button[id^=retry-]")
        page.wait_for_url("**/console/deliveries?msg=*")
        assert receiver.got.wait(10), "the retried message did not arrive"

        def delivered() -> bool:
            page.goto(console.url + "/console/deliveries?state=delivered")
            return page.query_selector("#deliveries tr.delivery-delivered") is not None

        wait_for(delivered, timeout=10, what="the message shown as delivered")
        page.goto(console.url + "/console/audit")
        assert "delivery.retry" in page.inner_text("table")

        # A supervisor sees the state but gets no retry button, and the route refuses them.
        sam = console.login("sam")
        listed = sam.get("/console/deliveries?state=")
        assert "delivered" in listed.text
        assert "retry-" not in listed.text
        token = re.search(r'name="csrf_token" value="([^"]+)"', listed.text)
        assert token is not None
        assert sam.post("/console/deliveries/1/retry", data={"csrf_token": token.group(1)}).status_code == 403
    finally:
        receiver.close()


def test_a_device_page_shows_its_events_policy_alerts_and_is_team_scoped(page: Any, console: Console) -> None:
    console.user("ada", "admin")
    console.user("sue", "supervisor", ["floor-9"])
    agent, headers = console.enroll(team="floor-1", hostname="desk-gamma")
    clip = agent.next_event(
        kind=EventKind.clipboard_sensitive,
        severity=Severity.medium,
        data={"findings": [{"type": "card", "count": 1, "sample": "XXXX XXXX XXXX 1111"}]},
    )
    _send(console, agent, headers, [clip, _tamper(agent)])
    beat = {
        "ts": datetime.now().astimezone().isoformat(),
        "user": "asha",
        "agent_version": "1.2.3",
        "policy_version": 0,
        "queue_depth": 4,
        "collectors": {"clipboard": "running"},
    }
    assert httpx.post(f"{console.url}/v1/heartbeat", json=beat, headers=headers).status_code == 200
    log_in(page, console, "ada")
    page.goto(console.url + "/console/devices")
    page.click("a.device-link")
    page.wait_for_url(f"**/console/devices/{agent.device_id}")
    events = page.inner_text("#device-events")
    assert "clipboard.sensitive" in events
    assert "XXXX XXXX XXXX 1111" in events
    assert page.get_attribute("#policy-version", "data-policy") == "stale"
    assert "older than the current" in page.inner_text("#policy-version")
    assert "tamper" in page.inner_text("#device-alerts")
    assert "4 events" in page.inner_text("#heartbeat")

    sue = console.login("sue")
    hidden = sue.get(f"/console/devices/{agent.device_id}")
    assert hidden.status_code == 404
    assert "desk-gamma" not in hidden.text
    assert console.login("ada").get("/console/devices/no-such-device").status_code == 404
