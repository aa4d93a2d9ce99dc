"""Change control over HTTP: console publishes keep the policy's own retention and approved exceptions, the
approver reads what changes field by field, and turning the two-person rule off or granting the admin role waits
for a second admin and raises an alert."""

from __future__ import annotations

import base64
import html
import json
from urllib.parse import unquote

import httpx

from central.store import admin_changes, policies
from central.store.console_config import ConsoleConfig, load_config, save_config
from policy_client.schema import EventKind, PolicyDocument, Severity
from tests.integration.central.console.live import PASSWORD, Console, csrf_of


def _served(console: Console, headers: dict[str, str]) -> PolicyDocument:
    answer = httpx.get(f"{console.url}/v1/policy", headers=headers).json()
    return PolicyDocument.model_validate_json(base64.b64decode(answer["payload"]))


def _publish(client: httpx.Client, document: dict[str, object], *, summary: str = "") -> httpx.Response:
    token = csrf_of(client.get("/console/policy").text)
    data = {"csrf_token": token, "document": json.dumps(document), "step": "publish", "summary": summary}
    return client.post("/console/policy", data=data)


def _approve_exception_request(console: Console) -> tuple[dict[str, str], httpx.Client]:
    console.user("sup", "supervisor", ["team-a"])
    agent, headers = console.enroll(team="team-a")
    event = agent.next_event(
        kind=EventKind.usb_exception_requested,
        severity=Severity.low,
        data={"vendor_id": "0781", "product_id": "5581", "serial": "ABC", "reason": "client files", "minutes": 30},
    )
    answer = httpx.post(
        f"{console.url}/v1/events",
        content=agent.batch([event]).model_dump_json(),
        headers=headers | {"Content-Type": "application/json"},
    )
    assert answer.status_code == 200, answer.text
    sup = console.login("sup")
    page = sup.get("/console/exceptions")
    request_id = int(page.text.split('id="request-')[1].split('"')[0])
    done = sup.post(
        f"/console/exceptions/{request_id}/approve", data={"csrf_token": csrf_of(page.text), "minutes": "30"}
    )
    assert "published" in done.headers["location"], done.headers["location"]
    return headers, sup


def test_a_console_publish_keeps_the_retention_days_its_author_wrote(console: Console) -> None:
    console.user("sam", "admin")
    sam = console.login("sam")
    _agent, headers = console.enroll(team="team-a")
    document = _served(console, headers).model_dump(mode="json")
    document["controls"]["reporting"]["retention_days"] = 21

    assert _publish(sam, document).status_code == 303

    assert _served(console, headers).controls.reporting.retention_days == 21


def test_a_supervisors_exception_approval_leaves_retention_days_alone(console: Console) -> None:
    console.user("sam", "admin")
    sam = console.login("sam")
    _agent, headers = console.enroll(team="team-b")
    document = _served(console, headers).model_dump(mode="json")
    document["controls"]["reporting"]["retention_days"] = 21
    _publish(sam, document)

    _approve_exception_request(console)

    served = _served(console, headers)
    assert served.controls.reporting.retention_days == 21
    assert len(served.controls.usb.exceptions) == 1


def test_a_policy_pasted_from_a_file_keeps_approved_exceptions(console: Console) -> None:
    headers, _sup = _approve_exception_request(console)
    console.user("sam", "admin")
    sam = console.login("sam")

    done = _publish(sam, {"org": "From a file", "controls": {"usb": {"mode": "read_only", "exceptions": []}}})

    assert done.status_code == 303
    served = _served(console, headers)
    assert (served.org, served.controls.usb.mode) == ("From a file", "read_only")
    [kept] = served.controls.usb.exceptions
    assert kept.serial == "ABC"


def test_a_supervisor_revokes_an_approved_exception(console: Console) -> None:
    headers, sup = _approve_exception_request(console)
    page = sup.get("/console/exceptions?status=approved")
    request_id = int(page.text.split('id="revoke-')[1].split('"')[0])

    done = sup.post(f"/console/exceptions/{request_id}/revoke", data={"csrf_token": csrf_of(page.text)})

    assert "Revoked" in done.headers["location"]
    assert _served(console, headers).controls.usb.exceptions == []


def test_the_approver_reads_each_changed_field_not_only_the_summary(console: Console) -> None:
    save_config(console.runtime.db, ConsoleConfig(two_person_rule=True), now=console.runtime.clock())
    console.user("sam", "admin")
    console.user("kim", "admin")
    sam = console.login("sam")
    _agent, headers = console.enroll(team="team-a")
    document = _served(console, headers).model_dump(mode="json")
    document["controls"]["usb"]["mode"] = "block"
    document["controls"]["downloads"]["blocked_extensions"].append(".iso")
    _publish(sam, document, summary="small tidy-up")

    page = html.unescape(console.login("kim").get("/console/policy").text)

    draft = page.split('id="draft-')[1].split('id="change-')[0]
    assert "small tidy-up" in draft
    assert "<code>controls.usb.mode</code>" in draft
    assert '<td class="before">audit</td>' in draft
    assert '<td class="after">block</td>' in draft
    assert "<code>controls.downloads.blocked_extensions</code>" in draft
    assert '<td class="after">.iso</td>' in draft


def test_turning_the_rule_off_in_settings_needs_a_second_admin(console: Console) -> None:
    db = console.runtime.db
    save_config(db, ConsoleConfig(two_person_rule=True), now=console.runtime.clock())
    console.user("sam", "admin")
    console.user("kim", "admin")
    sam = console.login("sam")
    token = csrf_of(sam.get("/console/settings").text)

    answer = sam.post("/console/settings", data={"csrf_token": token, "smtp_host": "mail.example.com"})

    assert "second admin" in unquote(answer.headers["location"])
    assert load_config(db).two_person_rule is True
    assert load_config(db).smtp_host == "mail.example.com"
    assert admin_changes.ALERT_RULE_OFF in sam.get("/console/alerts?status=").text
    own = sam.post("/console/changes/1/approve", data={"csrf_token": token})
    assert "err=" in own.headers["location"]
    assert load_config(db).two_person_rule is True
    kim = console.login("kim")
    kim_token = csrf_of(kim.get("/console/policy").text)
    assert 'id="change-1"' in kim.get("/console/policy").text
    kim.post("/console/changes/1/approve", data={"csrf_token": kim_token})
    assert load_config(db).two_person_rule is False


def test_an_admin_created_by_one_admin_cannot_approve_until_a_second_admin_agrees(console: Console) -> None:
    db = console.runtime.db
    save_config(db, ConsoleConfig(two_person_rule=True), now=console.runtime.clock())
    console.user("sam", "admin")
    console.user("kim", "admin")
    sam = console.login("sam")
    token = csrf_of(sam.get("/console/teams").text)
    start = policies.latest_version(db)

    created = sam.post(
        "/console/users", data={"csrf_token": token, "name": "sock", "role": "admin", "password": PASSWORD}
    )

    assert "second admin" in unquote(created.headers["location"])
    form = console.client()
    answer = form.post(
        "/console/login",
        data={"username": "sock", "password": PASSWORD, "csrf_token": csrf_of(form.get("/console/login").text)},
    )
    assert answer.status_code != 303, "a held admin could sign in"
    # sam's draft cannot be approved by the held account either
    _publish(sam, {"org": "sock puppet"})
    assert policies.latest_version(db) == start
    kim = console.login("kim")
    kim_token = csrf_of(kim.get("/console/policy").text)
    change_id = int(kim.get("/console/policy").text.split('id="change-')[1].split('"')[0])
    kim.post(f"/console/changes/{change_id}/approve", data={"csrf_token": kim_token})
    console.login("sock")
