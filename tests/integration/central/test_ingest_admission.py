"""Pre-authentication exhaustion of `POST /v1/events`, with real sockets that trickle bodies.

A real agent process keeps uploading to a real endpoint process while sockets without a credential, with a
wrong one and with a valid one trickle bodies: the agent's events must arrive. A body slower than the
deadline gets 408; a device's third concurrent batch gets 429 at once.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from agent_app.core.enrol import enrol_here
from central import commands
from central.settings import AGENT_BODY_TIMEOUT_ENV as BODY_TIMEOUT_ENV
from central.settings import INGEST_PER_DEVICE_ENV as PER_DEVICE_ENV
from central.settings import ServerSettings
from central.simulate import SimulatedAgent
from tests.integration.central.conftest import serve
from tests.support.agent_process import TEST_KIND, AgentProcess
from tests.support.endpoint import EndpointProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

FAST_RETRY = {"backoff_base": 0.02, "backoff_cap": 0.5}
DECLARED = 1_000_000
"""Content-Length the tricklers announce: they never get near it."""


@dataclass
class Trickler:
    """One socket sending `POST /v1/events` headers, then a byte of body every `pace` seconds, until answered."""

    port: int
    authorization: str | None
    pace: float = 0.2
    status: int | None = None
    answered_after: float | None = None
    closed_by_server: bool = False
    sent: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Trickler:
        self._thread = threading.Thread(target=self._run, name="trickler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    @property
    def open(self) -> bool:
        return self.status is None and not self.closed_by_server

    def _run(self) -> None:
        head = f"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nContent-Type: application/json\r\n"
        head += f"Content-Length: {DECLARED}\r\n"
        if self.authorization:
            head += f"Authorization: {self.authorization}\r\n"
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall((head + "\r\n").encode() + b'{"device_id":"')
            while not self._stop.is_set():
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    answer = sock.recv(4096)
                    if not answer:
                        self.closed_by_server = True
                        return
                    self.status = int(answer.split(b" ", 2)[1])
                    self.answered_after = time.monotonic() - started
                    return
                try:
                    sock.sendall(b"a")
                except OSError:
                    self.closed_by_server = True
                    return
                self.sent += 1
                self._stop.wait(self.pace)  # the attacker's pace, not a synchronisation


def _enrol_attacker(url: str, settings: ServerSettings, name: str) -> str:
    """A device the attacker enrolled (or whose credential they stole): a valid Authorization header."""
    token = commands.issue_enroll_token(settings, "floor-1", timedelta(hours=1))
    agent = SimulatedAgent()
    answer = httpx.post(
        f"{url}/v1/enroll",
        json={"token": token, "hostname": name, "os": "linux", "user": name, "chain_key": agent.chain_key_b64},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return f"Bearer {answer.json()['credential']}"


@contextlib.contextmanager
def _tricklers(port: int, authorizations: list[str | None]) -> Iterator[list[Trickler]]:
    started = [Trickler(port, auth).start() for auth in authorizations]
    try:
        yield started
    finally:
        for trickler in started:
            trickler.stop()


def test_trickling_bodies_do_not_keep_a_real_agent_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    monkeypatch.setenv(BODY_TIMEOUT_ENV, "120")  # the slow bodies stay open for the whole test
    endpoint = EndpointProcess(tmp_path / "server")
    endpoint.start()
    home = tmp_path / "agent"
    home.mkdir()
    agent = AgentProcess(home, uploader_options=FAST_RETRY)
    try:
        enrol_here(endpoint.url, endpoint.enroll_token(), home=home)
        api = endpoint.api_token()
        attackers = [_enrol_attacker(endpoint.url, endpoint.settings, f"rogue-{i}") for i in range(4)]
        # More slow sockets than the endpoint has ingest slots (8), of every kind.
        authorizations: list[str | None] = [None] * 4 + ["Bearer dwd_not-a-credential"] * 4
        authorizations += [auth for auth in attackers for _ in range(3)]
        port = endpoint.settings.port
        with _tricklers(port, authorizations) as slow:
            wait_for(lambda: all(t.sent >= 3 or not t.open for t in slow), timeout=10, what="every socket trickling")
            agent.start()
            for start in range(1, 61, 20):
                agent.raise_events(start, 20)
            wait_for(
                lambda: len(endpoint.events(api, kind=TEST_KIND)) >= 60,
                timeout=60,
                what="the real agent's 60 events while the slow bodies trickle",
            )
            assert [t.status for t in slow[:8]] == [401] * 8, "a caller without a valid credential must not wait"
            valid = slow[8:]
            assert sum(t.status == 429 for t in valid) == len(attackers), "each rogue device's third batch refused"
            still_open = [t for t in valid if t.open]
            assert len(still_open) == 2 * len(attackers), "the slow bodies should still be trickling"
            numbers = sorted(int(e["data"]["n"]) for e in endpoint.events(api, kind=TEST_KIND))
    finally:
        agent.stop()
        endpoint.stop()
    assert numbers == list(range(1, 61))


def test_a_body_slower_than_the_deadline_gets_408_and_a_third_batch_429(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(BODY_TIMEOUT_ENV, "1.5")
    monkeypatch.setenv(PER_DEVICE_ENV, "2")
    with serve(ServerSettings(data_dir=tmp_path / "server", port=0)) as live:
        device = _enrol_attacker(live.url, live.settings, "slow-desk")
        port = int(live.url.rsplit(":", 1)[1])
        with _tricklers(port, [device, device, device]) as slow:
            wait_for(lambda: not any(t.open for t in slow), timeout=10, what="every slow body answered")
            assert live.runtime.limiter.busy == 0  # reading a body never held a shared slot
        answers = sorted((t.status or 0, t.answered_after or 0.0) for t in slow)
        assert [status for status, _ in answers] == [408, 408, 429]
        cut_after = [after for status, after in answers if status == 408]
        refused_after = answers[-1][1]
        assert refused_after < 1.4  # at once, not after the deadline
        assert min(cut_after) >= 1.4
        assert max(cut_after) < 6
        # The device is free again once its slow requests were cut off.
        again = live.client.post("/v1/events", content=b"{}", headers={"Authorization": device})
        assert again.status_code == 422
