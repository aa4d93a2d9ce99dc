"""DeskService's rules, with a real engine (AgentRuntime in a tmp home, no collectors) and fake sessions, launcher
and connections: who an event belongs to, what a helper may record, whose history it sees, when quitting is allowed,
and when a stopped or missing helper is tamper."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent_app.core.ipc.channel import Peer
from agent_app.core.ipc.protocol import Hello, HistoryRequest, QuitRequest, Record
from agent_app.core.ipc.server import HelperConnection, Refused
from agent_app.core.runtime import AgentRuntime
from agent_app.core.service import MISSING_GRACE, RESTARTS_PER_WINDOW, DeskService
from agent_app.core.sessions import DeskSession
from policy_client.schema import EventDraft, EventKind, utc_now

ASHA = Peer(user="asha", uid=1001, gid=1001, pid=4242)
BEN = Peer(user="ben", uid=1002, gid=1002, pid=4343)


class FakeChannel:
    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.sent: list[bytes] = []

    def recv(self, size: int) -> bytes:
        return b""

    def sendall(self, data: bytes) -> None:
        self.sent.append(data)

    def settimeout(self, seconds: float | None) -> None:
        pass

    def close(self) -> None:
        pass


class FakeSessions:
    def __init__(self) -> None:
        self.alive_now = True
        self.logged_in: list[DeskSession] | None = None

    def active(self) -> list[DeskSession] | None:
        return self.logged_in

    def session_of(self, pid: int) -> DeskSession | None:
        user = {ASHA.pid: ASHA, BEN.pid: BEN}[pid]
        return DeskSession(user=user.user, uid=user.uid, session_id=f":{user.uid - 1001}", env={"DISPLAY": ":0"})

    def alive(self, session: DeskSession) -> bool:
        return self.alive_now


class FakeLauncher:
    def __init__(self) -> None:
        self.launched: list[tuple[str, list[str]]] = []

    def launch(self, session: DeskSession, argv: Sequence[str]) -> bool:
        self.launched.append((session.user, list(argv)))
        return True


class Clock:
    def __init__(self) -> None:
        self.now = utc_now()

    def __call__(self) -> datetime:
        return self.now


Parts = tuple[DeskService, FakeSessions, FakeLauncher, Clock]


@pytest.fixture
def parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[DeskService, FakeSessions, FakeLauncher, Clock]]:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    clock = Clock()
    runtime = AgentRuntime(tmp_path / "state", collectors={}, machine_secrets=True, mode="protected", user="root")
    sessions, launcher = FakeSessions(), FakeLauncher()
    service = DeskService(
        runtime,
        listener=lambda: pytest.fail("no listener in unit tests"),  # type: ignore[arg-type,return-value]
        sessions=sessions,
        launcher=launcher,
        socket_path=tmp_path / "s.sock",
        clock=clock,
        disconnect_grace=0.0,  # judged at once, so the tests need not wait
    )
    runtime.start()
    yield service, sessions, launcher, clock
    runtime.stop(reason="test")


def connect(service: DeskService, peer: Peer, *, role: str = "helper") -> HelperConnection:
    conn = HelperConnection(FakeChannel(peer))  # type: ignore[arg-type]
    hello = Hello(id=1, role=role)  # type: ignore[arg-type]
    service.handle(conn, hello)
    conn.hello = hello
    service.on_connect(conn)
    return conn


def events(service: DeskService, **match: Any) -> list[dict[str, Any]]:
    assert service.runtime.flush(5)
    return [e for e in service.runtime.history(limit=500) if all(e.get(k) == v for k, v in match.items())]


def test_the_os_names_the_user_and_service_kinds_are_refused(parts: Any) -> None:
    service, *_ = parts
    conn = connect(service, ASHA)
    seqs = service.handle(conn, Record(id=2, events=[EventDraft(kind=EventKind.violation_justified, user="root")]))
    assert len(seqs["seqs"]) == 1
    (stored,) = events(service, kind="violation.justified")
    assert stored["user"] == "asha"
    for kind in (EventKind.agent_stopped, EventKind.agent_tamper, EventKind.usb_blocked, EventKind.agent_unlock_used):
        with pytest.raises(Refused) as refused:
            service.handle(conn, Record(id=3, events=[EventDraft(kind=kind)]))
        assert refused.value.code == "forbidden_kind"


def test_a_helpers_clock_is_not_trusted_far_from_the_services(parts: Any) -> None:
    service, _, _, clock = parts
    conn = connect(service, ASHA)
    old = clock.now - timedelta(days=3)
    service.handle(conn, Record(id=2, events=[EventDraft(kind=EventKind.cleandesk_attested, ts=old)]))
    (stored,) = events(service, kind="cleandesk.attested")
    assert abs(datetime.fromisoformat(stored["ts"]) - clock.now) < timedelta(minutes=1)


def test_history_shows_each_user_only_their_own_events(parts: Any) -> None:
    service, *_ = parts
    asha, ben = connect(service, ASHA), connect(service, BEN)
    service.handle(asha, Record(id=2, events=[EventDraft(kind=EventKind.policy_acknowledged)]))
    service.handle(ben, Record(id=2, events=[EventDraft(kind=EventKind.cleandesk_attested)]))
    mine = service.handle(asha, HistoryRequest(id=3))["events"]
    assert {e["kind"] for e in mine} == {"policy.acknowledged"}
    assert {e["user"] for e in mine} == {"asha"}


def test_a_helper_killed_in_a_live_session_is_tamper_and_restarted_within_budget(parts: Any) -> None:
    service, _, launcher, _ = parts
    for _ in range(RESTARTS_PER_WINDOW + 1):
        conn = connect(service, ASHA)
        service.on_disconnect(conn)
    found = events(service, kind="agent.tamper")
    stopped = [e for e in found if e["data"]["reason"] == "helper_stopped"]
    assert stopped
    assert {e["user"] for e in stopped} == {"asha"}
    assert len(launcher.launched) == RESTARTS_PER_WINDOW  # then it stops restarting (a crash loop or a fight)
    assert all(argv[-2] == "--socket" for _, argv in launcher.launched)


def test_another_helper_of_the_same_user_does_not_excuse_a_stopped_one(parts: Any) -> None:
    service, *_ = parts
    connect(service, ASHA)  # a do-nothing client of the user's own, say
    real = connect(service, ASHA)
    service.on_disconnect(real)
    assert [e for e in events(service, kind="agent.tamper") if e["data"]["reason"] == "helper_stopped"]


def test_no_tamper_when_the_session_ended_or_quitting_was_allowed(parts: Any) -> None:
    service, sessions, launcher, _ = parts
    sessions.alive_now = False
    service.on_disconnect(connect(service, ASHA))
    status_query = connect(service, BEN, role="query")
    service.on_disconnect(status_query)
    sessions.alive_now = True
    conn = connect(service, ASHA)
    assert service.handle(conn, QuitRequest(id=5, token="DW1-NOT-A-TOKEN"))["allowed"] is False
    assert service.handle(conn, QuitRequest(id=6))["allowed"] is False
    assert not [e for e in events(service, kind="agent.tamper") if e["data"]["reason"] == "helper_stopped"]
    assert launcher.launched == []
    refused = [e for e in events(service, kind="agent.tamper") if e["data"]["reason"] == "unlock_refused"]
    assert [e["user"] for e in refused] == ["asha"]


def test_a_logged_in_session_without_a_helper_is_reported_once_after_the_grace(parts: Any) -> None:
    service, sessions, launcher, clock = parts
    sessions.logged_in = [DeskSession(user="ben", uid=1002, session_id="7", env={"DISPLAY": ":1"})]
    service.tick()
    clock.now += MISSING_GRACE / 2
    service.tick()
    assert launcher.launched == []
    clock.now += MISSING_GRACE
    service.tick()
    service.tick()
    missing = [e for e in events(service, kind="agent.tamper") if e["data"]["reason"] == "helper_missing"]
    assert [e["user"] for e in missing] == ["ben"]
    assert [user for user, _ in launcher.launched] == ["ben"]
