"""Linux desk sessions on a fake /proc, a fake loginctl and a fake X11 socket directory: what a helper's session
is (from the kernel's copy of its environment, whitelisted), when it is alive, and which logind sessions expect
a helper."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from agent_app.core.sessions import DeskSession
from agent_app.core.sessions.linux import SESSION_ENV, LinuxSessions

ME = pwd.getpwuid(os.getuid()).pw_name


class FakeLoginctl:
    """`loginctl list-sessions --output=json` and `loginctl show-session ID -p ...` over a table of sessions."""

    def __init__(self, sessions: dict[str, dict[str, str]] | None = None) -> None:
        self.sessions = sessions if sessions is not None else {}
        self.calls: list[list[str]] = []
        self.broken = False

    def __call__(self, argv: Sequence[str]) -> str:
        argv = list(argv)
        self.calls.append(argv)
        if self.broken:
            raise OSError("loginctl: not found")
        if argv[:2] == ["loginctl", "list-sessions"]:
            return json.dumps(
                [
                    {"session": sid, "uid": int(p.get("User", "0")), "user": p.get("Name", "")}
                    for sid, p in self.sessions.items()
                ]
            )
        if argv[:2] == ["loginctl", "show-session"]:
            sid = argv[2]
            if sid not in self.sessions:
                raise subprocess.CalledProcessError(1, argv, stderr=f"Failed to get session: No session '{sid}' known")
            wanted = [argv[i + 1] for i, word in enumerate(argv) if word == "-p"]
            props = self.sessions[sid]
            return "".join(f"{key}={props.get(key, '')}\n" for key in wanted)
        raise AssertionError(f"unexpected command {argv}")


def logind_sessions(tmp_path: Path, loginctl: FakeLoginctl) -> LinuxSessions:
    source = LinuxSessions(proc=tmp_path / "proc", x11_dir=tmp_path / "X11", runner=loginctl)
    source._logind = True  # the constructor probes the real machine for logind; these tests say it runs
    return source


def plain_sessions(tmp_path: Path) -> LinuxSessions:
    source = LinuxSessions(proc=tmp_path / "proc", x11_dir=tmp_path / "X11", runner=FakeLoginctl())
    source._logind = False
    return source


def fake_process(tmp_path: Path, pid: int, env: dict[str, str], *, session_leader: int | None = None) -> None:
    folder = tmp_path / "proc" / str(pid)
    folder.mkdir(parents=True)
    (folder / "environ").write_bytes(b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items()))
    if session_leader is not None:
        # /proc/PID/stat: pid (comm) state ppid pgrp session ...; comm may hold spaces and parentheses.
        (folder / "stat").write_text(f"{pid} (deskwarden (x) agent) S 1 {pid} {session_leader} 34816 0 -1\n")


# --- session_of ----------------------------------------------------------------------------------------------


def test_session_of_reads_only_the_whitelisted_environment(tmp_path: Path) -> None:
    fake_process(
        tmp_path,
        4242,
        {
            "DISPLAY": ":1",
            "XAUTHORITY": "/run/user/1000/gdm/Xauthority",
            "XDG_SESSION_ID": "3",
            "XDG_RUNTIME_DIR": "/run/user/1000",
            "AWS_SECRET_ACCESS_KEY": "do-not-copy",
            "LD_PRELOAD": "/tmp/evil.so",
            "PYTHONPATH": "/tmp/evil",
        },
    )

    session = plain_sessions(tmp_path).session_of(4242)

    assert session is not None
    assert session.user == ME
    assert session.uid == os.getuid()
    assert session.session_id == "3"
    assert session.display == ":1"
    assert set(session.env) <= set(SESSION_ENV)
    assert session.env == {
        "DISPLAY": ":1",
        "XAUTHORITY": "/run/user/1000/gdm/Xauthority",
        "XDG_SESSION_ID": "3",
        "XDG_RUNTIME_DIR": "/run/user/1000",
    }


def test_session_of_a_wayland_helper_without_session_id_is_its_display(tmp_path: Path) -> None:
    fake_process(tmp_path, 7, {"WAYLAND_DISPLAY": "wayland-0", "XDG_RUNTIME_DIR": "/run/user/1000"})

    session = plain_sessions(tmp_path).session_of(7)

    assert session is not None
    assert (session.session_id, session.display) == ("wayland-0", "wayland-0")


def test_session_of_a_helper_without_display_is_its_terminal_session(tmp_path: Path) -> None:
    fake_process(tmp_path, 8, {"HOME": "/home/x", "DESKWARDEN_SESSION_LEADER": "1"}, session_leader=77)

    session = plain_sessions(tmp_path).session_of(8)

    assert session is not None
    assert session.session_id == "sid:77"
    assert session.env["DESKWARDEN_SESSION_LEADER"] == "77", "from the kernel's stat, not the helper's environment"


def test_session_of_a_gone_process_is_none(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    assert plain_sessions(tmp_path).session_of(99999) is None


def test_session_of_survives_binary_junk_in_the_environment(tmp_path: Path) -> None:
    folder = tmp_path / "proc" / "9"
    folder.mkdir(parents=True)
    (folder / "environ").write_bytes(b"DISPLAY=:\xff0\0\xfe\xfd=x\0NOEQUALS\0")

    session = plain_sessions(tmp_path).session_of(9)

    assert session is not None
    assert session.env == {"DISPLAY": ":\ufffd0"}


# --- alive -------------------------------------------------------------------------------------------------------


def x_session(display: str = ":1", **extra: str) -> DeskSession:
    return DeskSession(user=ME, uid=os.getuid(), session_id="x", display=display, env={"DISPLAY": display, **extra})


@pytest.mark.parametrize(("state", "alive"), [("active", True), ("online", True), ("closing", False)])
def test_alive_follows_the_logind_state(tmp_path: Path, state: str, alive: bool) -> None:
    loginctl = FakeLoginctl({"3": {"State": state, "Type": "x11"}})
    session = x_session(XDG_SESSION_ID="3")

    assert logind_sessions(tmp_path, loginctl).alive(session) is alive


def test_alive_does_not_ask_loginctl_about_an_unsafe_session_id(tmp_path: Path) -> None:
    loginctl = FakeLoginctl({"3": {"State": "active"}})
    (tmp_path / "X11").mkdir()
    session = x_session(XDG_SESSION_ID="3 -H evil")

    assert not logind_sessions(tmp_path, loginctl).alive(session)
    assert loginctl.calls == []


@pytest.mark.parametrize("display", [":1", ":1.0"])
def test_alive_without_logind_follows_the_x_socket(tmp_path: Path, display: str) -> None:
    source = plain_sessions(tmp_path)
    sockets = tmp_path / "X11"
    sockets.mkdir()
    (sockets / "X1").touch()
    session = x_session(display)

    assert source.alive(session)
    (sockets / "X1").unlink()
    assert not source.alive(session)


def test_alive_without_logind_follows_the_wayland_socket(tmp_path: Path) -> None:
    runtime = tmp_path / "run-user"
    runtime.mkdir()
    (runtime / "wayland-0").touch()
    session = DeskSession(
        user=ME,
        uid=os.getuid(),
        session_id="wayland-0",
        env={"WAYLAND_DISPLAY": "wayland-0", "XDG_RUNTIME_DIR": str(runtime)},
    )
    source = plain_sessions(tmp_path)

    assert source.alive(session)
    (runtime / "wayland-0").unlink()
    assert not source.alive(session)


def test_alive_without_any_display_follows_the_session_leader(tmp_path: Path) -> None:
    fake_process(tmp_path, 11, {}, session_leader=77)
    fake_process(tmp_path, 77, {})  # the login shell leading the terminal session
    source = plain_sessions(tmp_path)
    session = source.session_of(11)
    assert session is not None

    assert source.alive(session)
    (tmp_path / "proc" / "77" / "environ").unlink()
    (tmp_path / "proc" / "77").rmdir()
    assert not source.alive(session)
    assert not source.alive(DeskSession(user=ME, uid=os.getuid(), session_id="sid:1", env={}))


def test_a_session_logind_forgot_is_not_alive_even_if_its_display_is_reused(tmp_path: Path) -> None:
    loginctl = FakeLoginctl({})  # session 3 logged out
    sockets = tmp_path / "X11"
    sockets.mkdir()
    (sockets / "X1").touch()  # the login screen now runs on :1

    assert not logind_sessions(tmp_path, loginctl).alive(x_session(":1", XDG_SESSION_ID="3"))


# --- active ------------------------------------------------------------------------------------------------------


SESSIONS = {
    "2": {"Type": "x11", "State": "active", "User": "1000", "Name": "asha", "Display": ":0", "Remote": "no"},
    "5": {"Type": "wayland", "State": "online", "User": "1001", "Name": "ben", "Display": "", "Remote": "no"},
    "6": {"Type": "tty", "State": "active", "User": "1002", "Name": "chen", "Display": "", "Remote": "no"},
    "7": {"Type": "x11", "State": "closing", "User": "1003", "Name": "dana", "Display": ":2", "Remote": "no"},
    "c1": {"Type": "wayland", "State": "active", "User": "1004", "Name": "eve", "Display": "", "Remote": "yes"},
    "c2": {"Type": "x11", "State": "active", "User": "1005", "Name": "fay", "Display": ":10", "Remote": "yes"},
    "8": {"Type": "unspecified", "State": "active", "User": "0", "Name": "root", "Display": "", "Remote": "yes"},
}


def test_active_lists_graphical_sessions_and_skips_tty_closing_and_headless_remote(tmp_path: Path) -> None:
    sessions = logind_sessions(tmp_path, FakeLoginctl(SESSIONS)).active()

    assert sessions is not None
    assert [(s.user, s.uid, s.session_id) for s in sessions] == [
        ("asha", 1000, "2"),
        ("ben", 1001, "5"),
        ("fay", 1005, "c2"),  # a remote X session with a display (xrdp) has a desktop to watch
    ]
    asha = sessions[0]
    assert asha.display == ":0"
    assert asha.env == {"DISPLAY": ":0", "XDG_RUNTIME_DIR": "/run/user/1000", "XDG_SESSION_ID": "2"}
    assert "DISPLAY" not in sessions[1].env


def test_active_is_unknown_without_logind(tmp_path: Path) -> None:
    assert plain_sessions(tmp_path).active() is None


@pytest.mark.parametrize("output", ["not json", '{"session": "2"}'])
def test_active_tolerates_broken_loginctl_output(tmp_path: Path, output: str) -> None:
    def runner(argv: Sequence[str]) -> str:
        return output

    source = LinuxSessions(proc=tmp_path, x11_dir=tmp_path, runner=runner)
    source._logind = True
    assert source.active() in (None, [])


def test_active_is_unknown_when_loginctl_fails(tmp_path: Path) -> None:
    loginctl = FakeLoginctl(SESSIONS)
    loginctl.broken = True

    assert logind_sessions(tmp_path, loginctl).active() is None


def test_a_helper_session_matches_the_session_active_expects(tmp_path: Path) -> None:
    loginctl = FakeLoginctl({"2": {**SESSIONS["2"], "User": str(os.getuid()), "Name": ME}})
    fake_process(tmp_path, 4242, {"DISPLAY": ":0", "XDG_SESSION_ID": "2"})
    source = logind_sessions(tmp_path, loginctl)

    [expected] = source.active() or []
    helper = source.session_of(4242)

    assert helper is not None
    assert helper.key == expected.key
