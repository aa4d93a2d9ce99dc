"""The in-process cache of verified device credentials: a revoked device is refused at once when this process revoked
it and within `recheck_s` when another process or host did; the cache stays bounded and never holds a refusal.

SQLite and (marker postgres) PostgreSQL. Another process's revocation is played by an UPDATE that bypasses
`revoke_device` (so nothing in this process hears of it but the database).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from central.auth.device_credentials import DeviceCredentials
from central.runtime import Runtime
from central.simulate import SimulatedAgent
from central.store import devices, tables, tokens
from policy_client.schema import EnrollRequest


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _enrol(runtime: Runtime, n: int = 1) -> list[devices.Enrolled]:
    token = tokens.issue_enroll_token(runtime.db, "collections", ttl=timedelta(hours=1), now=runtime.clock())
    return [
        devices.enroll_device(
            runtime.db,
            EnrollRequest(token=token, hostname=f"desk-{i}", os="linux", chain_key=SimulatedAgent().chain_key_b64),
            now=runtime.clock(),
        )
        for i in range(n)
    ]


def _revoke_elsewhere(runtime: Runtime, device_id: str) -> None:
    with runtime.db.write() as conn:
        d = tables.devices
        conn.execute(update(d).where(d.c.device_id == device_id).values(revoked_at=runtime.clock()))


def test_a_device_revoked_in_this_process_is_refused_at_once(runtime: Runtime) -> None:
    [enrolled] = _enrol(runtime)
    cache = DeviceCredentials(monotonic=FakeMonotonic())
    assert cache.find(runtime.db, enrolled.credential) is not None
    assert len(cache) == 1
    assert devices.revoke_device(runtime.db, enrolled.device_id, now=runtime.clock())
    assert cache.find(runtime.db, enrolled.credential) is None
    assert len(cache) == 0


def test_a_device_revoked_by_another_process_is_refused_within_the_recheck_interval(runtime: Runtime) -> None:
    red, blue = _enrol(runtime, 2)
    clock = FakeMonotonic()
    cache = DeviceCredentials(monotonic=clock, recheck_s=1.0)
    assert cache.find(runtime.db, red.credential) is not None
    assert cache.find(runtime.db, blue.credential) is not None
    _revoke_elsewhere(runtime, red.device_id)
    # The documented window: until the next check of the revocation count, the cached answer stands.
    clock.now += 0.5
    assert cache.find(runtime.db, red.credential) is not None
    clock.now += 0.5
    assert cache.find(runtime.db, red.credential) is None
    found = cache.find(runtime.db, blue.credential)
    assert found is not None
    assert found.device_id == blue.device_id


def test_refusals_are_not_cached_and_the_cache_stays_bounded(runtime: Runtime) -> None:
    enrolled = _enrol(runtime, 3)
    cache = DeviceCredentials(monotonic=FakeMonotonic(), max_entries=2)
    assert cache.find(runtime.db, "dwd_" + "A" * 43) is None
    assert len(cache) == 0
    for device in enrolled:
        found = cache.find(runtime.db, device.credential)
        assert found is not None
        assert found.device_id == device.device_id
    assert len(cache) == 2
    # The evicted (oldest) credential still authenticates, from the database.
    again = cache.find(runtime.db, enrolled[0].credential)
    assert again is not None
    assert again.device_id == enrolled[0].device_id


def test_a_revocation_before_the_first_check_is_seen(runtime: Runtime) -> None:
    """A cache made before a revocation committed elsewhere must not serve the revoked device after its first check."""
    [enrolled] = _enrol(runtime)
    clock = FakeMonotonic()
    cache = DeviceCredentials(monotonic=clock)
    _revoke_elsewhere(runtime, enrolled.device_id)
    assert cache.find(runtime.db, enrolled.credential) is None
