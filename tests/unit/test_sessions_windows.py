"""Windows desk sessions (WTS) through their adapter: which sessions expect a helper, which session a helper runs
in, when a session stops being alive (logoff, disconnect, a reused session id), and how a helper is started."""

from __future__ import annotations

import sys

import pytest

from agent_app.core.sessions import DeskSession
from agent_app.core.sessions.windows import (
    WTS_ACTIVE,
    WTS_CONNECTED,
    WTS_DISCONNECTED,
    WTS_LISTEN,
    Win32Wts,
    WtsLauncher,
    WtsSession,
    WtsSessions,
)


class FakeWts:
    def __init__(self) -> None:
        self.listed = [
            WtsSession(0, "Services", WTS_DISCONNECTED),
            WtsSession(1, "Console", WTS_ACTIVE),
            WtsSession(2, "RDP-Tcp#4", WTS_ACTIVE),
            WtsSession(3, "RDP-Tcp#7", WTS_DISCONNECTED),
            WtsSession(5, "", WTS_CONNECTED),  # an RDP login screen: connected, nobody logged on yet
            WtsSession(65536, "RDP-Tcp", WTS_LISTEN),
        ]
        self.accounts: dict[int, tuple[str, str]] = {
            0: ("", ""),
            1: ("CORP", "asha"),
            2: ("CORP", "ben"),
            3: ("CORP", "chen"),
            5: ("", ""),
        }
        self.pids = {4242: 2, 880: 0}
        self.fail = False

    def sessions(self) -> list[WtsSession]:
        if self.fail:
            raise OSError("RPC server unavailable")
        return list(self.listed)

    def account(self, session_id: int) -> tuple[str, str] | None:
        return self.accounts.get(session_id)

    def session_of_process(self, pid: int) -> int | None:
        return self.pids.get(pid)


def test_active_lists_logged_on_console_and_rdp_sessions_only() -> None:
    sessions = WtsSessions(api=FakeWts()).active()

    assert sessions == [
        DeskSession(user="CORP\\asha", uid=None, session_id="1", display="Console", env={"SESSIONNAME": "Console"}),
        DeskSession(user="CORP\\ben", uid=None, session_id="2", display="RDP-Tcp#4", env={"SESSIONNAME": "RDP-Tcp#4"}),
    ]


def test_active_is_unknown_when_wts_does_not_answer() -> None:
    fake = FakeWts()
    fake.fail = True

    assert WtsSessions(api=fake).active() is None


def test_session_of_a_helper_is_its_process_session() -> None:
    session = WtsSessions(api=FakeWts()).session_of(4242)

    assert session is not None
    assert session.key == ("CORP\\ben", "2")
    assert session.display == "RDP-Tcp#4"


@pytest.mark.parametrize("pid", [880, 9999], ids=["service-session", "gone"])
def test_session_of_is_none_for_session_zero_and_gone_processes(pid: int) -> None:
    assert WtsSessions(api=FakeWts()).session_of(pid) is None


def test_a_session_is_alive_while_its_user_is_at_it() -> None:
    fake = FakeWts()
    source = WtsSessions(api=fake)
    ben = source.session_of(4242)
    assert ben is not None
    assert source.alive(ben)

    fake.listed[2] = WtsSession(2, "RDP-Tcp#4", WTS_DISCONNECTED)
    assert not source.alive(ben), "a disconnected session expects no helper"

    fake.listed[2] = WtsSession(2, "RDP-Tcp#4", WTS_ACTIVE)
    del fake.listed[2]
    assert not source.alive(ben), "logged off"


def test_a_reused_session_id_is_not_the_old_session() -> None:
    fake = FakeWts()
    source = WtsSessions(api=fake)
    ben = source.session_of(4242)
    assert ben is not None

    fake.accounts[2] = ("CORP", "dana")  # ben logged off, dana logged on and got session 2

    assert not source.alive(ben)


def test_alive_is_false_for_a_session_that_is_not_a_wts_id() -> None:
    session = DeskSession(user="CORP\\asha", uid=None, session_id="console")
    assert not WtsSessions(api=FakeWts()).alive(session)


class FakeStarter:
    def __init__(self, *, error: OSError | None = None) -> None:
        self.started: list[tuple[int, str]] = []
        self._error = error

    def start_in_session(self, session_id: int, command_line: str) -> int:
        if self._error is not None:
            raise self._error
        self.started.append((session_id, command_line))
        return 5150


def test_launcher_starts_the_quoted_command_in_the_session() -> None:
    starter = FakeStarter()
    session = DeskSession(user="CORP\\ben", uid=None, session_id="2")

    assert WtsLauncher(starter=starter).launch(session, [r"C:\Program Files\DeskWarden\deskwarden.exe", "agent"])

    assert starter.started == [(2, r'"C:\Program Files\DeskWarden\deskwarden.exe" agent')]


@pytest.mark.parametrize("session_id", ["0", "console", ""])
def test_launcher_refuses_session_zero_and_non_wts_ids(session_id: str) -> None:
    starter = FakeStarter()
    session = DeskSession(user="CORP\\ben", uid=None, session_id=session_id)

    assert not WtsLauncher(starter=starter).launch(session, ["deskwarden.exe", "agent"])
    assert starter.started == []


def test_launcher_reports_false_when_windows_refuses(caplog: pytest.LogCaptureFixture) -> None:
    starter = FakeStarter(error=OSError(None, "WTSQueryUserToken(2) failed (Windows error 1314)", None, 1314))
    session = DeskSession(user="CORP\\ben", uid=None, session_id="2")

    assert not WtsLauncher(starter=starter).launch(session, ["deskwarden.exe", "agent"])
    assert "1314" in caplog.text


@pytest.mark.skipif(sys.platform == "win32", reason="checks the guard on other systems")
def test_real_adapter_refuses_off_windows_and_the_source_degrades() -> None:
    with pytest.raises(OSError, match="Windows only"):
        Win32Wts().sessions()
    assert WtsSessions().active() is None
    assert WtsSessions().session_of(1) is None
    assert not WtsLauncher().launch(DeskSession(user="x", uid=None, session_id="1"), ["x"])
