"""Governance figures against a small seeded data set whose answers were worked out by hand (see comments)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from central.alerting import workflow
from central.alerting.router import AlertRouter
from central.alerting.rules import RuleSpec, save_rule
from central.auth.principal import Principal
from central.reports import figures
from central.runtime import Runtime
from central.store import policies
from central.store.alerts import NewAlert, insert_alerts
from central.store.console_tables import alert_workflow
from policy_client.schema import PolicyDocument
from tests.unit.central.conftest import FakeClock, enroll_agent
from tests.unit.central.console.seed import event

START = datetime(2026, 3, 1, tzinfo=UTC)
END = datetime(2026, 3, 8, tzinfo=UTC)


def test_report_figures_match_the_hand_computed_answers(runtime: Runtime, clock: FakeClock) -> None:
    a = enroll_agent(runtime, team="t").device_id
    b = enroll_agent(runtime, team="t", user="ben").device_id
    c = enroll_agent(runtime, team="u", user="cy").device_id
    day = datetime(2026, 3, 3, 10, tzinfo=UTC)
    event(runtime, a, "t", "clipboard.sensitive", "masked", day)
    event(runtime, a, "t", "clipboard.sensitive", "observed", day)
    event(runtime, a, "t", "usb.blocked", "blocked", day)
    event(runtime, a, "t", "download.quarantined", "quarantined", day)
    event(runtime, a, "t", "capture.hotkey", "warned", START - timedelta(days=1))  # before the period
    event(runtime, a, "t", "policy.acknowledged", "observed", day)
    event(runtime, b, "t", "usb.mounted", "allowed", day)  # allowed: no violation
    event(runtime, b, "t", "clipboard.sensitive", "cleared", day)
    event(runtime, c, "u", "usb.blocked", "blocked", day)  # other team

    with runtime.db.write() as conn:
        save_rule(conn, RuleSpec(name="all", sla_minutes=60, dedupe_seconds=0), now=clock())
        for _ in range(3):
            insert_alerts(
                conn, [NewAlert(kind="tamper.seq_gap", severity="high", event_seq=None)], device_id=a, team="t", now=day
            )
    ids = [r.alert_id for r in AlertRouter(runtime.db, None, clock=clock).route_pending()]
    boss = Principal(name="boss", role="admin")
    workflow.close(runtime.db, boss, ids[0], note="ok", now=day + timedelta(minutes=30))  # within SLA
    workflow.close(runtime.db, boss, ids[1], note="late", now=day + timedelta(minutes=90))  # past SLA
    workflow.toggle_incident(runtime.db, boss, ids[2], now=day)
    # Allow entry first published 40 days before the end; exception reviewed 10 days before the end.
    doc = PolicyDocument.model_validate(
        {
            "version": 0,
            "controls": {
                "usb": {
                    "allow": [{"vendor_id": "0781", "product_id": "5581"}],
                    "exceptions": [
                        {
                            "vendor_id": "1234",
                            "product_id": "abcd",
                            "device_id": a,
                            "expires_at": "2026-04-01T00:00:00Z",
                            "reviewed_at": "2026-02-26T00:00:00Z",
                        }
                    ],
                }
            },
        }
    )
    policies.publish(runtime.db, runtime.signer, doc, author="t", now=END - timedelta(days=40))
    with runtime.db.write() as conn:
        conn.execute(update(alert_workflow).values(routed_at=day))

    report = figures.compute(runtime.db, start=START, end=END, team="t")

    assert report.violations_by_control == {"capture": 0, "clipboard": 3, "download": 1, "usb": 1}
    assert (report.acknowledgement.numerator, report.acknowledgement.denominator) == (1, 2)
    assert report.incidents == 1
    assert report.tamper_alerts == 3
    assert (report.closure_within_sla.numerator, report.closure_within_sla.denominator) == (1, 3)
    assert (report.masking.numerator, report.masking.denominator) == (3, 4)
    assert report.masking.percent == 75.0
    assert report.review_buckets == {"0-30 days": 1, "31-90 days": 1, "over 90 days": 0}
    rows = figures.csv_rows(report)
    assert ["t", "2026-03-01", "2026-03-08", "masking_compliance_percent", "", "75.0", "3", "4"] in rows

    other = figures.compute(runtime.db, start=START, end=END, team="u")
    assert other.violations_by_control["usb"] == 1
    assert other.review_buckets == {"0-30 days": 0, "31-90 days": 1, "over 90 days": 0}


def test_acknowledgement_window_is_the_policys_reack_days_not_90(runtime: Runtime, clock: FakeClock) -> None:
    fresh = enroll_agent(runtime, team="t").device_id
    stale = enroll_agent(runtime, team="t", user="ben").device_id
    event(runtime, fresh, "t", "policy.acknowledged", "observed", END - timedelta(days=10))
    event(runtime, stale, "t", "policy.acknowledged", "observed", END - timedelta(days=40))

    # The policy in force at the end still re-asks every 90 days: both acknowledgements count.
    before = figures.compute(runtime.db, start=START, end=END, team="t")
    assert (before.acknowledgement.numerator, before.acknowledgement.denominator) == (2, 2)

    doc = PolicyDocument.model_validate({"version": 0, "controls": {"acknowledgement": {"reack_days": 30}}})
    policies.publish(runtime.db, runtime.signer, doc, author="t", now=END - timedelta(days=1))
    after = figures.compute(runtime.db, start=START, end=END, team="t")
    assert (after.acknowledgement.numerator, after.acknowledgement.denominator) == (1, 2)

    # A report that ended before the 30-day policy was published keeps the window agents applied then.
    earlier_end = END - timedelta(days=2)
    earlier = figures.compute(runtime.db, start=START - timedelta(days=7), end=earlier_end, team="t")
    assert (earlier.acknowledgement.numerator, earlier.acknowledgement.denominator) == (2, 2)
