"""The console end to end over HTTP: login, CSRF, team scoping, alert workflow, policy round trip, exceptions."""

from __future__ import annotations

import base64
import html
import json
import re
from datetime import timedelta

import httpx
import pytest

from central.store import policies, unlock_tokens
from central.store.console_config import ConsoleConfig, save_config
from policy_client.schema import EventKind, PolicyDocument, Severity, utc_now
from policy_client.unlock_token import verify_unlock_token
from tests.integration.central.console.live import Console, csrf_of
from tests.support.waiting import wait_for


def _routed_alerts(console: Console, client: httpx.Client) -> list[str]:
    page = client.get("/console/alerts?status=")
    return [line for line in page.text.splitlines() if 'id="alert-' in line]


def test_pages_need_a_session_and_login_throttles(console: Console) -> None:
    answer = httpx.get(f"{console.url}/console/devices", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/console/login")
    console.user("sam", "admin")
    client = console.client()
    token = csrf_of(client.get("/console/login").text)
    codes = [
        client.post(
            "/console/login", data={"username": "sam", "password": "wrong-password!", "csrf_token": token}
        ).status_code
        for _ in range(6)
    ]
    # Three free tries, then a delay that doubles: the fourth failure makes the next try wait.
    assert codes[:4] == [401] * 4
    assert codes[4:] == [429, 429]


def test_forms_without_the_csrf_token_are_refused(console: Console) -> None:
    console.user("sam", "admin")
    client = console.login("sam")
    answer = client.post("/console/retention/purge", data={})
    assert answer.status_code == 403
    answer = client.post("/console/retention/purge", data={"csrf_token": "forged"})
    assert answer.status_code == 403
    ok = client.post("/console/retention/purge", data={"csrf_token": csrf_of(client.get("/console/settings").text)})
    assert ok.status_code == 303


def test_supervisor_sees_only_their_team_and_can_close_with_a_note(console: Console) -> None:
    console.user("sup-a", "supervisor", ["team-a"])
    console.user("sup-b", "supervisor", ["team-b"])
    agent_a, headers_a = console.enroll(team="team-a")
    agent_b, headers_b = console.enroll(team="team-b", hostname="desk-2")
    console.raise_tamper(agent_a, headers_a)
    console.raise_tamper(agent_b, headers_b)
    a = console.login("sup-a")
    wait_for(lambda: len(_routed_alerts(console, a)) == 1, timeout=10, what="team-a alert routed")
    b = console.login("sup-b")
    wait_for(lambda: len(_routed_alerts(console, b)) == 1, timeout=10, what="team-b alert routed")
    alert_a = int(_routed_alerts(console, a)[0].split('id="alert-')[1].split('"')[0])

    # The other team's alert by hand-typed URL: not found, and no action possible.
    assert b.get(f"/console/alerts/{alert_a}").status_code == 404
    token_b = csrf_of(b.get("/console/alerts").text)
    assert b.post(f"/console/alerts/{alert_a}/ack", data={"csrf_token": token_b}).status_code == 404

    page = a.get(f"/console/alerts/{alert_a}")
    assert page.status_code == 200
    token = csrf_of(page.text)
    assert a.post(f"/console/alerts/{alert_a}/ack", data={"csrf_token": token}).status_code == 303
    missing_note = a.post(f"/console/alerts/{alert_a}/close", data={"csrf_token": token, "note": " "})
    assert "needs a note" in missing_note.headers["location"].replace("%20", " ")
    a.post(f"/console/alerts/{alert_a}/close", data={"csrf_token": token, "note": "Agent restarted by IT"})
    detail = a.get(f"/console/alerts/{alert_a}").text
    assert "Agent restarted by IT" in detail
    assert "closed" in detail
    audit = a.get("/console/audit").text
    assert "alert.close" in audit
    assert "team-b" not in audit


def test_auditor_reads_but_cannot_act(console: Console) -> None:
    console.user("ada", "auditor")
    agent, headers = console.enroll(team="team-a")
    console.raise_tamper(agent, headers)
    client = console.login("ada")
    wait_for(lambda: len(_routed_alerts(console, client)) == 1, timeout=10, what="alert routed")
    alert_id = int(_routed_alerts(console, client)[0].split('id="alert-')[1].split('"')[0])
    token = csrf_of(client.get("/console/alerts").text)
    assert client.post(f"/console/alerts/{alert_id}/ack", data={"csrf_token": token}).status_code == 403
    assert client.post("/console/retention/purge", data={"csrf_token": token}).status_code == 403


def test_policy_published_in_the_console_is_served_to_agents(console: Console) -> None:
    console.user("sam", "admin")
    client = console.login("sam")
    _agent, headers = console.enroll(team="team-a")
    before = httpx.get(f"{console.url}/v1/policy", headers=headers).json()
    page = client.get("/console/policy")
    token = csrf_of(page.text)
    current = PolicyDocument.model_validate_json(base64.b64decode(before["payload"]))
    edited = current.model_dump(mode="json")
    edited["controls"]["usb"]["mode"] = "block"
    preview = client.post(
        "/console/policy", data={"csrf_token": token, "document": json.dumps(edited), "step": "preview"}
    )
    assert '+      "mode": "block"' in html.unescape(preview.text)
    bad = client.post("/console/policy", data={"csrf_token": token, "document": '{"version": -1}', "step": "publish"})
    assert bad.status_code == 422
    done = client.post(
        "/console/policy",
        data={"csrf_token": token, "document": json.dumps(edited), "step": "publish", "summary": "block USB"},
    )
    assert done.status_code == 303
    after = httpx.get(f"{console.url}/v1/policy", headers=headers).json()
    served = PolicyDocument.model_validate_json(base64.b64decode(after["payload"]))
    assert served.version == current.version + 1
    assert served.controls.usb.mode == "block"
    history = client.get("/console/policy").text
    assert "block USB" in history


def test_two_person_rule_needs_a_second_admin(console: Console) -> None:
    save_config(console.runtime.db, ConsoleConfig(two_person_rule=True), now=console.runtime.clock())
    console.user("sam", "admin")
    console.user("kim", "admin")
    sam = console.login("sam")
    token = csrf_of(sam.get("/console/policy").text)
    start = policies.latest_version(console.runtime.db)
    doc = PolicyDocument(version=0, org="two-person").model_dump(mode="json")
    sam.post("/console/policy", data={"csrf_token": token, "document": json.dumps(doc), "step": "publish"})
    assert policies.latest_version(console.runtime.db) == start
    draft_page = sam.get("/console/policy").text
    draft_id = int(draft_page.split("/console/policy/drafts/")[1].split("/")[0])
    own = sam.post(f"/console/policy/drafts/{draft_id}/approve", data={"csrf_token": token})
    assert "two-person" in own.headers["location"]
    assert policies.latest_version(console.runtime.db) == start
    kim = console.login("kim")
    kim_token = csrf_of(kim.get("/console/policy").text)
    kim.post(f"/console/policy/drafts/{draft_id}/approve", data={"csrf_token": kim_token})
    assert policies.latest_version(console.runtime.db) == start + 1
    assert "sam, approved by kim" in kim.get("/console/policy").text or "kim" in kim.get("/console/policy").text


def test_approved_usb_exception_reaches_the_agent_through_policy(console: Console) -> None:
    console.user("sup", "supervisor", ["team-a"])
    agent, headers = console.enroll(team="team-a")
    event = agent.next_event(
        kind=EventKind.usb_exception_requested,
        severity=Severity.low,
        data={
            "vendor_id": "0781",
            "product_id": "5581",
            "serial": "ABC",
            "label": "SanDisk",
            "reason": "client files",
            "minutes": 30,
        },
    )
    httpx.post(
        f"{console.url}/v1/events",
        content=agent.batch([event]).model_dump_json(),
        headers=headers | {"Content-Type": "application/json"},
    )
    client = console.login("sup")
    page = client.get("/console/exceptions")
    assert "client files" in page.text
    request_id = int(page.text.split('id="request-')[1].split('"')[0])
    client.post(f"/console/exceptions/{request_id}/approve", data={"csrf_token": csrf_of(page.text), "minutes": "45"})
    served = httpx.get(f"{console.url}/v1/policy", headers=headers).json()
    doc = PolicyDocument.model_validate_json(base64.b64decode(served["payload"]))
    [exc] = doc.controls.usb.exceptions
    assert (exc.vendor_id, exc.product_id, exc.device_id) == ("0781", "5581", agent.device_id)


def test_alert_stream_is_team_scoped_for_personal_tokens(console: Console) -> None:
    console.user("sup-a", "supervisor", ["team-a"])
    client = console.login("sup-a")
    page = client.post("/console/tokens", data={"csrf_token": csrf_of(client.get("/console/teams").text)})
    token = page.text.split('<pre id="token">')[1].split("</pre>")[0]
    agent_a, headers_a = console.enroll(team="team-a")
    agent_b, headers_b = console.enroll(team="team-b", hostname="desk-2")
    assert httpx.get(f"{console.url}/v1/alerts/stream", headers={"Authorization": "Bearer nope"}).status_code == 401
    forbidden = httpx.get(f"{console.url}/v1/alerts/stream?team=team-b", headers={"Authorization": f"Bearer {token}"})
    assert forbidden.status_code == 403
    with httpx.stream(
        "GET", f"{console.url}/v1/alerts/stream", headers={"Authorization": f"Bearer {token}"}, timeout=20
    ) as stream:
        lines = stream.iter_lines()
        assert next(lines).startswith("retry:")
        console.raise_tamper(agent_b, headers_b)
        console.raise_tamper(agent_a, headers_a)
        data = next(line for line in lines if line.startswith("data:"))
    alert = json.loads(data.removeprefix("data:"))
    assert alert["team"] == "team-a"
    assert alert["kind"] == "tamper.agent_reported"


@pytest.mark.parametrize("role", ["admin"])
def test_every_console_page_renders(console: Console, role: str) -> None:
    console.user("sam", role)
    client = console.login("sam")
    for page in (
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
    ):
        assert client.get(f"/console/{page}").status_code == 200, page
    csv = client.get("/console/reports.csv")
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.startswith("team,period_start")


def _unlock_token_on(page_html: str) -> str:
    found = re.search(r'<code class="token" id="unlock-token">([^<]+)</code>', page_html)
    assert found, "no unlock token on the page"
    return html.unescape(found.group(1))


def test_admin_issues_unlock_tokens_the_device_accepts(console: Console) -> None:
    console.user("sam", "admin")
    agent, _headers = console.enroll(team="team-a")
    admin = console.login("sam")
    token = csrf_of(admin.get("/console/devices").text)

    quit_page = admin.post(
        f"/console/devices/{agent.device_id}/unlock-token",
        data={"csrf_token": token, "scope": "quit", "minutes": "45"},
    )
    uninstall_page = admin.post(
        f"/console/devices/{agent.device_id}/unlock-token",
        data={"csrf_token": token, "scope": "uninstall", "minutes": "45"},
    )

    assert quit_page.status_code == 200
    assert quit_page.headers["cache-control"] == "no-store"
    assert "the tray may be quit for 45 minutes" in quit_page.text
    pinned = console.runtime.signer.public_raw
    quit_token = verify_unlock_token(
        _unlock_token_on(quit_page.text), device_id=agent.device_id, public_key=pinned, now=utc_now()
    )
    assert (quit_token.scope, quit_token.minutes) == ("quit", 45)
    assert quit_token.expires_at.strftime("%Y-%m-%d %H:%M") in quit_page.text
    assert timedelta(hours=7, minutes=59) < quit_token.expires_at - utc_now() <= timedelta(hours=8)
    uninstall_token = verify_unlock_token(
        _unlock_token_on(uninstall_page.text), device_id=agent.device_id, public_key=pinned, now=utc_now()
    )
    assert (uninstall_token.scope, uninstall_token.minutes) == ("uninstall", 0)
    assert "DeskWarden may be uninstalled" in uninstall_page.text

    issued = unlock_tokens.list_issued(console.runtime.db, device_id=agent.device_id)
    assert {(r["token_id"], r["scope"], r["issued_by"]) for r in issued} == {
        (quit_token.token_id, "quit", "sam"),
        (uninstall_token.token_id, "uninstall", "sam"),
    }
    audit_page = admin.get("/console/audit").text
    assert audit_page.count("device.unlock_token") == 2
    assert _unlock_token_on(quit_page.text) not in audit_page


def test_unlock_token_requests_out_of_range_or_for_unknown_devices_are_refused(console: Console) -> None:
    console.user("sam", "admin")
    agent, _headers = console.enroll(team="team-a")
    admin = console.login("sam")
    token = csrf_of(admin.get("/console/devices").text)
    for form in ({"minutes": "0"}, {"minutes": "many"}, {"minutes": "99999"}, {"scope": "reboot"}):
        answer = admin.post(f"/console/devices/{agent.device_id}/unlock-token", data={"csrf_token": token} | form)
        assert answer.status_code == 303, form
        assert "err=" in answer.headers["location"], form
    unknown = admin.post("/console/devices/nope/unlock-token", data={"csrf_token": token, "scope": "quit"})
    assert unknown.status_code == 404
    no_csrf = admin.post(f"/console/devices/{agent.device_id}/unlock-token", data={"scope": "quit"})
    assert no_csrf.status_code == 403
    assert unlock_tokens.list_issued(console.runtime.db) == []


@pytest.mark.parametrize("role", ["supervisor", "auditor"])
def test_supervisors_and_auditors_cannot_issue_unlock_tokens(console: Console, role: str) -> None:
    console.user("pat", role, ["team-a"] if role == "supervisor" else [])
    agent, _headers = console.enroll(team="team-a")
    client = console.login("pat")
    devices_page = client.get("/console/devices").text
    assert agent.device_id[:12] in devices_page
    assert "/unlock-token" not in devices_page
    token = csrf_of(devices_page)

    refused = client.post(
        f"/console/devices/{agent.device_id}/unlock-token", data={"csrf_token": token, "scope": "uninstall"}
    )

    assert refused.status_code == 403
    assert unlock_tokens.list_issued(console.runtime.db) == []


def test_devices_page_marks_unprotected_desks(console: Console) -> None:
    console.user("sam", "admin")
    guarded, guarded_headers = console.enroll(team="team-a", hostname="desk-guarded")
    demo, demo_headers = console.enroll(team="team-a", hostname="desk-demo")
    for headers, mode in ((guarded_headers, "protected"), (demo_headers, "unprotected")):
        answer = httpx.post(f"{console.url}/v1/heartbeat", json={"mode": mode}, headers=headers)
        assert answer.status_code == 200, answer.text

    page = console.login("sam").get("/console/devices").text

    rows = {
        device_id: row
        for device_id, row in re.findall(r'<tr id="device-(\w+)" data-mode="\w+">(.*?)</tr>', page, flags=re.S)
    }
    assert 'class="badge badge-ok"' in rows[guarded.device_id]
    assert "not tamper-resistant" not in rows[guarded.device_id]
    assert 'class="badge badge-warn"' in rows[demo.device_id]
    assert "unprotected — not tamper-resistant" in html.unescape(rows[demo.device_id])


def test_admin_revokes_a_device_and_its_credential_stops_working(console: Console) -> None:
    console.user("sam", "admin")
    agent, headers = console.enroll(team="team-a")
    admin = console.login("sam")
    token = csrf_of(admin.get("/console/devices").text)
    answer = admin.post(f"/console/devices/{agent.device_id}/revoke", data={"csrf_token": token})
    assert answer.status_code == 303
    assert "revoked" in answer.headers["location"]
    refused = httpx.get(f"{console.url}/v1/policy", headers=headers)
    assert refused.status_code == 401
    assert "device.revoke" in admin.get("/console/audit").text
