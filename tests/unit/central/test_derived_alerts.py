"""Alerts the endpoint derives itself on the alerting thread: a device silent too long (`agent.offline`, closed when
it is heard again) and one OS user on several devices (`agent.shared_login`), each raised once while it holds.

SQLite and (marker postgres) PostgreSQL, through the functions the alerting thread calls.
"""

from __future__ import annotations

from datetime import timedelta

from central.alerting import derived
from central.runtime import Runtime
from central.store import alerts, devices
from policy_client.schema import Heartbeat
from tests.unit.central.conftest import FakeClock, enroll_agent

AFTER = timedelta(minutes=15)


def _beat(runtime: Runtime, device_id: str, *, user: str = "", team: str = "collections") -> None:
    device = devices.DeviceAuth(device_id=device_id, team=team)
    devices.record_heartbeat(runtime.db, device, Heartbeat(user=user), now=runtime.clock())


def _offline(runtime: Runtime, device_id: str) -> list[dict[str, object]]:
    return alerts.list_alerts(runtime.db, device_id=device_id, kind=derived.AGENT_OFFLINE)


def test_a_silent_device_is_alerted_once_and_closed_when_heard_again(runtime: Runtime, clock: FakeClock) -> None:
    quiet = enroll_agent(runtime)
    chatty = enroll_agent(runtime, user="ben")
    clock.advance(AFTER - timedelta(seconds=1))
    assert derived.raise_offline(runtime.db, now=clock(), after=AFTER) == 0
    _beat(runtime, chatty.device_id)
    clock.advance(timedelta(seconds=2))
    assert derived.raise_offline(runtime.db, now=clock(), after=AFTER) == 1
    assert derived.raise_offline(runtime.db, now=clock(), after=AFTER) == 0
    [alert] = _offline(runtime, quiet.device_id)
    assert alert["status"] == "open"
    assert _offline(runtime, chatty.device_id) == []

    _beat(runtime, quiet.device_id)
    assert derived.raise_offline(runtime.db, now=clock(), after=AFTER) == 0
    [alert] = _offline(runtime, quiet.device_id)
    assert alert["status"] == "closed"

    clock.advance(AFTER + timedelta(seconds=1))
    assert derived.raise_offline(runtime.db, now=clock(), after=AFTER) == 2
    assert sorted(str(a["status"]) for a in _offline(runtime, quiet.device_id)) == ["closed", "open"]


def test_a_revoked_device_is_not_alerted_as_offline(runtime: Runtime, clock: FakeClock) -> None:
    agent = enroll_agent(runtime)
    assert devices.revoke_device(runtime.db, agent.device_id, now=clock())
    clock.advance(AFTER * 2)
    assert derived.raise_offline(runtime.db, now=clock(), after=AFTER) == 0
    assert _offline(runtime, agent.device_id) == []


def test_one_user_on_two_devices_is_alerted_once_per_team(runtime: Runtime, clock: FakeClock) -> None:
    first = enroll_agent(runtime)
    second = enroll_agent(runtime, team="finance")
    alone = enroll_agent(runtime, user="cleo")
    window = timedelta(minutes=5)
    _beat(runtime, first.device_id, user="ada")
    _beat(runtime, alone.device_id, user="cleo")
    assert derived.raise_shared_logins(runtime.db, now=clock(), window=window) == 0
    _beat(runtime, second.device_id, user="ada", team="finance")
    assert derived.raise_shared_logins(runtime.db, now=clock(), window=window) == 2
    assert derived.raise_shared_logins(runtime.db, now=clock(), window=window) == 0
    raised = alerts.list_alerts(runtime.db, kind=derived.SHARED_LOGIN)
    assert sorted(str(a["team"]) for a in raised) == ["collections", "finance"]
    clock.advance(window * 2)
    assert derived.raise_shared_logins(runtime.db, now=clock(), window=window) == 0
