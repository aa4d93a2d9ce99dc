"""A live endpoint with the console for console tests: uvicorn in a thread on a free port, users, logged-in clients.

Used by the console integration tests and the Playwright e2e tests; runs in the pytest main thread.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import httpx
import uvicorn
from fastapi import FastAPI

from central import commands
from central.app import create_app
from central.console.state import ConsoleState
from central.runtime import Runtime
from central.settings import ServerSettings
from central.simulate import SimulatedAgent
from policy_client.schema import EventKind, Severity
from tests.support.waiting import wait_for

PASSWORD = "correct-horse-battery"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Console:
    url: str
    settings: ServerSettings
    runtime: Runtime
    state: ConsoleState
    clients: list[httpx.Client] = field(default_factory=list)
    app: FastAPI | None = None

    def client(self) -> httpx.Client:
        client = httpx.Client(base_url=self.url, timeout=20.0)
        self.clients.append(client)
        return client

    def user(self, name: str, role: str, teams: list[str] | None = None) -> None:
        commands.create_user(self.settings, name, role=role, teams=teams or [], password=PASSWORD)

    def login(self, name: str) -> httpx.Client:
        client = self.client()
        form = client.get("/console/login")
        token = csrf_of(form.text)
        answer = client.post("/console/login", data={"username": name, "password": PASSWORD, "csrf_token": token})
        assert answer.status_code == 303, answer.text
        return client

    def enroll(
        self, *, team: str, user: str = "asha", hostname: str = "desk-1"
    ) -> tuple[SimulatedAgent, dict[str, str]]:
        token = commands.issue_enroll_token(self.settings, team, timedelta(hours=1))
        agent = SimulatedAgent(user=user)
        answer = httpx.post(
            f"{self.url}/v1/enroll",
            json={"token": token, "hostname": hostname, "os": "linux", "user": user, "chain_key": agent.chain_key_b64},
        )
        assert answer.status_code == 200, answer.text
        agent.device_id = answer.json()["device_id"]
        return agent, {"Authorization": f"Bearer {answer.json()['credential']}"}

    def raise_tamper(self, agent: SimulatedAgent, headers: dict[str, str]) -> None:
        """Send an agent.tamper event: ingest writes a tamper alert, which the router picks up."""
        event = agent.next_event(kind=EventKind.agent_tamper, severity=Severity.high, data={"what": "test"})
        answer = httpx.post(
            f"{self.url}/v1/events",
            content=agent.batch([event]).model_dump_json(),
            headers=headers | {"Content-Type": "application/json"},
        )
        assert answer.status_code == 200, answer.text
        self.state.alerting.wake()


def csrf_of(html: str) -> str:
    found = CSRF_RE.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


@contextlib.contextmanager
def serve_console(settings: ServerSettings, *, poll_s: float = 0.1) -> Iterator[Console]:
    app = create_app(settings, alert_poll_s=poll_s)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn-console", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), timeout=20, what="uvicorn start", poll=0.01)
        assert server.started, "uvicorn did not start"
        live = Console(
            url=f"http://127.0.0.1:{port}",
            settings=settings,
            runtime=app.state.runtime,
            state=app.state.console,
            app=app,
        )
        try:
            yield live
        finally:
            for client in live.clients:
                client.close()
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
