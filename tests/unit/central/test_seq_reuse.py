"""Seq reuse at the store: another event under a stored seq is refused (not a duplicate) and alerted;
a heartbeat reports the device's chain head and alerts a policy version the endpoint never published.

SQLite and (marker postgres) PostgreSQL, through the store functions the API handlers call.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from central.alerting.classify import classify_events
from central.runtime import Runtime
from central.simulate import SimulatedAgent
from central.store import alerts, devices, tables
from central.store.ingest import SeqReuse, ingest_batch
from policy_client.schema import GENESIS_MAC, EventKind, Heartbeat, Severity
from tests.unit.central.conftest import enroll_agent


def _stored(runtime: Runtime, device_id: str) -> dict[int, str]:
    e = tables.events
    with runtime.db.read() as conn:
        return {int(r.seq): str(r.id) for r in conn.execute(select(e.c.seq, e.c.id).where(e.c.device_id == device_id))}


def _restarted(agent: SimulatedAgent) -> SimulatedAgent:
    """The same device after its outbox was lost: same key and id, seqs from 1 again, new events."""
    return SimulatedAgent(device_id=agent.device_id, chain_key=agent.chain_key, user=agent.user)


def test_a_new_event_under_a_stored_seq_is_refused_and_alerted_not_counted_as_a_duplicate(runtime: Runtime) -> None:
    agent = enroll_agent(runtime)
    ingest_batch(
        runtime.db, agent.device_id, agent.batch(agent.events(5)), now=runtime.clock(), classify=classify_events
    )
    before = _stored(runtime, agent.device_id)
    reborn = _restarted(agent)
    quarantined = reborn.next_event(
        kind=EventKind.download_quarantined, severity=Severity.high, action="quarantined", data={"sha256": "ab" * 32}
    )

    with pytest.raises(SeqReuse) as refused:
        ingest_batch(
            runtime.db, agent.device_id, reborn.batch([quarantined]), now=runtime.clock(), classify=classify_events
        )

    assert refused.value.seqs == [1]
    assert refused.value.last_seq == 5
    assert _stored(runtime, agent.device_id) == before  # the stored event stays; the new one is not dropped as a dup
    [alert] = alerts.list_alerts(runtime.db, device_id=agent.device_id)
    assert alert["kind"] == alerts.SEQ_REUSE
    assert alert["severity"] == "high"
    assert alert["event_seq"] == 1
    assert alert["data"]["sent_id"] == str(quarantined.id)
    assert alert["data"]["stored_id"] == before[1]
    assert alert["data"]["last_seq"] == 5


def test_a_batch_with_one_reused_seq_stores_nothing_of_it(runtime: Runtime) -> None:
    """All or nothing: an agent told 409 resends every event of the batch under new seqs."""
    agent = enroll_agent(runtime)
    ingest_batch(
        runtime.db, agent.device_id, agent.batch(agent.events(3)), now=runtime.clock(), classify=classify_events
    )
    fresh = agent.events(2)  # seqs 4, 5: new
    reused = _restarted(agent).events(2)[1]  # seq 2: another event
    with pytest.raises(SeqReuse):
        ingest_batch(
            runtime.db, agent.device_id, agent.batch([*fresh, reused]), now=runtime.clock(), classify=classify_events
        )
    assert sorted(_stored(runtime, agent.device_id)) == [1, 2, 3]
    with runtime.db.read() as conn:
        last_seq = conn.execute(
            select(tables.devices.c.last_seq).where(tables.devices.c.device_id == agent.device_id)
        ).scalar_one()
    assert last_seq == 3


def test_an_exact_resend_is_still_a_duplicate(runtime: Runtime) -> None:
    agent = enroll_agent(runtime)
    events = agent.events(4)
    ingest_batch(runtime.db, agent.device_id, agent.batch(events), now=runtime.clock(), classify=classify_events)
    again = ingest_batch(
        runtime.db, agent.device_id, agent.batch(events[1:]), now=runtime.clock(), classify=classify_events
    )
    assert (again.accepted, again.duplicates) == (0, 3)
    assert alerts.list_alerts(runtime.db, device_id=agent.device_id) == []


def test_two_different_events_under_one_seq_in_a_batch_are_a_seq_reuse(runtime: Runtime) -> None:
    agent = enroll_agent(runtime)
    mine = agent.events(2)
    other = _restarted(agent).events(2)[1]
    with pytest.raises(SeqReuse) as refused:
        ingest_batch(
            runtime.db, agent.device_id, agent.batch([*mine, other]), now=runtime.clock(), classify=classify_events
        )
    assert refused.value.seqs == [2]
    assert _stored(runtime, agent.device_id) == {}
    assert [a["kind"] for a in alerts.list_alerts(runtime.db, device_id=agent.device_id)] == [alerts.SEQ_REUSE]


def test_events_chained_on_from_the_endpoints_head_are_accepted_without_tamper_alerts(runtime: Runtime) -> None:
    """What a resynchronised agent sends: seqs after the endpoint's last_seq, chained from its last_mac."""
    agent = enroll_agent(runtime)
    ingest_batch(
        runtime.db, agent.device_id, agent.batch(agent.events(5)), now=runtime.clock(), classify=classify_events
    )
    device = devices.DeviceAuth(device_id=agent.device_id, team="collections")
    head = devices.record_heartbeat(runtime.db, device, Heartbeat(), now=runtime.clock())
    assert (head.last_seq, head.last_mac) == (5, agent.mac)
    reborn = _restarted(agent)
    reborn.seq, reborn.mac = head.last_seq, head.last_mac
    outcome = ingest_batch(
        runtime.db, agent.device_id, reborn.batch(reborn.events(3)), now=runtime.clock(), classify=classify_events
    )
    assert (outcome.accepted, outcome.duplicates, outcome.alerts) == (3, 0, ())


def test_a_device_without_events_reports_the_genesis_head(runtime: Runtime) -> None:
    agent = enroll_agent(runtime)
    device = devices.DeviceAuth(device_id=agent.device_id, team="collections")
    head = devices.record_heartbeat(runtime.db, device, Heartbeat(), now=runtime.clock())
    assert (head.last_seq, head.last_mac, head.alerts) == (0, GENESIS_MAC, ())


def test_a_heartbeat_with_a_policy_version_never_published_is_alerted_once(runtime: Runtime) -> None:
    agent = enroll_agent(runtime)
    device = devices.DeviceAuth(device_id=agent.device_id, team="collections")
    published = devices.record_heartbeat(runtime.db, device, Heartbeat(policy_version=1), now=runtime.clock())
    default = devices.record_heartbeat(runtime.db, device, Heartbeat(policy_version=0), now=runtime.clock())
    forged = devices.record_heartbeat(runtime.db, device, Heartbeat(policy_version=7), now=runtime.clock())
    still = devices.record_heartbeat(runtime.db, device, Heartbeat(policy_version=7), now=runtime.clock())

    assert (published.alerts, default.alerts, still.alerts) == ((), (), ())
    [alert] = forged.alerts
    assert alert.kind == alerts.POLICY_UNKNOWN
    assert alert.data["policy_version"] == 7
    assert alert.data["newest_version"] == 1
    with runtime.db.read() as conn:
        stored = conn.execute(
            select(func.count()).select_from(tables.alerts).where(tables.alerts.c.kind == alerts.POLICY_UNKNOWN)
        ).scalar_one()
    assert stored == 1
