"""Two API processes on one PostgreSQL database: an alert raised through one arrives live on the other's stream."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from central.settings import ServerSettings
from policy_client.schema import EventKind
from tests.integration.central.console.live import Console, csrf_of, serve_console
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[4]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def two(tmp_path: Path, pg_url: str) -> Iterator[tuple[Console, str]]:
    with serve_console(ServerSettings(data_dir=tmp_path / "a", db_url=pg_url)) as first:
        port = _free_port()
        child = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("serve_child.py")), str(tmp_path / "b"), pg_url, str(port)],
            cwd=ROOT,
            env=os.environ | {"PYTHONPATH": str(ROOT)},
        )
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return child.poll() is not None

        try:
            wait_for(up, timeout=30, what="second endpoint process")
            assert child.poll() is None, "second endpoint process exited"
            yield first, url
        finally:
            child.terminate()
            child.wait(timeout=15)


def test_alert_raised_through_one_process_arrives_on_the_others_stream(two: tuple[Console, str]) -> None:
    first, second_url = two
    first.user("sup", "supervisor", ["team-a"])
    # Each process has its own data dir; the database is shared. The agent talks only to the second one.
    token = first.login("sup")
    page = token.post("/console/tokens", data={"csrf_token": _csrf(token)})
    personal = page.text.split('<pre id="token">')[1].split("</pre>")[0]
    remote = Console(url=second_url, settings=first.settings, runtime=first.runtime, state=first.state)
    agent, headers = remote.enroll(team="team-a", hostname="desk-far")
    with httpx.stream(
        "GET", f"{first.url}/v1/alerts/stream", headers={"Authorization": f"Bearer {personal}"}, timeout=20
    ) as stream:
        lines = stream.iter_lines()
        assert next(lines).startswith("retry:")
        wait_for(first.state.bus.listening.is_set, timeout=10, what="LISTEN")
        event = agent.next_event(kind=EventKind.agent_tamper)
        sent = httpx.post(
            f"{second_url}/v1/events",
            content=agent.batch([event]).model_dump_json(),
            headers=headers | {"Content-Type": "application/json"},
        )
        assert sent.status_code == 200
        data = next(line for line in lines if line.startswith("data:"))
    alert = json.loads(data.removeprefix("data:"))
    assert alert["hostname"] == "desk-far"
    assert alert["kind"] == "tamper.agent_reported"


def _csrf(client: httpx.Client) -> str:
    return csrf_of(client.get("/console/teams").text)
