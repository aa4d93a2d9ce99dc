"""macOS desk sessions through their runner: the console user, a helper's session from its uid, when a session
stops being alive, and how launchd (or launchctl asuser) starts a helper."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from agent_app.core.sessions import DeskSession
from agent_app.core.sessions.macos import AGENT_LABEL, CONSOLE, ConsoleLauncher, ConsoleSessions

NAMES = {501: "asha", 502: "ben"}


class FakeMac:
    """stat, ps and launchctl as a Mac would answer them."""

    def __init__(self) -> None:
        self.console_uid: int | None = 501
        self.processes = {4242: 501, 4343: 502, 1: 0}
        self.gui_domains = {501, 502}
        self.calls: list[list[str]] = []
        self.fail: set[str] = set()

    def __call__(self, argv: Sequence[str]) -> str:
        argv = list(argv)
        self.calls.append(argv)
        tool = argv[0].rsplit("/", 1)[-1]
        if tool in self.fail or (tool == "launchctl" and argv[1] in self.fail):
            raise subprocess.CalledProcessError(1, argv)
        if argv == ["/usr/bin/stat", "-f", "%u", "/dev/console"]:
            if self.console_uid is None:
                raise OSError("no such file")
            return f"{self.console_uid}\n"
        if tool == "ps":
            pid = int(argv[argv.index("-p") + 1])
            if pid not in self.processes:
                raise subprocess.CalledProcessError(1, argv)
            return f"  {self.processes[pid]}\n"
        if tool == "launchctl" and argv[1] == "print":
            if int(argv[2].split("/")[1]) not in self.gui_domains:
                raise subprocess.CalledProcessError(113, argv)
            return "gui/501 = {...}"
        if tool == "launchctl":
            return ""
        raise AssertionError(f"unexpected command {argv}")


def sessions(fake: FakeMac) -> ConsoleSessions:
    return ConsoleSessions(runner=fake, login_of=lambda uid: NAMES.get(uid, str(uid)))


def test_active_is_the_console_user() -> None:
    [session] = sessions(FakeMac()).active() or []

    assert session.user == "asha"
    assert session.uid == 501
    assert session.session_id == CONSOLE
    assert session.env["USER"] == "asha"


def test_no_helper_is_expected_at_the_login_window() -> None:
    fake = FakeMac()
    fake.console_uid = 0

    assert sessions(fake).active() == []


def test_active_is_unknown_when_the_console_cannot_be_read() -> None:
    fake = FakeMac()
    fake.console_uid = None

    assert sessions(fake).active() is None


def test_session_of_a_helper_comes_from_its_uid() -> None:
    source = sessions(FakeMac())

    console = source.session_of(4242)
    switched = source.session_of(4343)

    assert console is not None
    assert console.key == ("asha", CONSOLE)
    assert console in (source.active() or []), "the helper's session is the one active() expects"
    assert switched is not None
    assert switched.key == ("ben", "gui/502")


@pytest.mark.parametrize("pid", [1, 9999], ids=["root", "gone"])
def test_session_of_root_and_gone_processes_is_none(pid: int) -> None:
    assert sessions(FakeMac()).session_of(pid) is None


def test_the_console_session_lives_while_its_user_owns_the_console() -> None:
    fake = FakeMac()
    source = sessions(fake)
    asha = source.session_of(4242)
    assert asha is not None
    assert source.alive(asha)

    fake.console_uid = 502  # fast user switch to ben
    assert not source.alive(asha)

    fake.console_uid = 0  # logged out, back at the login window
    assert not source.alive(asha)


def test_a_switched_away_session_lives_while_its_gui_domain_does() -> None:
    fake = FakeMac()
    source = sessions(fake)
    ben = source.session_of(4343)
    assert ben is not None
    assert source.alive(ben)

    fake.gui_domains.discard(502)
    assert not source.alive(ben)


def test_a_session_without_uid_is_not_alive() -> None:
    assert not sessions(FakeMac()).alive(DeskSession(user="x", uid=None, session_id=CONSOLE))


class FakeSpawner:
    def __init__(self, ok: bool = True) -> None:
        self.started: list[list[str]] = []
        self._ok = ok

    def __call__(self, argv: Sequence[str]) -> bool:
        self.started.append(list(argv))
        return self._ok


ASHA = DeskSession(user="asha", uid=501, session_id=CONSOLE)
ARGV = ["/Applications/DeskWarden.app/Contents/MacOS/deskwarden", "agent"]


def test_launch_asks_launchd_when_the_agent_job_is_installed(tmp_path: Path) -> None:
    plist = tmp_path / f"{AGENT_LABEL}.plist"
    plist.write_text("<plist/>")
    fake, spawner = FakeMac(), FakeSpawner()
    fake.fail.add("bootstrap")  # launchd loaded it at login already

    assert ConsoleLauncher(runner=fake, spawner=spawner, agent_plist=plist).launch(ASHA, ARGV)

    assert fake.calls == [
        ["/bin/launchctl", "bootstrap", "gui/501", str(plist)],
        ["/bin/launchctl", "kickstart", f"gui/501/{AGENT_LABEL}"],
    ]
    assert spawner.started == []


def test_launch_enters_the_users_gui_session_without_the_agent_job(tmp_path: Path) -> None:
    fake, spawner = FakeMac(), FakeSpawner()

    assert ConsoleLauncher(runner=fake, spawner=spawner, agent_plist=tmp_path / "missing.plist").launch(ASHA, ARGV)

    assert spawner.started == [
        ["/bin/launchctl", "asuser", "501", "/usr/bin/sudo", "-u", "#501", "-H", "--", *ARGV],
    ]


def test_launch_falls_back_to_asuser_when_kickstart_fails(tmp_path: Path) -> None:
    plist = tmp_path / f"{AGENT_LABEL}.plist"
    plist.write_text("<plist/>")
    fake, spawner = FakeMac(), FakeSpawner()
    fake.fail.add("kickstart")

    assert ConsoleLauncher(runner=fake, spawner=spawner, agent_plist=plist).launch(ASHA, ARGV)
    assert spawner.started[0][:3] == ["/bin/launchctl", "asuser", "501"]


@pytest.mark.parametrize("uid", [None, 0])
def test_launch_refuses_sessions_without_a_desk_user(uid: int | None, tmp_path: Path) -> None:
    spawner = FakeSpawner()
    session = DeskSession(user="root", uid=uid, session_id=CONSOLE)

    assert not ConsoleLauncher(runner=FakeMac(), spawner=spawner, agent_plist=tmp_path / "x").launch(session, ARGV)
    assert spawner.started == []


def test_launch_reports_a_spawn_failure(tmp_path: Path) -> None:
    launcher = ConsoleLauncher(runner=FakeMac(), spawner=FakeSpawner(ok=False), agent_plist=tmp_path / "x")
    assert not launcher.launch(ASHA, ARGV)
