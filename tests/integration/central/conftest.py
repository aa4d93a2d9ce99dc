"""A real uvicorn endpoint on a free loopback port per test, on SQLite and (marker postgres) PostgreSQL."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn

from central import commands
from central.app import create_app
from central.runtime import Runtime
from central.settings import ServerSettings
from central.simulate import SimulatedAgent
from tests.pg import db_url, pg_url
from tests.support.waiting import wait_for

__all__ = ["db_url", "pg_url"]

START_TIMEOUT_S = 20.0


@dataclass
class LiveEndpoint:
    url: str
    settings: ServerSettings
    runtime: Runtime
    client: httpx.Client

    def enroll(self, *, team: str = "collections", user: str = "asha") -> tuple[SimulatedAgent, dict[str, str]]:
        """Enrol a simulated agent over HTTP; return it and the Authorization header for its credential."""
        token = commands.issue_enroll_token(self.settings, team, timedelta(hours=1))
        agent = SimulatedAgent(user=user)
        answer = self.client.post(
            "/v1/enroll",
            json={"token": token, "hostname": "desk-1", "os": "linux", "user": user, "chain_key": agent.chain_key_b64},
        )
        assert answer.status_code == 200, answer.text
        agent.device_id = answer.json()["device_id"]
        return agent, {"Authorization": f"Bearer {answer.json()['credential']}"}

    def api_headers(self, role: str = "auditor") -> dict[str, str]:
        token = commands.create_api_token(self.settings, f"test-{role}", role)  # type: ignore[arg-type]
        return {"Authorization": f"Bearer {token}"}


@contextlib.contextmanager
def serve(settings: ServerSettings) -> Iterator[LiveEndpoint]:
    """Run the app under uvicorn in a thread on a socket bound to a free port; stop it afterwards."""
    app = create_app(settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn-test", daemon=True)
    thread.start()
    try:
        wait_for(
            lambda: server.started or not thread.is_alive(), timeout=START_TIMEOUT_S, what="uvicorn start", poll=0.01
        )
        assert server.started, "uvicorn did not start"
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=30.0) as client:
            yield LiveEndpoint(url=url, settings=settings, runtime=app.state.runtime, client=client)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"


@pytest.fixture
def server_settings(tmp_path: Path, db_url: str | None) -> ServerSettings:
    return ServerSettings(data_dir=tmp_path / "server", db_url=db_url, port=0)


@pytest.fixture
def endpoint(server_settings: ServerSettings) -> Iterator[LiveEndpoint]:
    with serve(server_settings) as live:
        yield live


@pytest.fixture
def busy_endpoint(server_settings: ServerSettings) -> Iterator[LiveEndpoint]:
    """An endpoint that processes one batch at a time."""
    with serve(replace(server_settings, max_concurrent_ingest=1, retry_after_s=7)) as live:
        yield live
