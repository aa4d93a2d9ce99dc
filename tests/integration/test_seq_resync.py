"""Seq resynchronisation end to end, against a real endpoint process (`deskwarden server`).

1. A real agent process whose outbox was deleted restarts at seq 1: its next `download.quarantined` must reach
   the endpoint and raise its alert (it used to be counted as a duplicate of the old seq and vanish), the jump
   is recorded as `agent.loss`, and the chain still verifies (no tamper.chain_broken).
2. The real Uploader and Outbox: a batch refused with 409 is sent again under new seqs, not dropped.
3. An endpoint that never says where to continue: 409s end in dead letters, reported, not in a loop.
4. A policy the agent does not apply is refetched after each heartbeat and answered 304: uploads go on.

Run as `python -m tests.integration.test_seq_resync HOME`, this module is the agent child of test 1.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import queue
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import requests

from agent_app.core import paths
from agent_app.core.enrol import enrol_here
from agent_app.core.outbox import Outbox
from agent_app.core.uploader import Uploader
from policy_client.schema import SEQ_RESYNC_HEADER, Action, EventDraft, EventKind, Severity
from policy_client.secrets import OutboxKeys, key_id_for
from policy_client.transport import Transport
from tests.support.endpoint import EndpointProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FAST_RETRY = {"backoff_base": 0.02, "backoff_cap": 0.3}


def quarantined(name: str) -> EventDraft:
    return EventDraft(
        kind=EventKind.download_quarantined,
        severity=Severity.high,
        action=Action.quarantined,
        data={"name": name, "sha256": hashlib.sha256(name.encode()).hexdigest(), "findings": ["card"]},
    )


# --- 1. a real agent process ---------------------------------------------------------------------------


class QuarantiningAgent:
    """The parent side of this module run as a child: `quarantine NAME` records one and answers `ack NAME`."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._log = home / "agent-child.log"

    def start(self) -> None:
        env = os.environ | {
            "DESKWARDEN_HOME": str(self.home),
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
            "PYTHONPATH": str(REPO),
        }
        with self._log.open("a") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "tests.integration.test_seq_resync", str(self.home)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                bufsize=1,
                env=env,
                cwd=REPO,
            )
        self._lines = queue.SimpleQueue()
        threading.Thread(target=self._read, args=(self._proc.stdout,), daemon=True).start()
        assert self._next(30).startswith("ready"), self._tail()

    def _read(self, stream: IO[str] | None) -> None:
        if stream is not None:
            for line in stream:
                self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _next(self, timeout: float) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            line = None
        if line is None:
            raise AssertionError(f"agent child went silent; log: {self._tail()}")
        return line

    def _tail(self) -> str:
        return self._log.read_text(errors="replace")[-2000:] if self._log.exists() else ""

    def quarantine(self, name: str) -> None:
        assert self._proc is not None
        assert self._proc.stdin is not None
        self._proc.stdin.write(f"quarantine {name}\n")
        self._proc.stdin.flush()
        assert self._next(30) == f"ack {name}", self._tail()

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(BrokenPipeError, OSError):
            assert proc.stdin is not None
            proc.stdin.write("quit\n")
            proc.stdin.flush()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def _child(home: Path) -> None:
    from agent_app.core.runtime import AgentRuntime

    runtime = AgentRuntime(home, collectors={}, uploader_options=FAST_RETRY)
    runtime.start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    done = threading.Event()

    def serve() -> None:
        try:
            for line in sys.stdin:
                parts = line.split()
                if parts[:1] == ["quit"]:
                    break
                if parts[:1] == ["quarantine"] and runtime.record_batch([quarantined(parts[1])], timeout=30):
                    sys.stdout.write(f"ack {parts[1]}\n")
                    sys.stdout.flush()
        finally:
            done.set()

    threading.Thread(target=serve, name="control", daemon=True).start()
    try:
        runtime.run_headless(done.is_set)
    finally:
        runtime.stop(reason="quit")


def _delete_outbox(home: Path) -> list[str]:
    """The outbox and everything beside it (WAL, shared memory, clean-stop marker, durable high-water mark)."""
    outbox = paths.outbox_path(home)
    gone = sorted(p.name for p in outbox.parent.glob(outbox.name + "*"))
    for name in gone:
        (outbox.parent / name).unlink()
    return gone


def test_an_agent_whose_outbox_was_deleted_gets_its_next_quarantine_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    endpoint = EndpointProcess(tmp_path / "server")
    endpoint.start()
    home = tmp_path / "agent"
    home.mkdir()
    agent = QuarantiningAgent(home)
    try:
        device_id = enrol_here(endpoint.url, endpoint.enroll_token(), home=home)
        api = endpoint.api_token()
        agent.start()
        for n in range(12):
            agent.quarantine(f"before-{n}")
        wait_for(
            lambda: len(endpoint.events(api, kind="download.quarantined")) == 12, timeout=60, what="12 quarantines"
        )
        agent.stop()
        # The endpoint holds seqs well past anything a fresh outbox starts with.
        high_point = max(e["seq"] for e in endpoint.events(api, device_id=device_id))
        assert high_point > 12
        assert "outbox.db" in " ".join(_delete_outbox(home))

        agent.start()  # counts from seq 1 again
        agent.quarantine("after-loss")

        def arrived() -> list[dict[str, Any]]:
            return [e for e in endpoint.events(api, kind="download.quarantined") if e["data"]["name"] == "after-loss"]

        wait_for(lambda: bool(arrived()), timeout=60, what="the first quarantine after the outbox was lost")
        [event] = arrived()
        wait_for(
            lambda: any(a["data"].get("event_id") == event["id"] for a in endpoint.alerts(api, kind=event["kind"])),
            timeout=30,
            what="its download.quarantined alert",
        )
        stored = endpoint.events(api, device_id=device_id)
        chain_broken = endpoint.alerts(api, kind="tamper.chain_broken")
        seq_gaps = endpoint.alerts(api, kind="tamper.seq_gap")
    finally:
        agent.stop()
        endpoint.stop()

    assert event["seq"] > high_point
    losses = [e for e in stored if e["kind"] == "agent.loss" and e["data"].get("reason") == "seq_resync"]
    assert losses, "the jump past the endpoint's head must be recorded as agent.loss"
    assert losses[0]["seq"] == high_point + 1  # the first seq after the endpoint's head: the gap is explicit
    assert losses[0]["data"]["endpoint_last_seq"] == high_point
    assert chain_broken == [], "moved events must chain on from the endpoint's last mac"
    assert seq_gaps == []
    assert max(Counter(e["seq"] for e in stored).values()) == 1
    names = Counter(e["data"]["name"] for e in stored if e["kind"] == "download.quarantined")
    assert names == Counter([f"before-{n}" for n in range(12)] + ["after-loss"])


# --- 2 and 3. the real Uploader and Outbox ----------------------------------------------------------------


class EndpointAgent:
    """A device enrolled over HTTP with its own outbox keys; uploaders built on demand."""

    def __init__(self, endpoint: EndpointProcess, tmp_path: Path) -> None:
        data_key = os.urandom(32)
        self.keys = OutboxKeys(key_id=key_id_for(data_key), data_key=data_key, chain_key=os.urandom(32))
        answer = requests.post(
            endpoint.url + "/v1/enroll",
            json={
                "token": endpoint.enroll_token(),
                "hostname": "desk-9",
                "os": "linux",
                "user": "asha",
                "chain_key": base64.b64encode(self.keys.chain_key).decode(),
            },
            timeout=10,
        )
        answer.raise_for_status()
        self.device_id: str = answer.json()["device_id"]
        self.credential: str = answer.json()["credential"]
        self.url = endpoint.url
        self.tmp_path = tmp_path
        self.recorded: queue.SimpleQueue[EventDraft] = queue.SimpleQueue()

    def outbox_path(self, name: str) -> Path:
        return self.tmp_path / f"{name}.db"

    @contextlib.contextmanager
    def uploading(self, outbox_name: str, transport: Transport) -> Iterator[Uploader]:
        uploader = Uploader(
            outbox_factory=lambda: Outbox(self.outbox_path(outbox_name), keys=self.keys, check=False),
            transport=transport,
            device_id=self.device_id,
            record=self.recorded.put,
            heartbeat_seconds=3600.0,
            **FAST_RETRY,
        )
        uploader.start()
        try:
            yield uploader
        finally:
            assert uploader.stop(), "uploader did not stop"


class FirstHeartbeatRefused(Transport):
    """The first heartbeat is answered 400 (the uploader drains anyway), so the stale seqs meet a 409 first."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.heartbeats = 0
        self.statuses: list[int] = []

    def post_json(
        self, path: str, body: bytes, *, compress: bool = True, headers: dict[str, str] | None = None
    ) -> requests.Response:
        if path == "/v1/heartbeat":
            self.heartbeats += 1
            if self.heartbeats == 1:
                refused = requests.Response()
                refused.status_code = 400
                refused._content = b'{"detail": "refused by the test"}'
                return refused
        return super().post_json(path, body, compress=compress, headers=headers)

    def post_gzipped(self, path: str, gzipped: bytes, *, headers: dict[str, str] | None = None) -> requests.Response:
        # Every compressed post ends here: event batches (the uploader compresses them itself) and post_json's.
        response = super().post_gzipped(path, gzipped, headers=headers)
        if path == "/v1/events":
            self.statuses.append(response.status_code)
        return response


class NoResyncAsked(FirstHeartbeatRefused):
    """Like an endpoint that never says where to continue: heartbeats go without the resync header."""

    def post_json(
        self, path: str, body: bytes, *, compress: bool = True, headers: dict[str, str] | None = None
    ) -> requests.Response:
        if headers is not None:
            headers = {k: v for k, v in headers.items() if k != SEQ_RESYNC_HEADER}
        return super().post_json(path, body, compress=compress, headers=headers)


class CountingTransport(Transport):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.heartbeats = 0
        self.policy_statuses: list[int] = []

    def post_json(
        self, path: str, body: bytes, *, compress: bool = True, headers: dict[str, str] | None = None
    ) -> requests.Response:
        response = super().post_json(path, body, compress=compress, headers=headers)
        self.heartbeats += path == "/v1/heartbeat"
        return response

    def get(self, path: str, *, headers: dict[str, str] | None = None) -> requests.Response:
        response = super().get(path, headers=headers)
        self.policy_statuses.append(response.status_code)
        return response


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[EndpointProcess]:
    server = EndpointProcess(tmp_path / "server")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _fill(agent: EndpointAgent, endpoint: EndpointProcess, api: str, count: int) -> None:
    """`count` events stored at the endpoint through a first outbox (later lost)."""
    box = Outbox(agent.outbox_path("first"), keys=agent.keys)
    box.append([EventDraft(kind=EventKind.usb_mounted, data={"n": n}) for n in range(count)])
    box.close()
    with agent.uploading("first", Transport(agent.url, credential=agent.credential)):
        wait_for(
            lambda: len(endpoint.events(api, device_id=agent.device_id)) == count, timeout=30, what="the first events"
        )


def test_a_batch_refused_with_409_is_sent_again_under_new_seqs(endpoint: EndpointProcess, tmp_path: Path) -> None:
    api = endpoint.api_token()
    agent = EndpointAgent(endpoint, tmp_path)
    _fill(agent, endpoint, api, 10)
    box = Outbox(agent.outbox_path("second"), keys=agent.keys)  # the first outbox is gone: seqs from 1 again
    box.append([quarantined(f"lost-{n}") for n in range(3)])
    box.close()
    transport = FirstHeartbeatRefused(agent.url, credential=agent.credential)

    with agent.uploading("second", transport) as uploader:
        wait_for(
            lambda: len(endpoint.events(api, kind="download.quarantined")) == 3, timeout=30, what="the 3 quarantines"
        )
        assert uploader.resyncs == 1
        assert uploader.dead_lettered_total == 0

    assert transport.statuses[0] == 409
    stored = endpoint.events(api, device_id=agent.device_id)
    assert sorted(e["seq"] for e in stored) == list(range(1, 15))  # 10, the loss record, the 3 sent again
    assert [a["event_seq"] for a in endpoint.alerts(api, kind="tamper.seq_reuse")] == [1]
    assert endpoint.alerts(api, kind="tamper.chain_broken") == []


def test_409s_without_a_way_to_resync_end_in_reported_dead_letters_not_a_loop(
    endpoint: EndpointProcess, tmp_path: Path
) -> None:
    api = endpoint.api_token()
    agent = EndpointAgent(endpoint, tmp_path)
    _fill(agent, endpoint, api, 6)
    box = Outbox(agent.outbox_path("second"), keys=agent.keys)
    box.append([quarantined(f"stuck-{n}") for n in range(2)])
    transport = NoResyncAsked(agent.url, credential=agent.credential)
    try:
        with agent.uploading("second", transport):
            wait_for(lambda: box.depth() == 0, timeout=30, what="the queue to settle")
        dead = box.dead_letters()
    finally:
        box.close()
    assert [seq for seq, _ in dead] == [1, 2]
    assert all("409" in reason for _, reason in dead)
    report = agent.recorded.get(timeout=5)
    assert report.kind is EventKind.agent_dead_letter
    assert report.data["status"] == 409
    # Three resync attempts, the batch once more, then each event alone: bounded, then dead-lettered and reported.
    assert transport.statuses == [409] * 6


def test_a_policy_refetched_and_answered_304_does_not_stall_uploads(endpoint: EndpointProcess, tmp_path: Path) -> None:
    api = endpoint.api_token()
    agent = EndpointAgent(endpoint, tmp_path)
    transport = CountingTransport(agent.url, credential=agent.credential)
    box = Outbox(agent.outbox_path("only"), keys=agent.keys)
    uploader = Uploader(
        outbox_factory=lambda: Outbox(agent.outbox_path("only"), keys=agent.keys, check=False),
        transport=transport,
        device_id=agent.device_id,
        record=agent.recorded.put,
        heartbeat_seconds=0.05,  # each heartbeat says policy 1 is newer than the 0 this agent reports
        **FAST_RETRY,
    )
    uploader.start()
    try:
        wait_for(lambda: 304 in transport.policy_statuses, timeout=30, what="a policy refetch answered 304")
        box.append([quarantined(f"after-304-{n}") for n in range(5)])
        uploader.notify()
        wait_for(lambda: len(endpoint.events(api, kind="download.quarantined")) == 5, timeout=30, what="the 5 events")
    finally:
        assert uploader.stop()
        box.close()


if __name__ == "__main__":
    _child(Path(sys.argv[1]))
