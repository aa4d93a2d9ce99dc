"""The heartbeat's store path in one write transaction: its answer carries the newest published policy version, it
keeps the device's last user and agent version when a beat names none, and a revoked device is refused by the write.

SQLite and (marker postgres) PostgreSQL, through the store function the heartbeat handler calls.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from central.runtime import Runtime
from central.store import devices, policies, tables
from central.store.ingest import DeviceGone
from policy_client.schema import Heartbeat, PolicyDocument
from tests.unit.central.conftest import enroll_agent


def test_a_heartbeat_answers_the_newest_published_policy_version(runtime: Runtime) -> None:
    agent = enroll_agent(runtime)
    device = devices.DeviceAuth(device_id=agent.device_id, team="collections")
    first = devices.record_heartbeat(runtime.db, device, Heartbeat(policy_version=1), now=runtime.clock())
    policies.publish(runtime.db, runtime.signer, PolicyDocument(version=2), author="t", now=runtime.clock())
    second = devices.record_heartbeat(runtime.db, device, Heartbeat(policy_version=1), now=runtime.clock())
    assert (first.policy_version, second.policy_version) == (1, 2)
    assert second.policy_version == policies.latest_version(runtime.db)


def test_a_heartbeat_without_user_or_agent_version_keeps_the_stored_ones(runtime: Runtime) -> None:
    agent = enroll_agent(runtime)
    device = devices.DeviceAuth(device_id=agent.device_id, team="collections")
    devices.record_heartbeat(runtime.db, device, Heartbeat(user="ada", agent_version="1.2"), now=runtime.clock())
    devices.record_heartbeat(runtime.db, device, Heartbeat(policy_version=1, queue_depth=4), now=runtime.clock())
    d, h = tables.devices, tables.device_health
    with runtime.db.read() as conn:
        row = conn.execute(select(d.c.user, d.c.agent_version).where(d.c.device_id == agent.device_id)).one()
        health = conn.execute(
            select(h.c.user, h.c.policy_version, h.c.queue_depth).where(h.c.device_id == agent.device_id)
        ).one()
    assert (row.user, row.agent_version) == ("ada", "1.2")
    assert (health.user, health.policy_version, health.queue_depth) == ("", 1, 4)


def test_a_revoked_devices_heartbeat_is_refused_by_the_write_itself(runtime: Runtime) -> None:
    """Whatever a credential cache still believes, the heartbeat's own transaction refuses a revoked device."""
    agent = enroll_agent(runtime)
    device = devices.DeviceAuth(device_id=agent.device_id, team="collections")
    devices.record_heartbeat(runtime.db, device, Heartbeat(), now=runtime.clock())
    assert devices.revoke_device(runtime.db, agent.device_id, now=runtime.clock())
    with pytest.raises(DeviceGone):
        devices.record_heartbeat(runtime.db, device, Heartbeat(), now=runtime.clock())
