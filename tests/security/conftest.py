"""A real endpoint (uvicorn thread, SQLite in a tmp dir, a clock the test moves) with two teams' data in it.

uvicorn runs on its own thread; tests call it with httpx from the pytest thread.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from central.app import create_app
from central.runtime import Runtime
from central.settings import ServerSettings
from central.simulate import SimulatedAgent
from central.store import tokens
from policy_client.schema import EventKind, Severity


@dataclass
class MovableClock:
    now: datetime = field(default_factory=lambda: datetime(2030, 1, 1, 9, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now


@dataclass
class TeamDevice:
    team: str
    agent: SimulatedAgent
    credential: str
    marker: str
    """A string that appears only in this team's stored data (hostname, user, event data)."""

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credential}"}


@dataclass
class SecurityEndpoint:
    app: FastAPI
    runtime: Runtime
    url: str
    client: httpx.Client
    clock: MovableClock
    settings: ServerSettings

    def enroll(self, team: str, marker: str) -> TeamDevice:
        token = tokens.issue_enroll_token(self.runtime.db, team, ttl=timedelta(hours=1), now=self.clock())
        agent = SimulatedAgent(user=f"user-{marker}")
        answer = self.client.post(
            "/v1/enroll",
            json={
                "token": token,
                "hostname": f"host-{marker}",
                "os": "linux",
                "user": agent.user,
                "chain_key": agent.chain_key_b64,
            },
        )
        assert answer.status_code == 200, answer.text
        agent.device_id = answer.json()["device_id"]
        device = TeamDevice(team=team, agent=agent, credential=answer.json()["credential"], marker=marker)
        events = [
            agent.next_event(data={"marker": marker, "detector": "card", "count": 1}),
            agent.next_event(kind=EventKind.agent_tamper, severity=Severity.high, data={"reason": marker}),
        ]
        posted = self.client.post("/v1/events", content=agent.batch(events).model_dump_json(), headers=device.auth)
        assert posted.status_code == 200, posted.text
        return device

    def api_token(self, role: tokens.Role = "admin") -> str:
        return tokens.create_api_token(self.runtime.db, f"sec-{role}-{time.monotonic_ns()}", role, now=self.clock())


@pytest.fixture
def security_endpoint(tmp_path: Path) -> Iterator[SecurityEndpoint]:
    clock = MovableClock()
    settings = ServerSettings(data_dir=tmp_path / "server", port=0)
    app = create_app(settings, clock=clock)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn-security", daemon=True)
    thread.start()
    pause = threading.Event()
    deadline = time.monotonic() + 20
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        pause.wait(0.01)
    assert server.started, "uvicorn did not start"
    try:
        with httpx.Client(base_url=url, timeout=10, follow_redirects=False) as client:
            yield SecurityEndpoint(
                app=app, runtime=app.state.runtime, url=url, client=client, clock=clock, settings=settings
            )
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
