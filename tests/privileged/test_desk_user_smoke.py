"""The desk-user infrastructure works: a real standard user runs the root-owned install, opens a Qt window on the
test display, and the OS refuses it root's state, root's processes and the install itself."""

from __future__ import annotations

import json
import os
import pwd
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.desk_user import REPO, DeskUser, DeskUsers, kill_user_processes, run_as, spawn_as

pytestmark = pytest.mark.privileged


def python_as(user: DeskUser, python: Path, code: str, *args: str | Path, **kwargs: Any) -> Any:
    """Run `code` (with `args` in sys.argv[1:]) by the install's python as `user`; return the JSON value it prints."""
    done = run_as(user, [str(python), "-c", code, *map(str, args)], **kwargs)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# Run as the user with argv = [mode, path...]: prints, per path, what open(path, mode) gave: the text read,
# "written", or the exception's class name.
TRY_OPEN = """
import json, sys
mode, out = sys.argv[1], []
for path in sys.argv[2:]:
    try:
        with open(path, mode) as handle:
            if mode == "r":
                out.append(handle.read())
            else:
                handle.write("# changed by the desk user\\n")
                out.append("written")
    except OSError as exc:
        out.append(type(exc).__name__)
print(json.dumps(out))
"""


@pytest.fixture
def root_only_dir() -> Iterator[Path]:
    """A 0700 directory of root's outside pytest's own 0700 tmp tree, so only its own mode can stop the user."""
    path = Path(tempfile.mkdtemp(prefix="dw-root-state-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path)


def test_user_python_imports_the_current_agent_packages(desk_user: DeskUser, user_python: Path) -> None:
    found = python_as(
        desk_user,
        user_python,
        "import json, importlib.util, pathlib, agent_app, collectors, policy_client, PySide6.QtWidgets\n"
        "print(json.dumps({'files': [m.__file__ for m in (agent_app, collectors, policy_client)],"
        # where agent_app.core.paths.assets_dir() looks in a source tree
        " 'assets': pathlib.Path(agent_app.__file__).parents[1].joinpath('assets', 'policy').is_dir(),"
        " 'central': importlib.util.find_spec('central') is not None}))",
    )
    src = user_python.parents[2] / "src"
    assert found["files"] == [str(src / name / "__init__.py") for name in ("agent_app", "collectors", "policy_client")]
    assert found["assets"] is True
    assert found["central"] is False  # the endpoint is not part of what a desk runs
    assert (src / "agent_app" / "cli.py").read_bytes() == (REPO / "agent_app" / "cli.py").read_bytes()


def test_user_gets_a_login_environment_and_none_of_roots(
    desk_user: DeskUser, user_python: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("DESKWARDEN_HOME", "/root/.deskwarden")
    seen = python_as(
        desk_user,
        user_python,
        "import json, os\n"
        "st = os.stat(os.environ['XDG_RUNTIME_DIR'])\n"
        "print(json.dumps({'env': dict(os.environ), 'ids': [os.getuid(), os.geteuid(), os.getgid()],"
        " 'groups': os.getgroups(), 'runtime': [st.st_uid, st.st_mode & 0o777], 'cwd': os.getcwd()}))",
    )
    env = seen["env"]
    assert "PYTHONPATH" not in env
    assert "DESKWARDEN_HOME" not in env
    assert "VIRTUAL_ENV" not in env
    assert not [value for value in env.values() if "/root" in value]
    assert (env["HOME"], env["USER"], env["LOGNAME"]) == (str(desk_user.home), desk_user.name, desk_user.name)
    assert env["XDG_RUNTIME_DIR"] == f"/run/user/{desk_user.uid}"
    assert seen["runtime"] == [desk_user.uid, 0o700]
    assert seen["ids"] == [desk_user.uid, desk_user.uid, desk_user.gid]
    assert 1000 <= desk_user.uid < 60000
    assert seen["groups"] == [desk_user.gid]  # no sudo, adm or any other group
    assert seen["cwd"] == str(desk_user.home)
    assert stat.S_IMODE(desk_user.home.stat().st_mode) == 0o700


def test_user_opens_a_qt_window_on_the_desk_display(desk_user: DeskUser, user_python: Path, desk_display: str) -> None:
    shown = python_as(
        desk_user,
        user_python,
        "import json\n"
        "from PySide6.QtWidgets import QApplication, QWidget\n"
        "app = QApplication([])\n"
        "window = QWidget()\n"
        "window.setWindowTitle('desk user window')\n"
        "window.show()\n"
        "app.processEvents()\n"
        "print(json.dumps([app.platformName(), window.isVisible(), int(window.winId()) != 0]))",
        display=desk_display,
        env={"QT_QPA_PLATFORM": "xcb"},
    )
    assert shown == ["xcb", True, True]


def test_user_cannot_read_root_only_state(desk_user: DeskUser, user_python: Path, root_only_dir: Path) -> None:
    secret = root_only_dir / "device.key"
    secret.write_text("root only")
    secret.chmod(0o600)
    readable = root_only_dir.parent / f"{root_only_dir.name}.public"
    readable.write_text("anyone")
    readable.chmod(0o644)
    try:
        outcome = python_as(desk_user, user_python, TRY_OPEN, "r", secret, readable)
    finally:
        readable.unlink()
    assert outcome == ["PermissionError", "anyone"]


def test_user_cannot_signal_a_root_process(desk_user: DeskUser, user_python: Path) -> None:
    root_proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        errors = python_as(
            desk_user,
            user_python,
            "import errno, json, os, signal\n"
            f"pid = {root_proc.pid}\n"
            "out = []\n"
            "for sig in (0, signal.SIGTERM, signal.SIGKILL):\n"
            "    try:\n"
            "        os.kill(pid, sig)\n"
            "        out.append('delivered')\n"
            "    except OSError as exc:\n"
            "        out.append(errno.errorcode[exc.errno])\n"
            "os.kill(os.getpid(), 0)  # its own process answers\n"
            "print(json.dumps(out))",
        )
        shell = run_as(desk_user, ["/bin/sh", "-c", f"kill -0 $$ && kill -0 {root_proc.pid}"])
        assert root_proc.poll() is None
    finally:
        assert root_proc.stdin is not None
        root_proc.stdin.close()
        root_proc.wait(10)
    assert errors == ["EPERM", "EPERM", "EPERM"]
    assert shell.returncode != 0
    assert "Operation not permitted" in shell.stderr


def test_user_cannot_write_into_the_install(desk_user: DeskUser, user_python: Path) -> None:
    prefix = user_python.parents[2]
    site = next((prefix / "venv" / "lib").glob("python3.*/site-packages"))
    targets = [
        prefix / "src" / "agent_app" / "injected.py",
        prefix / "src" / "agent_app" / "__init__.py",
        site / "sitecustomize.py",
        site / "deskwarden-src.pth",
        prefix / "venv" / "bin" / "deskwarden",
    ]
    outcome = python_as(desk_user, user_python, TRY_OPEN, "a", *targets)
    assert outcome == ["PermissionError"] * len(targets)
    writable = []
    for top, dirs, files in os.walk(prefix):
        for name in (*dirs, *files):
            info = os.lstat(os.path.join(top, name))
            if stat.S_ISLNK(info.st_mode):
                continue
            if info.st_uid != 0 or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                writable.append(os.path.join(top, name))
    assert writable == []


def test_two_desk_users_cannot_read_each_others_home(desk_users: tuple[DeskUser, DeskUser]) -> None:
    alice, bob = desk_users
    note = alice.home / "note.txt"
    wrote = run_as(alice, ["/bin/sh", "-c", f"echo mine > {note} && cat {note}"])
    assert (wrote.returncode, wrote.stdout) == (0, "mine\n"), wrote.stderr
    peek = run_as(bob, ["/bin/cat", str(note)])
    assert peek.returncode != 0
    assert "Permission denied" in peek.stderr


def test_spawned_helper_is_the_users_own_process_and_dies_with_it(desk_user: DeskUser, user_python: Path) -> None:
    helper = spawn_as(
        desk_user,
        [str(user_python), "-c", "import sys; print('ready', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert helper.stdout is not None
    assert helper.stdout.readline() == "ready\n"  # setpriv has exec'd the helper by now
    process = psutil.Process(helper.pid)
    assert process.uids() == (desk_user.uid, desk_user.uid, desk_user.uid)  # no root parent in between
    assert process.username() == desk_user.name
    kill_user_processes(desk_user)
    assert helper.wait(10) == -signal.SIGKILL


def test_removing_a_desk_user_kills_its_daemons_and_leaves_nothing(desk_user_factory: DeskUsers) -> None:
    user = desk_user_factory()
    started = run_as(user, ["/bin/sh", "-c", "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $!"])
    daemon = os.pidfd_open(int(started.stdout))
    leftover = Path("/tmp") / f"{user.name}-leftover"
    assert run_as(user, ["/usr/bin/touch", str(leftover)]).returncode == 0
    try:
        desk_user_factory.close()
        exited, _, _ = select.select([daemon], [], [], 0)
        assert exited == [daemon]
    finally:
        os.close(daemon)
    with pytest.raises(KeyError):
        pwd.getpwnam(user.name)
    assert not user.home.exists()
    assert not user.runtime_dir.exists()
    assert not leftover.exists()
