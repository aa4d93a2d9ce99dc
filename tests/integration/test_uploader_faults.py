"""The real Uploader and the real Outbox against a real loopback HTTP endpoint that misbehaves on purpose.

Every fault class of issue 2 (429 + Retry-After, 5xx, 413, 400, 401, dropped and reset connections) must
end with every appended event stored exactly once at the endpoint, or dead-lettered and reported.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from agent_app.core.outbox import Outbox
from agent_app.core.uploader import Uploader, UploaderState
from policy_client.schema import EventDraft, EventKind, Severity, utc_now
from policy_client.secrets import OutboxKeys, key_id_for
from policy_client.transport import Transport
from tests.integration.faulty_server import CommitThenDrop, Drop, FaultyServer, Reply, Reset

pytestmark = pytest.mark.integration

CREDENTIAL = "cred-0123456789abcdef"
DEVICE = "dev-test-1"
DATA_KEY = hashlib.sha256(b"data").digest()
KEYS = OutboxKeys(key_id=key_id_for(DATA_KEY), data_key=DATA_KEY, chain_key=hashlib.sha256(b"chain").digest())


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Poll with a deadline (the condition lives in another thread or the database)."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while time.monotonic() < deadline:
        if predicate():
            return True
        pause.wait(0.01)
    return predicate()


@dataclass
class Agent:
    server: FaultyServer
    outbox: Outbox
    uploader: Uploader
    recorded: queue.SimpleQueue[EventDraft]
    states: list[UploaderState] = field(default_factory=list)

    def append(self, count: int, *, kind: EventKind = EventKind.usb_mounted) -> list[int]:
        seqs = self.outbox.append([EventDraft(kind=kind, data={"i": i}) for i in range(count)])
        self.uploader.notify()
        return seqs

    def delivered(self, seqs: list[int]) -> bool:
        return set(seqs) <= set(self.server.accepted_seqs())

    def drained(self) -> bool:
        return self.outbox.depth() == 0


@pytest.fixture
def make_agent(tmp_path: Path) -> Iterator[Callable[..., Agent]]:
    started: list[tuple[Agent, FaultyServer]] = []

    def factory(server_kwargs: dict[str, Any] | None = None, **uploader_kwargs: Any) -> Agent:
        server = FaultyServer(credential=CREDENTIAL, device_id=DEVICE, **(server_kwargs or {})).__enter__()
        path = tmp_path / f"outbox-{len(started)}.db"
        outbox = Outbox(path, keys=KEYS)
        recorded: queue.SimpleQueue[EventDraft] = queue.SimpleQueue()
        states: list[UploaderState] = []
        options: dict[str, Any] = {
            "heartbeat_seconds": 3600.0,
            "backoff_base": 0.01,
            "backoff_cap": 0.05,
        }
        options.update(uploader_kwargs)
        uploader = Uploader(
            outbox_factory=lambda: Outbox(path, keys=KEYS, check=False),
            transport=Transport(server.url, credential=CREDENTIAL),
            device_id=DEVICE,
            record=recorded.put,
            on_state_change=states.append,
            **options,
        )
        agent = Agent(server=server, outbox=outbox, uploader=uploader, recorded=recorded, states=states)
        started.append((agent, server))
        return agent

    yield factory
    for agent, server in started:
        assert agent.uploader.stop(), "uploader did not join within 5 s"
        agent.outbox.close()
        server.__exit__(None, None, None)


def test_every_event_arrives_exactly_once_through_mixed_faults(make_agent: Callable[..., Agent]) -> None:
    agent = make_agent(
        {
            "script": [
                Reply(500, body=b'{"detail": "boom"}'),
                Drop(),
                Reset(),
                Reply(503, headers=(("Retry-After", "0"),)),
                CommitThenDrop(),
                Reply(429, headers=(("Retry-After", "0"),)),
                Reply(502),
                Reply(408),
            ]
        }
    )
    seqs = agent.append(1200)
    agent.uploader.start()
    assert wait_for(lambda: agent.delivered(seqs))
    assert wait_for(agent.drained)
    assert agent.server.accepted_seqs() == seqs
    # the batch committed before the connection dropped was sent again and counted as duplicates, not stored twice
    assert agent.server.duplicates > 0
    statuses = [r.status for r in agent.server.requests("/v1/events")]
    assert statuses[:8] == [500, None, None, 503, None, 429, 502, 408]
    assert agent.uploader.state == UploaderState.online
    assert agent.uploader.last_upload is not None
    assert agent.recorded.empty()
    accepted = agent.server.accepted_events()
    assert {e["device_id"] for e in accepted.values()} == {DEVICE}
    assert all(r.gzip for r in agent.server.requests("/v1/events"))


def test_429_waits_at_least_retry_after(make_agent: Callable[..., Agent]) -> None:
    agent = make_agent({"script": [Reply(429, headers=(("Retry-After", "1"),))]})
    seqs = agent.append(10)
    agent.uploader.start()
    assert wait_for(lambda: agent.delivered(seqs))
    first, second = agent.server.requests("/v1/events")[:2]
    assert first.status == 429
    assert second.status == 200
    # backoff alone would retry after at most 0.05 s
    assert second.at - first.at >= 1.0


def test_503_with_http_date_retry_after_is_honoured(make_agent: Callable[..., Agent]) -> None:
    when = format_datetime(utc_now().replace(microsecond=0) + timedelta(seconds=2), usegmt=True)
    agent = make_agent({"script": [Reply(503, headers=(("Retry-After", when),))]})
    seqs = agent.append(3)
    agent.uploader.start()
    assert wait_for(lambda: agent.delivered(seqs))
    first, second = agent.server.requests("/v1/events")[:2]
    assert second.at - first.at >= 0.9


def test_413_splits_batches_until_they_fit(make_agent: Callable[..., Agent]) -> None:
    agent = make_agent({"max_events": 100})
    seqs = agent.append(450)
    agent.uploader.start()
    assert wait_for(lambda: agent.delivered(seqs))
    assert wait_for(agent.drained)
    records = agent.server.requests("/v1/events")
    assert all(len(r.seqs) <= 100 for r in records if r.status == 200)
    assert any(r.status == 413 for r in records)
    assert agent.server.duplicates == 0
    assert agent.recorded.empty()
    # the smaller size is remembered: new events do not hit 413 again
    before = sum(1 for r in records if r.status == 413)
    more = agent.append(300)
    assert wait_for(lambda: agent.delivered(more))
    assert sum(1 for r in agent.server.requests("/v1/events") if r.status == 413) == before


def _assert_never_ahead_of_an_unaccepted_batch(records: list[Any]) -> None:
    """Each posted batch starts at or below the first seq the endpoint has not accepted yet."""
    next_seq = 1
    for record in records:
        if not record.seqs:
            continue  # refused before the body was read, or dropped mid-request
        assert record.seqs[0] <= next_seq, f"seqs {record.seqs[0]}.. posted before {next_seq} was accepted"
        assert list(record.seqs) == list(range(record.seqs[0], record.seqs[-1] + 1))
        if record.status == 200 or record.status is None:  # None here: stored, then the connection dropped
            next_seq = max(next_seq, record.seqs[-1] + 1)


def test_a_backlog_streams_in_seq_order_and_a_failed_batch_is_sent_again_before_the_next(
    make_agent: Callable[..., Agent],
) -> None:
    # The uploader reads the next batch while one is in flight; it must post it only after the endpoint accepted
    # the one before: here the first batch is stored but its answer lost, the third gets a 503.
    agent = make_agent({"script": [CommitThenDrop(), None, None, Reply(503, headers=(("Retry-After", "0"),))]})
    seqs = agent.append(2300)
    agent.uploader.start()
    assert wait_for(lambda: agent.delivered(seqs))
    assert wait_for(agent.drained)
    records = agent.server.requests("/v1/events")
    _assert_never_ahead_of_an_unaccepted_batch(records)
    assert records[0].seqs == records[1].seqs == tuple(range(1, 501))  # the lost answer: the same batch again
    assert agent.server.duplicates == 500
    assert sorted(agent.server.accepted_seqs()) == seqs
    assert agent.recorded.empty()


def test_single_event_still_too_large_goes_to_dead_letter_and_is_reported(make_agent: Callable[..., Agent]) -> None:
    agent = make_agent({"max_events": 0})
    seqs = agent.append(3)
    agent.uploader.start()
    report = agent.recorded.get(timeout=10)
    assert report.kind == EventKind.agent_dead_letter
    assert report.severity == Severity.high
    assert report.data["count"] == 3
    assert report.data["status"] == 413
    assert (report.data["first_seq"], report.data["last_seq"]) == (seqs[0], seqs[-1])
    assert wait_for(agent.drained)
    assert sorted(seq for seq, _ in agent.outbox.dead_letters()) == seqs
    assert agent.server.accepted_seqs() == []


def test_400_dead_letters_only_the_refused_event_and_the_report_reaches_the_endpoint(
    make_agent: Callable[..., Agent],
) -> None:
    agent = make_agent({"poison_seqs": {7}})
    seqs = agent.append(20)
    agent.uploader.start()
    report = agent.recorded.get(timeout=10)
    assert report.kind == EventKind.agent_dead_letter
    assert report.data["count"] == 1
    assert (report.data["first_seq"], report.data["last_seq"], report.data["status"]) == (7, 7, 400)
    assert report.data["detail"] == "event seq 7 is malformed"
    assert wait_for(lambda: agent.delivered([s for s in seqs if s != 7]))
    assert wait_for(agent.drained)
    assert 7 not in agent.server.accepted_seqs()
    (dead,) = agent.outbox.dead_letters()
    assert dead[0] == 7
    assert "400" in dead[1]
    # what the runtime does with the report: record it, and it is uploaded like any event
    (report_seq,) = agent.outbox.append([report])
    agent.uploader.notify()
    assert wait_for(lambda: agent.delivered([report_seq]))
    assert agent.server.accepted_events()[report_seq]["kind"] == "agent.dead_letter"
    assert agent.uploader.dead_lettered_total == 1


def test_403_dead_letters_the_whole_batch(make_agent: Callable[..., Agent]) -> None:
    agent = make_agent({"script": [Reply(403, body=b'{"detail": "batch device differs"}')]})
    seqs = agent.append(5)
    agent.uploader.start()
    report = agent.recorded.get(timeout=10)
    assert report.data["count"] == 5
    assert report.data["status"] == 403
    assert wait_for(agent.drained)
    assert [seq for seq, _ in agent.outbox.dead_letters()] == seqs


def test_401_needs_reenrolment_stops_posting_until_resumed(make_agent: Callable[..., Agent]) -> None:
    agent = make_agent(heartbeat_seconds=0.05)
    first = agent.append(5)
    agent.uploader.start()
    assert wait_for(lambda: agent.delivered(first))

    agent.server.set_credential("cred-after-reenrolment")  # the endpoint revoked this device's credential
    waiting = agent.append(5)
    assert wait_for(lambda: agent.uploader.state == UploaderState.needs_reenrolment)
    assert agent.states[-1] == UploaderState.needs_reenrolment
    refused = [r for r in agent.server.requests() if r.status == 401]
    assert len(refused) == 1
    count_at_401 = len(agent.server.requests())
    # observation window (not synchronisation): heartbeats are due every 0.05 s and notify() is poked,
    # yet nothing may be sent while the credential is known to be bad
    for _ in range(5):
        agent.uploader.notify()
        threading.Event().wait(0.05)
    assert len(agent.server.requests()) == count_at_401
    assert agent.outbox.depth() == len(waiting)

    agent.uploader.resume(credential="cred-after-reenrolment")
    assert wait_for(lambda: agent.delivered(waiting))
    assert wait_for(lambda: agent.uploader.state == UploaderState.online)
    assert all(r.credential == "cred-after-reenrolment" for r in agent.server.requests()[count_at_401:])


def test_unreachable_endpoint_goes_offline_and_recovers(tmp_path: Path) -> None:
    """Nothing listens on the port at first; the uploader keeps retrying and delivers once it is up."""
    with FaultyServer(credential=CREDENTIAL, device_id=DEVICE) as probe:
        url = probe.url
    path = tmp_path / "outbox.db"
    outbox = Outbox(path, keys=KEYS)
    seqs = outbox.append([EventDraft(kind=EventKind.agent_started) for _ in range(50)])
    states: list[UploaderState] = []
    uploader = Uploader(
        outbox_factory=lambda: Outbox(path, keys=KEYS, check=False),
        transport=Transport(url, credential=CREDENTIAL, connect_timeout=0.5),
        device_id=DEVICE,
        record=lambda draft: None,
        on_state_change=states.append,
        backoff_base=0.01,
        backoff_cap=0.05,
    )
    uploader.start()
    try:
        assert wait_for(lambda: uploader.state == UploaderState.offline and uploader.last_error is not None)
        assert uploader.last_upload is None
        server = FaultyServer(credential=CREDENTIAL, device_id=DEVICE)
        new_url = server.url
        with server:
            uploader.resume(transport=Transport(new_url, credential=CREDENTIAL))
            assert wait_for(lambda: set(seqs) <= set(server.accepted_seqs()))
            assert wait_for(lambda: uploader.state == UploaderState.online)
    finally:
        assert uploader.stop()
        outbox.close()


def test_heartbeat_reports_health_and_triggers_policy_fetch(make_agent: Callable[..., Agent]) -> None:
    offered: list[bytes] = []
    version = {"current": 0}

    def on_policy(envelope: bytes) -> None:
        offered.append(envelope)
        version["current"] = int(envelope.split(b":")[1].strip(b"} "))

    agent = make_agent(
        on_policy=on_policy,
        policy_version=lambda: version["current"],
        heartbeat_seconds=0.05,
        collector_states=lambda: {"usb": "running", "clipboard": "failed"},
    )
    agent.server.publish_policy(b'{"v": 3}', version=3, key_id="k1", public_key_b64="")
    agent.append(4)
    agent.uploader.start()
    assert wait_for(lambda: offered == [b'{"v": 3}'])
    assert wait_for(lambda: len(agent.server.heartbeats()) >= 3)
    beat = agent.server.heartbeats()[0]
    assert beat.collectors == {"usb": "running", "clipboard": "failed"}
    assert beat.rss_bytes is not None
    assert beat.rss_bytes > 0
    assert beat.cpu_percent is not None
    assert beat.queue_depth == 4
    assert beat.oldest_unsent_age_s is not None
    assert beat.oldest_unsent_age_s >= 0
    assert wait_for(lambda: any(b.policy_version == 3 for b in agent.server.heartbeats()))

    agent.server.publish_policy(b'{"v": 4}', version=4, key_id="k1", public_key_b64="")
    assert wait_for(lambda: offered[-1] == b'{"v": 4}')
    fetches = agent.server.requests("/v1/policy")
    assert [r.status for r in fetches] == [200, 200]
    assert len(offered) == 2


def test_rejected_policy_is_not_downloaded_again_and_again(make_agent: Callable[..., Agent]) -> None:
    """The endpoint says version 5 exists, the agent refuses it; the refetch is a cheap 304."""
    offered: list[bytes] = []
    agent = make_agent(on_policy=offered.append, heartbeat_seconds=0.05)
    agent.server.publish_policy(b'{"v": 5}', version=5, key_id="k1", public_key_b64="")
    agent.uploader.start()
    assert wait_for(lambda: len(agent.server.requests("/v1/policy")) >= 3)
    statuses = [r.status for r in agent.server.requests("/v1/policy")]
    assert statuses[0] == 200
    assert set(statuses[1:]) == {304}
    assert offered == [b'{"v": 5}']


def test_notify_wakes_an_idle_uploader_and_stop_joins_promptly(make_agent: Callable[..., Agent]) -> None:
    agent = make_agent()
    agent.uploader.start()
    assert wait_for(lambda: len(agent.server.heartbeats()) == 1)
    started = time.monotonic()
    seqs = agent.append(3)  # append() calls notify(); the next heartbeat is an hour away
    assert wait_for(lambda: agent.delivered(seqs), timeout=5)
    assert time.monotonic() - started < 2.0
    stop_started = time.monotonic()
    assert agent.uploader.stop()
    assert time.monotonic() - stop_started < 1.0
