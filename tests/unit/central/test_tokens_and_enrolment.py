"""Enrolment tokens (per team, expiring, multi-use, revocable), device credentials and API tokens."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import select

from central.runtime import Runtime
from central.simulate import SimulatedAgent
from central.store import devices, tables, tokens
from policy_client.schema import EnrollRequest


def _request(token: str, agent: SimulatedAgent | None = None) -> EnrollRequest:
    agent = agent or SimulatedAgent()
    return EnrollRequest(token=token, hostname="desk-7", os="windows", user="ravi", chain_key=agent.chain_key_b64)


def test_one_token_enrols_many_devices_into_its_team(runtime: Runtime) -> None:
    token = tokens.issue_enroll_token(runtime.db, "kyc-floor", ttl=timedelta(days=1), now=runtime.clock())

    enrolled = [devices.enroll_device(runtime.db, _request(token), now=runtime.clock()) for _ in range(3)]

    assert {e.team for e in enrolled} == {"kyc-floor"}
    assert len({e.device_id for e in enrolled}) == 3
    assert len({e.credential for e in enrolled}) == 3
    found = devices.find_device(runtime.db, enrolled[1].credential)
    assert found is not None
    assert found.device_id == enrolled[1].device_id


def test_expired_token_is_refused(runtime: Runtime) -> None:
    token = tokens.issue_enroll_token(runtime.db, "t", ttl=timedelta(minutes=5), now=runtime.clock())
    runtime.clock.advance(timedelta(minutes=5, seconds=1))  # type: ignore[attr-defined]

    with pytest.raises(devices.EnrollRefused, match="expired"):
        devices.enroll_device(runtime.db, _request(token), now=runtime.clock())


def test_revoked_token_is_refused(runtime: Runtime) -> None:
    token = tokens.issue_enroll_token(runtime.db, "t", ttl=timedelta(hours=1), now=runtime.clock())
    assert tokens.revoke_enroll_token(runtime.db, token, now=runtime.clock())
    assert not tokens.revoke_enroll_token(runtime.db, token, now=runtime.clock())

    with pytest.raises(devices.EnrollRefused, match="revoked"):
        devices.enroll_device(runtime.db, _request(token), now=runtime.clock())


def test_unknown_token_is_refused(runtime: Runtime) -> None:
    with pytest.raises(devices.EnrollRefused, match="unknown"):
        devices.enroll_device(runtime.db, _request("dwe_not-a-real-token"), now=runtime.clock())


def test_token_with_max_uses_stops_after_them(runtime: Runtime) -> None:
    token = tokens.issue_enroll_token(runtime.db, "t", ttl=timedelta(hours=1), now=runtime.clock(), max_uses=2)
    for _ in range(2):
        devices.enroll_device(runtime.db, _request(token), now=runtime.clock())

    with pytest.raises(devices.EnrollRefused, match="maximum"):
        devices.enroll_device(runtime.db, _request(token), now=runtime.clock())


@pytest.mark.parametrize(
    ("team", "ttl", "max_uses"),
    [(" ", timedelta(hours=1), None), ("t", timedelta(0), None), ("t", timedelta(hours=1), 0)],
)
def test_bad_token_parameters_are_refused(runtime: Runtime, team: str, ttl: timedelta, max_uses: int | None) -> None:
    with pytest.raises(ValueError, match="must"):
        tokens.issue_enroll_token(runtime.db, team, ttl=ttl, now=runtime.clock(), max_uses=max_uses)


def test_only_hashes_of_tokens_and_credentials_are_stored(runtime: Runtime) -> None:
    enroll_token = tokens.issue_enroll_token(runtime.db, "t", ttl=timedelta(hours=1), now=runtime.clock())
    credential = devices.enroll_device(runtime.db, _request(enroll_token), now=runtime.clock()).credential
    api_token = tokens.create_api_token(runtime.db, "auditor-1", "auditor", now=runtime.clock())

    with runtime.db.read() as conn:
        stored = [
            *conn.execute(select(tables.enroll_tokens)).all(),
            *conn.execute(select(tables.devices)).all(),
            *conn.execute(select(tables.api_tokens)).all(),
        ]
    dump = repr(stored)
    for secret in (enroll_token, credential, api_token):
        assert secret not in dump
        assert tokens.token_hash(secret) in dump


def test_api_tokens_carry_their_role_and_can_be_revoked_by_credential_only(runtime: Runtime) -> None:
    admin = tokens.create_api_token(runtime.db, "ops", "admin", now=runtime.clock())
    auditor = tokens.create_api_token(runtime.db, "audit", "auditor", now=runtime.clock())

    found_admin = tokens.find_api_token(runtime.db, admin)
    found_auditor = tokens.find_api_token(runtime.db, auditor)
    assert found_admin is not None
    assert (found_admin.name, found_admin.role) == ("ops", "admin")
    assert found_auditor is not None
    assert found_auditor.role == "auditor"
    assert tokens.find_api_token(runtime.db, "dwa_unknown") is None


def test_device_credential_is_not_an_api_token(runtime: Runtime) -> None:
    token = tokens.issue_enroll_token(runtime.db, "t", ttl=timedelta(hours=1), now=runtime.clock())
    credential = devices.enroll_device(runtime.db, _request(token), now=runtime.clock()).credential

    assert tokens.find_api_token(runtime.db, credential) is None


def test_unknown_role_is_refused(runtime: Runtime) -> None:
    with pytest.raises(ValueError, match="role"):
        tokens.create_api_token(runtime.db, "x", "supervisor", now=runtime.clock())  # type: ignore[arg-type]


def test_tokens_for_the_same_new_team_issued_at_once_all_succeed(runtime: Runtime) -> None:
    # Two admins (or a fleet roll-out script with threads) naming a team that does not exist yet, at the same moment:
    # on PostgreSQL the second insert of the team used to fail with a unique violation.
    start = threading.Barrier(8)

    def issue(_: int) -> str:
        start.wait(timeout=30)
        return tokens.issue_enroll_token(runtime.db, "night-shift", ttl=timedelta(hours=1), now=runtime.clock())

    with ThreadPoolExecutor(max_workers=8) as pool:
        issued = list(pool.map(issue, range(8)))
    assert len(set(issued)) == 8
    with runtime.db.read() as conn:
        teams = conn.execute(select(tables.teams.c.name).where(tables.teams.c.name == "night-shift")).all()
    assert len(teams) == 1
