"""Retention purge with a fake clock: what is past retention goes (most specific rule wins), nothing else."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from central import retention
from central.alerting.router import AlertRouter
from central.runtime import Runtime
from central.store import audit, tables
from central.store.alerts import NewAlert, insert_alerts
from tests.unit.central.conftest import FakeClock, enroll_agent
from tests.unit.central.console.seed import event


def _kinds(runtime: Runtime) -> list[str]:
    with runtime.db.read() as conn:
        return sorted(str(k) for k in conn.execute(select(tables.events.c.kind)).scalars())


def test_purge_removes_only_what_is_past_retention(runtime: Runtime, clock: FakeClock) -> None:
    device = enroll_agent(runtime, team="t").device_id
    now = clock()
    retention.set_rule(
        runtime.db, retention.RetentionRule(scope="events", kind="clipboard.sensitive", days=7), actor="test", now=now
    )
    event(runtime, device, "t", "clipboard.sensitive", "masked", now - timedelta(days=10))  # past 7 days: goes
    event(runtime, device, "t", "clipboard.sensitive", "masked", now - timedelta(days=3))  # stays
    event(runtime, device, "t", "usb.blocked", "blocked", now - timedelta(days=10))  # default 180: stays
    event(runtime, device, "t", "usb.mounted", "observed", now - timedelta(days=200))  # goes
    with runtime.db.write() as conn:
        for _ in range(2):
            insert_alerts(
                conn,
                [NewAlert(kind="tamper.seq_gap", severity="high", event_seq=None)],
                device_id=device,
                team="t",
                now=now - timedelta(days=400),
            )
        audit.record(conn, actor="x", action="old", target="y", now=now - timedelta(days=800))
    AlertRouter(runtime.db, None, clock=clock).route_pending()
    with runtime.db.write() as conn:
        first = conn.execute(select(func.min(tables.alerts.c.id))).scalar_one()
        conn.execute(update(tables.alerts).where(tables.alerts.c.id == first).values(status="closed"))

    counts = retention.purge(runtime.db, now=now, batch=1)

    assert _kinds(runtime) == ["clipboard.sensitive", "usb.blocked"]
    with runtime.db.read() as conn:
        assert [str(s) for s in conn.execute(select(tables.alerts.c.status)).scalars()] == ["open"]
    assert counts == {"events:clipboard.sensitive:*": 1, "events:*:*": 1, "alerts:*:*": 1, "audit:*:*": 1}
    entries = audit.list_entries(runtime.db)
    assert entries[0]["action"] == "retention.purge"
    assert entries[0]["after"] == counts


def test_scheduler_runs_when_due_on_a_fake_clock(runtime: Runtime, clock: FakeClock) -> None:
    scheduler = retention.RetentionScheduler(runtime.db, clock=clock, every=timedelta(hours=1))
    assert scheduler.tick() == {}
    clock.advance(timedelta(minutes=30))
    assert scheduler.tick() is None
    device = enroll_agent(runtime, team="t").device_id
    event(runtime, device, "t", "usb.mounted", "observed", clock() - timedelta(days=181))
    clock.advance(timedelta(minutes=31))
    assert scheduler.tick() == {"events:*:*": 1}


def test_fleet_events_retention_goes_into_policy(runtime: Runtime, clock: FakeClock) -> None:
    assert retention.fleet_event_days(runtime.db) == retention.DEFAULT_DAYS["events"]
    retention.set_rule(runtime.db, retention.RetentionRule(scope="events", days=45), actor="t", now=clock())
    assert retention.fleet_event_days(runtime.db) == 45
