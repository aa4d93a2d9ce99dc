"""Releasing a quarantined download puts customer data back on a desk, so under the two-person rule one admin acting
alone cannot do it: the release waits for a second admin, the asker cannot approve it, asking twice holds it once,
and no signed command reaches the device until another admin approves. Deleting stays a one-admin decision, and
without the rule a release is issued at once."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import unquote

import httpx
from sqlalchemy import select

from central.simulate import SimulatedAgent
from central.store import admin_changes
from central.store.console_config import load_config, save_config
from central.store.console_tables import audit_log
from central.store.tables import alerts
from policy_client.schema import EventKind, Severity
from tests.integration.central.console.live import Console, csrf_of


def _quarantine(console: Console, agent: SimulatedAgent, headers: dict[str, str], n: int) -> str:
    qid = f"{datetime.now(UTC):%Y%m%dT%H%M%S}Z-{n:012x}"
    event = agent.next_event(
        kind=EventKind.download_quarantined,
        severity=Severity.high,
        action="quarantined",
        data={"name": f"cards-{n}.csv", "quarantine_id": qid, "findings": [{"type": "card", "count": 2}]},
    )
    answer = httpx.post(
        f"{console.url}/v1/events",
        content=agent.batch([event]).model_dump_json(),
        headers=headers | {"Content-Type": "application/json"},
    )
    assert answer.status_code == 200, answer.text
    return qid


def _decide(client: httpx.Client, device_id: str, qid: str, decision: str) -> str:
    token = csrf_of(client.get(f"/console/devices/{device_id}").text)
    answer = client.post(f"/console/devices/{device_id}/quarantine/{qid}/{decision}", data={"csrf_token": token})
    assert answer.status_code == 303, answer.text
    return unquote(answer.headers["location"])


def _served_commands(console: Console, headers: dict[str, str]) -> list[dict[str, object]]:
    answer = httpx.get(f"{console.url}/v1/commands", headers=headers)
    assert answer.status_code == 200, answer.text
    return [json.loads(base64.b64decode(c["payload"])) for c in answer.json()["commands"]]


def _approve(client: httpx.Client, change_id: int) -> str:
    token = csrf_of(client.get("/console/policy").text)
    answer = client.post(f"/console/changes/{change_id}/approve", data={"csrf_token": token})
    assert answer.status_code == 303, answer.text
    return unquote(answer.headers["location"])


def test_one_admin_cannot_release_a_quarantined_download_alone_under_the_two_person_rule(console: Console) -> None:
    console.user("ada", "admin")
    console.user("bob", "admin")
    save_config(
        console.runtime.db, replace(load_config(console.runtime.db), two_person_rule=True), now=datetime.now(UTC)
    )
    agent, headers = console.enroll(team="team-a", hostname="desk-q")
    qid = _quarantine(console, agent, headers, 1)
    ada, bob = console.login("ada"), console.login("bob")

    assert "waits for a second admin" in _decide(ada, agent.device_id, qid, "release")
    assert "waits for a second admin" in _decide(ada, agent.device_id, qid, "release")
    held = admin_changes.pending(console.runtime.db, kind=admin_changes.QUARANTINE_RELEASE)
    assert len(held) == 1, "asking twice holds one release"
    assert _served_commands(console, headers) == [], "nothing is signed for the device yet"
    page = ada.get(f"/console/devices/{agent.device_id}").text
    assert "release: waiting for a second admin" in page
    assert f"/quarantine/{qid}/release" not in page, "no second release button while one is held"
    assert "cards-1.csv" in bob.get("/console/policy").text, "the approver sees which file goes back"

    assert "you asked for it" in _approve(ada, held[0].id)
    assert _served_commands(console, headers) == []

    assert "Approved" in _approve(bob, held[0].id)
    served = _served_commands(console, headers)
    assert [(c["action"], c["quarantine_id"], c["issued_by"]) for c in served] == [("release", qid, "bob")]
    with console.runtime.db.read() as conn:
        trail = conn.execute(select(audit_log.c.actor, audit_log.c.action).order_by(audit_log.c.id)).all()
    assert ("ada", "governance.request") in trail
    assert ("bob", "governance.approve") in trail
    assert ("bob", "quarantine.release") in trail


def test_deleting_stays_one_admins_decision_and_without_the_rule_a_release_is_issued_at_once(console: Console) -> None:
    console.user("ada", "admin")
    agent, headers = console.enroll(team="team-a", hostname="desk-q")
    released, deleted = _quarantine(console, agent, headers, 1), _quarantine(console, agent, headers, 2)
    ada = console.login("ada")
    assert "released when the device next asks" in _decide(ada, agent.device_id, released, "release")

    save_config(
        console.runtime.db, replace(load_config(console.runtime.db), two_person_rule=True), now=datetime.now(UTC)
    )
    assert "deleted when the device next asks" in _decide(ada, agent.device_id, deleted, "delete")
    served = {c["quarantine_id"]: c["action"] for c in _served_commands(console, headers)}
    assert served == {released: "release", deleted: "delete"}
    assert admin_changes.pending(console.runtime.db, kind=admin_changes.QUARANTINE_RELEASE) == []


def test_a_held_release_is_alerted_shown_only_to_its_team_and_a_delete_supersedes_it(console: Console) -> None:
    console.user("ada", "admin")
    console.user("bob", "admin")
    console.user("sue", "supervisor", ["team-b"])
    console.user("sam", "supervisor", ["team-a"])
    save_config(
        console.runtime.db, replace(load_config(console.runtime.db), two_person_rule=True), now=datetime.now(UTC)
    )
    agent, headers = console.enroll(team="team-a", hostname="desk-secret-a")
    qid = _quarantine(console, agent, headers, 7)
    ada, bob = console.login("ada"), console.login("bob")
    assert "waits for a second admin" in _decide(ada, agent.device_id, qid, "release")

    policy_for_bob = bob.get("/console/policy").text
    assert "Release the quarantined download cards-7.csv (2 x card) to the user of desk-secret-a" in policy_for_bob
    assert "desk-secret-a" not in console.login("sue").get("/console/policy").text, "another team's desk leaked"
    assert "desk-secret-a" in console.login("sam").get("/console/policy").text
    with console.runtime.db.read() as conn:
        alerted = conn.execute(select(alerts.c.kind, alerts.c.data).where(alerts.c.kind == "governance.release_held"))
        assert [row.data["by"] for row in alerted] == ["ada"]

    assert "deleted when the device next asks" in _decide(bob, agent.device_id, qid, "delete")
    assert admin_changes.pending(console.runtime.db, kind=admin_changes.QUARANTINE_RELEASE) == []
    assert [c["action"] for c in _served_commands(console, headers)] == ["delete"], "the held release can no longer go"
