"""Windows named-pipe transport through its adapter: an in-memory pipe namespace with the Win32 semantics the
transport relies on (first instance, busy instances, broken pipes, overlapped waits that a waker interrupts)."""

from __future__ import annotations

import itertools
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from agent_app.core.ipc.channel import read_frame
from agent_app.core.ipc.protocol import Hello, Reply, encode, parse_server_message
from agent_app.core.ipc.server import HelperConnection, IpcServer
from agent_app.core.ipc.windows_pipe import (
    ADMINISTRATORS_SID,
    CLIENT_ACCESS,
    OWNED_PIPE_SDDL,
    PIPE_NAME,
    PIPE_SDDL,
    SYSTEM_SID,
    Account,
    PipeBusy,
    PipeListener,
    WaitInterrupted,
    Win32Pipes,
    connect_pipe,
)

ASHA = Account(sid="S-1-5-21-1-2-3-1001", user="CORP\\asha")
BEN = Account(sid="S-1-5-21-1-2-3-1002", user="CORP\\ben")
SYSTEM = Account(sid=SYSTEM_SID, user="NT AUTHORITY\\SYSTEM")


@dataclass
class Instance:
    name: str
    server: int
    client: int | None = None
    server_open: bool = True
    client_open: bool = False
    client_pid: int = 0
    client_account: Account | Exception = ASHA
    to_client: bytearray = field(default_factory=bytearray)
    to_server: bytearray = field(default_factory=bytearray)


class FakePipes:
    """`PipeApi` over an in-memory namespace. One condition variable guards everything; every wait rechecks."""

    def __init__(self, *, capacity: int = 1 << 20) -> None:
        self.cv = threading.Condition()
        self._ids = itertools.count(100)
        self.capacity = capacity
        self.instances: list[Instance] = []
        self.wakers: dict[int, bool] = {}
        self.created: list[bool] = []
        """`first` of every create_server call."""
        self.double_closed: list[int] = []
        self.owners: dict[str, Account] = {}
        self.process_accounts: dict[int, Account] = {}
        self.me = ASHA
        self.next_client = (4242, ASHA)
        self.next_client_account: Account | Exception | None = None
        self.server_pids: dict[str, int] = {PIPE_NAME: 880}

    # --- helpers for tests -------------------------------------------------------------------------------------

    def live(self, name: str = PIPE_NAME) -> list[Instance]:
        return [i for i in self.instances if i.name == name and (i.server_open or i.client_open)]

    def listening(self, name: str = PIPE_NAME) -> list[Instance]:
        return [i for i in self.live(name) if i.server_open and i.client is None]

    def squat(self, name: str, owner: Account) -> None:
        self.instances.append(Instance(name=name, server=next(self._ids)))
        self.owners[name] = owner

    def open_handles(self) -> set[int]:
        handles = {h for h in self.wakers}
        for inst in self.instances:
            if inst.server_open:
                handles.add(inst.server)
            if inst.client_open and inst.client is not None:
                handles.add(inst.client)
        return handles

    def _end(self, handle: int) -> tuple[Instance, bool]:
        """The instance a handle belongs to and whether it is the server end."""
        for inst in self.instances:
            if inst.server == handle and inst.server_open:
                return inst, True
            if inst.client == handle and inst.client_open:
                return inst, False
        raise OSError(f"invalid handle {handle}")

    def _wait(self, ready: Any, timeout: float | None, waker: int | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not ready():
            if waker is not None and self.wakers.get(waker):
                raise WaitInterrupted("woken")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError("timed out")
            self.cv.wait(remaining if remaining is not None else 1.0)

    # --- PipeApi -----------------------------------------------------------------------------------------------

    def create_server(self, name: str, *, first: bool) -> int:
        with self.cv:
            self.created.append(first)
            if first and self.live(name):
                raise PermissionError("ERROR_ACCESS_DENIED")
            self.owners.setdefault(name, SYSTEM)
            inst = Instance(name=name, server=next(self._ids))
            self.instances.append(inst)
            self.cv.notify_all()
            return inst.server

    def wait_client(self, pipe: int, waker: int) -> None:
        with self.cv:
            inst, _ = self._end(pipe)
            self._wait(lambda: inst.client is not None, None, waker)
            if not inst.client_open and not inst.to_server:
                raise BrokenPipeError("ERROR_NO_DATA")

    def open_client(self, name: str) -> int:
        with self.cv:
            if not self.live(name):
                raise FileNotFoundError(name)
            free = self.listening(name)
            if not free:
                raise PipeBusy("ERROR_PIPE_BUSY")
            inst = free[0]
            inst.client, inst.client_open = next(self._ids), True
            inst.client_pid, account = self.next_client
            inst.client_account = self.next_client_account or account
            self.cv.notify_all()
            return inst.client

    def wait_available(self, name: str, timeout: float) -> bool:
        with self.cv:
            try:
                self._wait(lambda: bool(self.listening(name)), timeout, None)
            except TimeoutError:
                return False
            return True

    def read(self, pipe: int, size: int, timeout: float | None, waker: int) -> bytes:
        with self.cv:
            inst, server = self._end(pipe)
            buffer = inst.to_server if server else inst.to_client

            def ready() -> bool:
                other_open = inst.client_open if server else inst.server_open
                return bool(buffer) or not other_open

            self._wait(ready, timeout, waker)
            if not buffer:
                raise BrokenPipeError("ERROR_BROKEN_PIPE")
            data = bytes(buffer[:size])
            del buffer[:size]
            self.cv.notify_all()
            return data

    def write(self, pipe: int, data: bytes, timeout: float | None, waker: int) -> int:
        with self.cv:
            inst, server = self._end(pipe)
            buffer = inst.to_client if server else inst.to_server

            def other_open() -> bool:
                return inst.client_open if server else inst.server_open

            self._wait(lambda: len(buffer) < self.capacity or not other_open(), timeout, waker)
            if not other_open():
                raise BrokenPipeError("ERROR_NO_DATA")
            count = min(len(data), self.capacity - len(buffer))
            buffer.extend(data[:count])
            self.cv.notify_all()
            return count

    def client_pid(self, pipe: int) -> int:
        with self.cv:
            return self._end(pipe)[0].client_pid

    def server_pid(self, pipe: int) -> int:
        with self.cv:
            return self.server_pids[self._end(pipe)[0].name]

    def client_account(self, pipe: int) -> Account:
        with self.cv:
            account = self._end(pipe)[0].client_account
        if isinstance(account, Exception):
            raise account
        return account

    def process_account(self, pid: int) -> Account:
        try:
            return self.process_accounts[pid]
        except KeyError:
            raise PermissionError(f"OpenProcess({pid})") from None

    def owner_account(self, pipe: int) -> Account:
        with self.cv:
            return self.owners[self._end(pipe)[0].name]

    def current_account(self) -> Account:
        return self.me

    def new_waker(self) -> int:
        with self.cv:
            waker = next(self._ids)
            self.wakers[waker] = False
            return waker

    def wake(self, waker: int) -> None:
        with self.cv:
            self.wakers[waker] = True
            self.cv.notify_all()

    def close(self, handle: int) -> None:
        with self.cv:
            if handle in self.wakers:
                del self.wakers[handle]
            else:
                try:
                    inst, server = self._end(handle)
                except OSError:
                    self.double_closed.append(handle)
                    return
                if server:
                    inst.server_open = False
                else:
                    inst.client_open = False
            self.cv.notify_all()


def start(target: Any, *args: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """Run `target` on a thread; its result or exception lands in the returned dict."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = target(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the test, which asserts on it
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


# --- the listener ------------------------------------------------------------------------------------------------


def test_first_instance_is_exclusive_and_the_name_never_lapses() -> None:
    fake = FakePipes()
    listener = PipeListener(api=fake)
    assert fake.created == [True]

    client = connect_pipe(api=fake)
    channel = listener.accept()

    # The next instance existed before the connected one was handed out, and only the first was exclusive.
    assert fake.created == [True, False]
    assert len(fake.listening()) == 1
    channel.close()
    client.close()
    assert fake.live(), "the listener still holds the name with its pending instance"
    listener.close()
    assert fake.open_handles() == set()
    assert fake.double_closed == []


def test_a_squatted_name_fails_loudly() -> None:
    fake = FakePipes()
    fake.squat(PIPE_NAME, BEN)

    with pytest.raises(PermissionError, match="already exists"):
        PipeListener(api=fake)
    assert fake.wakers == {}


def test_listener_recreates_exclusively_after_every_instance_was_closed() -> None:
    fake = FakePipes()

    def failing_create(name: str, *, first: bool) -> int:
        fake.created.append(first)
        raise OSError("ERROR_PIPE_BUSY")

    listener = PipeListener(api=fake)
    client = connect_pipe(api=fake)
    real_create = fake.create_server
    fake.create_server = failing_create  # type: ignore[method-assign]
    channel = listener.accept()  # served, although no next instance could be made
    fake.create_server = real_create  # type: ignore[method-assign]
    channel.close()
    client.close()  # now no handle holds the name: it may lapse, and a squatter could take it

    thread, outcome = start(listener.accept)
    with fake.cv:
        fake._wait(lambda: len(fake.listening()) == 1, 5, None)
    assert fake.created[-1] is True
    listener.close()
    thread.join(5)
    assert isinstance(outcome["error"], OSError)


def test_peer_is_the_client_token_user_and_pid() -> None:
    fake = FakePipes()
    fake.next_client = (4242, ASHA)
    listener = PipeListener(api=fake)
    connect_pipe(api=fake)

    channel = listener.accept()

    assert channel.peer.user == "CORP\\asha"
    assert channel.peer.sid == ASHA.sid
    assert channel.peer.pid == 4242
    assert channel.peer.uid is None
    assert channel.peer.key == ASHA.sid
    listener.close()


def test_peer_falls_back_to_the_process_token_when_impersonation_fails() -> None:
    fake = FakePipes()
    fake.next_client = (4343, BEN)
    fake.next_client_account = PermissionError("ImpersonateNamedPipeClient")
    fake.process_accounts[4343] = BEN
    listener = PipeListener(api=fake)
    connect_pipe(api=fake)

    assert listener.accept().peer.user == "CORP\\ben"
    listener.close()


def test_a_client_the_os_cannot_identify_is_dropped_and_the_next_one_served() -> None:
    fake = FakePipes()
    listener = PipeListener(api=fake)
    fake.next_client = (1, ASHA)
    fake.next_client_account = PermissionError("ImpersonateNamedPipeClient")
    anonymous = connect_pipe(api=fake)  # no process token either
    thread, outcome = start(listener.accept)
    assert anonymous.recv(10) == b"", "the unidentified client was hung up on"
    fake.next_client = (2, BEN)
    fake.next_client_account = None
    connect_pipe(api=fake)
    thread.join(5)

    assert outcome["value"].peer.user == "CORP\\ben"
    listener.close()


def test_a_client_that_left_before_accept_is_skipped() -> None:
    fake = FakePipes()
    listener = PipeListener(api=fake)
    connect_pipe(api=fake).close()
    fake.next_client = (7, BEN)

    thread, outcome = start(listener.accept)
    with fake.cv:
        fake._wait(lambda: len(fake.listening()) == 1 and fake.created == [True, False], 5, None)
    connect_pipe(api=fake)
    thread.join(5)

    assert outcome["value"].peer.pid == 7
    assert fake.live(), "the name was held while the spent instance was replaced"
    listener.close()
    assert fake.double_closed == []


def test_close_wakes_a_blocked_accept_and_releases_everything() -> None:
    fake = FakePipes()
    listener = PipeListener(api=fake)
    thread, outcome = start(listener.accept)
    with fake.cv:
        fake._wait(lambda: listener._accepting, 5, None)

    listener.close()
    thread.join(5)

    assert isinstance(outcome["error"], OSError)
    assert fake.open_handles() == set()
    with pytest.raises(OSError, match="closed"):
        listener.accept()


# --- channels ------------------------------------------------------------------------------------------------


def pair(fake: FakePipes) -> tuple[Any, Any, PipeListener]:
    listener = PipeListener(api=fake)
    client = connect_pipe(api=fake)
    return listener.accept(), client, listener


def test_bytes_flow_both_ways_and_recv_returns_empty_at_the_end() -> None:
    fake = FakePipes()
    server, client, listener = pair(fake)

    client.sendall(b"hello")
    assert server.recv(3) == b"hel"
    assert server.recv(10) == b"lo"
    server.sendall(b"back")
    assert client.recv(10) == b"back"
    client.close()
    assert server.recv(10) == b""
    listener.close()


def test_recv_times_out_and_the_channel_stays_usable() -> None:
    fake = FakePipes()
    server, client, listener = pair(fake)
    server.settimeout(0.05)

    with pytest.raises(TimeoutError):
        server.recv(4)
    client.sendall(b"late")
    assert server.recv(4) == b"late"
    listener.close()


def test_close_from_another_thread_wakes_a_blocked_recv() -> None:
    fake = FakePipes()
    server, _client, listener = pair(fake)
    thread, outcome = start(server.recv, 4)
    with fake.cv:
        fake._wait(lambda: server._busy == 1, 5, None)

    server.close()
    thread.join(5)

    assert outcome["value"] == b""
    assert server._pipe not in fake.open_handles(), "closed once the read had let go of it"
    assert fake.double_closed == []
    with pytest.raises(OSError, match="closed"):
        server.recv(1)
    with pytest.raises(OSError, match="closed"):
        server.sendall(b"x")
    listener.close()


def test_sendall_to_a_peer_that_does_not_read_times_out() -> None:
    fake = FakePipes(capacity=8)
    server, client, listener = pair(fake)
    server.settimeout(0.05)

    with pytest.raises(TimeoutError):
        server.sendall(b"x" * 64)
    assert client.recv(100) == b"x" * 8
    listener.close()


def test_sendall_writes_everything_through_short_writes() -> None:
    fake = FakePipes(capacity=5)
    server, client, listener = pair(fake)
    received = bytearray()

    def receive() -> None:
        while len(received) < 23:
            received.extend(client.recv(3))

    thread, _ = start(receive)
    server.sendall(b"0123456789abcdefghijklm")
    thread.join(5)

    assert bytes(received) == b"0123456789abcdefghijklm"
    listener.close()


def test_sendall_to_a_gone_peer_raises_broken_pipe() -> None:
    fake = FakePipes()
    server, client, listener = pair(fake)
    client.close()

    with pytest.raises(BrokenPipeError):
        server.sendall(b"x")
    listener.close()


# --- the helper's side ----------------------------------------------------------------------------------------


def test_connect_checks_the_pipe_belongs_to_the_service() -> None:
    fake = FakePipes()
    listener = PipeListener(api=fake)

    channel = connect_pipe(api=fake)

    assert channel.peer.sid == SYSTEM_SID
    assert channel.peer.pid == 880
    listener.close()


@pytest.mark.parametrize("owner", [SYSTEM, Account(sid=ADMINISTRATORS_SID, user="BUILTIN\\Administrators")])
def test_connect_trusts_system_and_administrators(owner: Account) -> None:
    fake = FakePipes()
    fake.squat(PIPE_NAME, owner)
    fake.instances[0].client = None
    assert connect_pipe(api=fake).peer.sid == owner.sid


def test_connect_refuses_a_pipe_another_user_created() -> None:
    fake = FakePipes()
    fake.squat(PIPE_NAME, BEN)

    with pytest.raises(PermissionError, match=r"CORP\\ben"):
        connect_pipe(api=fake)
    assert not any(i.client_open for i in fake.instances), "the squatter's handle was closed"


def test_connect_trusts_its_own_account_only_when_asked() -> None:
    fake = FakePipes()
    fake.squat(PIPE_NAME, ASHA)  # an unprotected demo service running as the desk user
    fake.squat(PIPE_NAME, ASHA)
    fake.me = ASHA

    assert connect_pipe(api=fake).peer.user == "CORP\\asha"
    with pytest.raises(PermissionError):
        connect_pipe(api=fake, trust_own_account=False)


def test_connect_waits_for_a_busy_pipe() -> None:
    fake = FakePipes()
    listener = PipeListener(api=fake)
    connect_pipe(api=fake)  # takes the only instance; accept() will create the next
    thread, outcome = start(lambda: connect_pipe(api=fake))

    accepted = listener.accept()
    thread.join(5)

    assert "error" not in outcome, outcome
    assert accepted.peer.pid == 4242
    listener.close()


def test_connect_gives_up_after_its_timeout() -> None:
    fake = FakePipes()
    PipeListener(api=fake)
    connect_pipe(api=fake)

    with pytest.raises(TimeoutError):
        connect_pipe(api=fake, timeout=0.05)


def test_connect_without_a_service_is_file_not_found() -> None:
    with pytest.raises(FileNotFoundError):
        connect_pipe(api=FakePipes())


# --- the IPC server over the pipe ---------------------------------------------------------------------------------


class Handler:
    def __init__(self) -> None:
        self.connected: list[str] = []
        self.event = threading.Event()

    def on_connect(self, conn: HelperConnection) -> None:
        self.connected.append(conn.peer.user)
        self.event.set()

    def handle(self, conn: HelperConnection, request: Any) -> dict[str, Any]:
        return {"you": conn.peer.user}

    def on_disconnect(self, conn: HelperConnection) -> None:
        pass


def test_ipc_server_serves_a_helper_over_the_pipe_with_its_os_identity() -> None:
    fake = FakePipes()
    fake.next_client = (5150, ASHA)
    handler = Handler()
    server = IpcServer(lambda: PipeListener(api=fake), handler)
    server.start()
    try:
        client = connect_pipe(api=fake)
        client.sendall(encode(Hello(id=1, helper_version="test")))
        reply = parse_server_message(read_frame(client))
        assert handler.event.wait(5)
    finally:
        server.stop()

    assert isinstance(reply, Reply)
    assert reply.ok
    assert reply.result == {"you": "CORP\\asha"}
    assert handler.connected == ["CORP\\asha"]
    assert client.recv(1) == b"", "stopping the server hung up on the helper"


# --- the security descriptor and the real adapter -----------------------------------------------------------------


def test_desk_users_may_connect_but_not_create_instances() -> None:
    aces = dict((sid, right) for right, sid in re.findall(r"\(A;;([^;]+);;;(\w+)\)", PIPE_SDDL))
    assert PIPE_SDDL.startswith("D:P"), "the DACL is protected: nothing inherited widens it"
    assert aces["SY"] == aces["BA"] == "GA"
    users = int(aces["AU"], 16)
    assert users == CLIENT_ACCESS
    file_create_pipe_instance, generic_write, write_dac, write_owner = 0x4, 0x40000000, 0x40000, 0x80000
    assert users & (file_create_pipe_instance | generic_write | write_dac | write_owner) == 0
    assert users & 0x3 == 0x3, "read and write data"


def test_the_service_names_administrators_as_the_pipes_owner_with_the_same_dacl() -> None:
    owner, dacl = OWNED_PIPE_SDDL.split("D:", 1)
    assert owner == "O:BA", "an owner the helper trusts (PRIVILEGED_SIDS), not the token's default"
    assert "D:" + dacl == PIPE_SDDL


@pytest.mark.skipif(sys.platform == "win32", reason="checks the guard on other systems")
def test_real_adapter_refuses_off_windows_without_failing_import() -> None:
    with pytest.raises(OSError, match="Windows only"):
        Win32Pipes().new_waker()
    with pytest.raises(OSError, match="Windows only"):
        PipeListener()
