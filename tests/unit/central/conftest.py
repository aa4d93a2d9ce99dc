"""Fixtures for the endpoint's store tests: a prepared runtime on SQLite and (marker postgres) PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from central.runtime import Runtime, prepare
from central.settings import ServerSettings
from central.simulate import SimulatedAgent
from central.store import devices, tokens
from policy_client.schema import EnrollRequest
from tests.pg import db_url, pg_url

__all__ = ["db_url", "pg_url"]


class FakeClock:
    def __init__(self, start: datetime = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(tmp_path: Path, db_url: str | None) -> ServerSettings:
    return ServerSettings(data_dir=tmp_path / "server", db_url=db_url)


@pytest.fixture
def runtime(settings: ServerSettings, clock: FakeClock) -> Iterator[Runtime]:
    rt = prepare(settings, clock=clock)
    yield rt
    rt.db.dispose()


def enroll_agent(runtime: Runtime, *, team: str = "collections", user: str = "asha") -> SimulatedAgent:
    """Enrol a simulated agent straight through the store and return it with its device id set."""
    agent = SimulatedAgent(user=user)
    token = tokens.issue_enroll_token(runtime.db, team, ttl=timedelta(hours=1), now=runtime.clock())
    enrolled = devices.enroll_device(
        runtime.db,
        EnrollRequest(token=token, hostname="desk-1", os="linux", user=user, chain_key=agent.chain_key_b64),
        now=runtime.clock(),
    )
    agent.device_id = enrolled.device_id
    return agent
