"""Change control in the store: a publish changes only what its author changed, approved USB exceptions stay until
they expire or are revoked, the CLI respects the two-person rule and is audited, the approver's field-by-field view,
and held governance changes (two-person rule off, admin role)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from central import change_control, commands
from central.alerting.classify import classify_events
from central.auth import users
from central.auth.principal import Principal
from central.runtime import Runtime
from central.settings import ServerSettings
from central.store import admin_changes, audit, exception_requests, policies, policy_changes, tables
from central.store.console_config import ConsoleConfig, load_config, save_config
from central.store.ingest import ingest_batch
from policy_client import resources
from policy_client.schema import EventKind, PolicyDocument, Severity, utc_now
from tests.unit.central.conftest import FakeClock, enroll_agent

SUPERVISOR = Principal(name="sup", role="supervisor", teams=frozenset({"collections"}), user_id=None)


def _current(runtime: Runtime) -> PolicyDocument:
    document = policy_changes.current_document(runtime.db)
    assert document is not None
    return document


def _edited(document: PolicyDocument, **controls: dict[str, object]) -> PolicyDocument:
    data = document.model_dump(mode="json")
    for control, fields in controls.items():
        data["controls"][control].update(fields)
    return PolicyDocument.model_validate(data)


def _approved_exception(runtime: Runtime, *, minutes: int = 30, two_person: bool = False) -> int:
    """A USB exception request from a desk of team collections, approved by its supervisor at the real time."""
    agent = enroll_agent(runtime)
    event = agent.next_event(
        kind=EventKind.usb_exception_requested,
        severity=Severity.low,
        data={"vendor_id": "0781", "product_id": "5581", "serial": "ABC", "reason": "client files", "minutes": minutes},
    )
    ingest_batch(runtime.db, agent.device_id, agent.batch([event]), now=runtime.clock(), classify=classify_events)
    assert exception_requests.import_requests(runtime.db) == 1
    [request] = exception_requests.list_requests(runtime.db, teams=SUPERVISOR.team_filter(), status="pending")
    exception_requests.decide(
        runtime.db,
        runtime.signer,
        int(request["id"]),
        actor=SUPERVISOR.name,
        teams=SUPERVISOR.team_filter(),
        approve=True,
        minutes=minutes,
        two_person=two_person,
        now=utc_now(),
    )
    return int(request["id"])


# -- item 9: a publish changes only what its author changed ---------------------------------------------------


def test_a_policy_file_published_with_the_cli_keeps_approved_exceptions(
    settings: ServerSettings, runtime: Runtime
) -> None:
    _approved_exception(runtime)
    assert len(_current(runtime).controls.usb.exceptions) == 1

    commands.publish_policy(settings, json.dumps({"org": "Acme CX", "controls": {"usb": {"mode": "block"}}}).encode())

    served = _current(runtime)
    assert served.org == "Acme CX"
    assert served.controls.usb.mode == "block"
    [kept] = served.controls.usb.exceptions
    assert (kept.vendor_id, kept.product_id, kept.serial) == ("0781", "5581", "ABC")


def test_a_revoked_exception_leaves_the_policy_and_is_not_carried_again(
    settings: ServerSettings, runtime: Runtime
) -> None:
    request_id = _approved_exception(runtime)

    submitted = exception_requests.revoke(
        runtime.db,
        runtime.signer,
        request_id,
        actor=SUPERVISOR.name,
        teams=SUPERVISOR.team_filter(),
        two_person=False,
        now=utc_now(),
    )

    assert submitted.published_version is not None
    assert _current(runtime).controls.usb.exceptions == []
    [row] = exception_requests.list_requests(runtime.db, teams=SUPERVISOR.team_filter(), status="revoked")
    assert row["id"] == request_id
    commands.publish_policy(settings, b'{"org": "again"}')
    assert _current(runtime).controls.usb.exceptions == []


def test_an_expired_exception_leaves_at_the_next_publish(runtime: Runtime, clock: FakeClock) -> None:
    _approved_exception(runtime, minutes=5)
    later = utc_now() + timedelta(minutes=6)
    policy_changes.submit(
        runtime.db, runtime.signer, _current(runtime), actor="ada", summary="", two_person=False, now=later
    )
    assert _current(runtime).controls.usb.exceptions == []


def test_an_exception_approval_does_not_touch_retention_days(runtime: Runtime) -> None:
    before = _current(runtime).controls.reporting.retention_days
    _approved_exception(runtime)
    after = _current(runtime)
    assert after.controls.reporting.retention_days == before
    assert len(after.controls.usb.exceptions) == 1


def test_a_draft_publishes_only_what_its_author_changed(runtime: Runtime, clock: FakeClock) -> None:
    base = _current(runtime)
    first = policy_changes.submit(
        runtime.db,
        runtime.signer,
        _edited(base, usb={"mode": "block"}),
        actor="ada",
        summary="block usb",
        two_person=True,
        now=clock(),
    )
    second = policy_changes.submit(
        runtime.db,
        runtime.signer,
        _edited(base, reporting={"retention_days": 14}),
        actor="ada",
        summary="keep 14 days",
        two_person=True,
        now=clock(),
    )
    policy_changes.approve(runtime.db, runtime.signer, first.draft_id, actor="bo", two_person=True, now=clock())
    policy_changes.approve(runtime.db, runtime.signer, second.draft_id, actor="bo", two_person=True, now=clock())

    served = _current(runtime)
    assert served.controls.usb.mode == "block", "the second draft undid the first one"
    assert served.controls.reporting.retention_days == 14


def test_the_approver_sees_each_changed_field(runtime: Runtime, clock: FakeClock) -> None:
    base = _current(runtime)
    edited = _edited(
        base,
        usb={"mode": "block"},
        downloads={"blocked_extensions": [*base.controls.downloads.blocked_extensions, ".iso"]},
    )
    submitted = policy_changes.submit(
        runtime.db, runtime.signer, edited, actor="ada", summary="tighten", two_person=True, now=clock()
    )
    [draft] = policy_changes.drafts(runtime.db, status="pending")
    assert draft["id"] == submitted.draft_id

    changes = {
        (c.path, c.before, c.after) for c in policy_changes.draft_outcome(runtime.db, draft, now=clock()).changes
    }

    assert ("controls.usb.mode", base.controls.usb.mode, "block") in changes
    assert ("controls.downloads.blocked_extensions", None, ".iso") in changes
    assert len(changes) == 2


def test_rejecting_an_exception_draft_marks_the_request_rejected(runtime: Runtime, clock: FakeClock) -> None:
    request_id = _approved_exception(runtime, two_person=True)
    [draft] = policy_changes.drafts(runtime.db, status="pending")

    policy_changes.reject(runtime.db, int(draft["id"]), actor="bo", now=clock())

    [row] = exception_requests.list_requests(runtime.db, teams=SUPERVISOR.team_filter(), status="rejected")
    assert row["id"] == request_id
    assert _current(runtime).controls.usb.exceptions == []


# -- item 8: the CLI and the two-person rule ---------------------------------------------------------------------


def _audit_actions(runtime: Runtime) -> list[str]:
    return [str(e["action"]) for e in audit.list_entries(runtime.db)]


def test_cli_publish_under_the_two_person_rule_saves_a_draft_and_audits_it(
    settings: ServerSettings, runtime: Runtime, clock: FakeClock
) -> None:
    save_config(runtime.db, ConsoleConfig(two_person_rule=True), now=clock())
    start = policies.latest_version(runtime.db)

    with pytest.raises(commands.ApprovalRequired) as held:
        commands.publish_policy(settings, b'{"org": "sneaky"}', author="ada")

    assert policies.latest_version(runtime.db) == start
    assert "policy.draft" in _audit_actions(runtime)
    with pytest.raises(policy_changes.TwoPersonRuleError):
        policy_changes.approve(
            runtime.db, runtime.signer, held.value.draft_id, actor="ada", two_person=True, now=clock()
        )
    version = policy_changes.approve(
        runtime.db, runtime.signer, held.value.draft_id, actor="bo", two_person=True, now=clock()
    )
    assert version == start + 1
    assert _current(runtime).org == "sneaky"


def test_cli_publish_without_the_rule_publishes_and_leaves_an_audit_entry(
    settings: ServerSettings, runtime: Runtime
) -> None:
    version = commands.publish_policy(settings, b'{"org": "Acme CX"}', author="ops")

    entries = audit.list_entries(runtime.db)
    published = next(e for e in entries if e["action"] == "policy.publish")
    assert published["actor"] == "ops"
    assert published["target"] == f"policy:v{version}"
    drafted = next(e for e in entries if e["action"] == "policy.draft")
    assert drafted["after"]["via"] == "cli"


# -- item 8: changes to change control need a second admin --------------------------------------------------------


def _governance_alerts(runtime: Runtime) -> list[str]:
    with runtime.db.read() as conn:
        return [str(k) for k in conn.execute(tables.alerts.select().with_only_columns(tables.alerts.c.kind)).scalars()]


def test_turning_the_rule_off_waits_for_a_second_admin_and_raises_an_alert(runtime: Runtime, clock: FakeClock) -> None:
    on = ConsoleConfig(two_person_rule=True)
    save_config(runtime.db, on, now=clock())

    held = change_control.save_settings(
        runtime.db, on, ConsoleConfig(two_person_rule=False, smtp_host="mail"), actor="ada", now=clock()
    )

    assert held is not None
    config = load_config(runtime.db)
    assert config.two_person_rule is True
    assert config.smtp_host == "mail"
    assert admin_changes.ALERT_RULE_OFF in _governance_alerts(runtime)
    with pytest.raises(change_control.SecondAdminError):
        change_control.approve(runtime.db, held.change_id, actor="ada", now=clock())
    change_control.approve(runtime.db, held.change_id, actor="bo", now=clock())
    assert load_config(runtime.db).two_person_rule is False


def test_an_admin_created_under_the_rule_stays_disabled_until_a_second_admin_approves(
    runtime: Runtime, clock: FakeClock
) -> None:
    created, held = change_control.create_user(
        runtime.db,
        "mallory",
        role="admin",
        teams=[],
        password="long-enough-pass",
        actor="ada",
        two_person=True,
        now=clock(),
    )

    assert held is not None
    assert users.authenticate(runtime.db, "mallory", "long-enough-pass", now=clock()) is None
    assert admin_changes.ALERT_ADMIN_GRANTED in _governance_alerts(runtime)
    with pytest.raises(change_control.SecondAdminError):
        change_control.approve(runtime.db, held.change_id, actor="ada", now=clock())
    change_control.approve(runtime.db, held.change_id, actor="bo", now=clock())
    signed_in = users.authenticate(runtime.db, "mallory", "long-enough-pass", now=clock())
    assert signed_in is not None
    assert signed_in.role == "admin"
    assert created.user_id == signed_in.user_id


def test_promoting_a_user_to_admin_is_held_and_nothing_changes_meanwhile(runtime: Runtime, clock: FakeClock) -> None:
    user = users.create_user(runtime.db, "sam", role="auditor", teams=[], password="long-enough-pass", now=clock())
    assert user.user_id is not None

    result = change_control.update_user(
        runtime.db, user.user_id, role="admin", teams=[], disabled=False, actor="ada", two_person=True, now=clock()
    )

    assert isinstance(result, change_control.Held)
    assert next(u for u in users.list_users(runtime.db) if u.name == "sam").role == "auditor"
    change_control.reject(runtime.db, result.change_id, actor="bo", now=clock())
    assert next(u for u in users.list_users(runtime.db) if u.name == "sam").role == "auditor"
    assert change_control.pending(runtime.db) == []


def test_without_the_rule_an_admin_grant_applies_at_once_and_still_raises_an_alert(
    runtime: Runtime, clock: FakeClock
) -> None:
    _created, held = change_control.create_user(
        runtime.db,
        "kim",
        role="admin",
        teams=[],
        password="long-enough-pass",
        actor="ada",
        two_person=False,
        now=clock(),
    )
    assert held is None
    assert users.authenticate(runtime.db, "kim", "long-enough-pass", now=clock()) is not None
    assert admin_changes.ALERT_ADMIN_GRANTED in _governance_alerts(runtime)


def test_the_demo_policy_publishes_on_a_fresh_endpoint(settings: ServerSettings, runtime: Runtime) -> None:
    demo = resources.assets_dir() / "policy" / "demo.json"

    version = commands.publish_policy(settings, demo.read_bytes(), author="demo")

    assert version == 2
    assert _current(runtime).version == 2


def test_cli_publish_held_by_the_rule_exits_non_zero_naming_the_draft(
    settings: ServerSettings, runtime: Runtime, clock: FakeClock, tmp_path: Path
) -> None:
    save_config(runtime.db, ConsoleConfig(two_person_rule=True), now=clock())
    document = tmp_path / "policy.json"
    document.write_text('{"org": "held"}')
    argv = ["policy", "publish", str(document), "--data-dir", str(settings.data_dir), "--author", "ada"]
    if settings.db_url:
        argv += ["--db", settings.db_url]

    done = subprocess.run(
        [sys.executable, "-m", "agent_app", *argv], capture_output=True, text=True, timeout=120, check=False
    )

    assert done.returncode == 2, done.stderr
    assert "policy draft #" in done.stderr
    assert done.stdout == ""
    assert _current(runtime).org != "held"


def test_an_exception_draft_names_the_desk_by_its_hostname(runtime: Runtime, clock: FakeClock) -> None:
    _approved_exception(runtime, two_person=True)
    [draft] = policy_changes.drafts(runtime.db, status="pending")

    [change] = policy_changes.draft_outcome(runtime.db, draft, now=utc_now()).changes

    assert change.path == "controls.usb.exceptions"
    assert change.before is None
    assert change.after is not None
    assert change.after.startswith("0781:5581 serial ABC on desk-1 (")
    assert "desk-1" in str(draft["summary"])
