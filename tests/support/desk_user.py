"""Real standard users for privileged tests: created with useradd, run with setpriv, removed with userdel.

Fixtures and helpers are called from the test's main thread. Everything here needs root; `missing_privilege()` says
why not, and the fixtures skip with that reason. Re-export the fixtures from a conftest like tests/privileged does.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import secrets
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil
import pytest

from tests.xvfb import xvfb_display

REPO = Path(__file__).resolve().parents[2]
USER_VENV_SCRIPT = REPO / "scripts" / "user-venv.sh"
RUNTIME_ROOT = Path("/run/user")
USER_PATH = "/usr/local/bin:/usr/bin:/bin"
# Serialises useradd/userdel across pytest-xdist workers (useradd fails when another one holds /etc/passwd's lock).
# Under /run, not the world-writable /run/lock, so no other user can plant it.
ACCOUNTS_LOCK = Path("/run/deskwarden-test-accounts.lock")
TOOLS = ("useradd", "userdel", "setpriv")
SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin"
USER_VENV_TIMEOUT = 600.0
KILL_TIMEOUT = 5.0


@dataclass(frozen=True)
class DeskUser:
    """A standard user created for one test: no extra groups, home 0700, XDG_RUNTIME_DIR 0700 owned by the user."""

    name: str
    uid: int
    gid: int
    home: Path

    @property
    def runtime_dir(self) -> Path:
        return RUNTIME_ROOT / str(self.uid)


def _tool(name: str) -> str:
    path = shutil.which(name, path=SBIN_PATH)
    if path is None:
        raise FileNotFoundError(name)
    return path


def missing_privilege() -> str | None:
    """Why this process cannot create and impersonate users, or None when it can."""
    if not sys.platform.startswith("linux"):
        return "real desk users need Linux"
    if os.geteuid() != 0:
        return "creating real desk users needs root (scripts/test.sh runs as root in CI)"
    for name in TOOLS:
        if shutil.which(name, path=SBIN_PATH) is None:
            return f"{name} is not installed (apt-get install passwd util-linux)"
    return None


@contextlib.contextmanager
def _accounts_lock() -> Iterator[None]:
    fd = os.open(ACCOUNTS_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def create_desk_user(*, prefix: str = "dw") -> DeskUser:
    """`useradd -m` a fresh standard user (uid from the normal range, own group only) and its runtime dir."""
    for _ in range(3):
        name = f"{prefix}{secrets.token_hex(4)}"
        with _accounts_lock():
            done = subprocess.run(
                [_tool("useradd"), "--create-home", "--user-group", "--shell", "/bin/bash", name],
                capture_output=True,
                text=True,
                check=False,
            )
        if done.returncode == 9:  # name already in use: draw another
            continue
        if done.returncode != 0:
            raise RuntimeError(f"useradd {name} failed ({done.returncode}): {done.stderr.strip()}")
        entry = pwd.getpwnam(name)
        user = DeskUser(name=name, uid=entry.pw_uid, gid=entry.pw_gid, home=Path(entry.pw_dir))
        try:
            os.chmod(user.home, 0o700)  # Debian's useradd leaves 0755 unless HOME_MODE is set
            _make_runtime_dir(user)
        except BaseException:
            remove_desk_user(user)
            raise
        return user
    raise RuntimeError("useradd kept reporting the random user name as taken")


def _make_runtime_dir(user: DeskUser) -> None:
    """What pam_systemd would give a login session: /run/user/<uid>, 0700, owned by the user."""
    RUNTIME_ROOT.mkdir(mode=0o755, exist_ok=True)
    shutil.rmtree(user.runtime_dir, ignore_errors=True)  # a uid reused after a crashed run
    user.runtime_dir.mkdir(mode=0o700)
    os.chown(user.runtime_dir, user.uid, user.gid)
    os.chmod(user.runtime_dir, 0o700)


def kill_user_processes(user: DeskUser, *, timeout: float = KILL_TIMEOUT) -> None:
    """SIGKILL every process running as the user and wait until each has exited (pidfds: no pid-reuse races)."""
    for _ in range(10):  # a process may fork between the listing and the kill: go round until none is left
        pidfds: list[int] = []
        for proc in psutil.process_iter(["uids", "status"]):
            uids = proc.info["uids"]
            if uids is None or user.uid not in (uids.real, uids.effective, uids.saved):
                continue
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            with contextlib.suppress(ProcessLookupError):
                pidfds.append(os.pidfd_open(proc.pid))
        if not pidfds:
            return
        try:
            for fd in pidfds:
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
            pending = set(pidfds)
            while pending:
                ready, _, _ = select.select(list(pending), [], [], timeout)
                if not ready:
                    raise RuntimeError(f"processes of {user.name} survived SIGKILL for {timeout} s")
                pending.difference_update(ready)
        finally:
            for fd in pidfds:
                os.close(fd)
    raise RuntimeError(f"processes of {user.name} kept forking while being killed")


def remove_desk_user(user: DeskUser) -> None:
    """Kill and reap what we spawned as the user, kill the rest of its processes, `userdel -r` and remove what it
    leaves behind."""
    for proc in _SPAWNED.pop(user.uid, []):
        # Directly, not by uid: a child may still be setpriv running as root, before its setresuid.
        proc.kill()
        proc.wait(KILL_TIMEOUT)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    kill_user_processes(user)
    with _accounts_lock():
        # -f: a zombie whose parent has not reaped it yet must not keep the account alive.
        subprocess.run([_tool("userdel"), "--remove", "--force", user.name], capture_output=True, check=False)
    shutil.rmtree(user.home, ignore_errors=True)
    shutil.rmtree(user.runtime_dir, ignore_errors=True)
    for scratch in (Path("/tmp"), Path("/var/tmp"), Path("/dev/shm")):
        with contextlib.suppress(FileNotFoundError):
            for entry in scratch.iterdir():
                with contextlib.suppress(FileNotFoundError):
                    if entry.lstat().st_uid != user.uid:
                        continue
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        entry.unlink()


def user_env(user: DeskUser, *, display: str | None = None, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """A login-like environment for `user`, built from nothing: root's variables (PYTHONPATH, DESKWARDEN_HOME,
    VIRTUAL_ENV...) never reach the child. `env` adds or overrides variables on top."""
    entry = pwd.getpwuid(user.uid)
    base = {
        "HOME": str(user.home),
        "USER": user.name,
        "LOGNAME": user.name,
        "SHELL": entry.pw_shell or "/bin/sh",
        "PATH": USER_PATH,
        "LANG": "C.UTF-8",
        "XDG_RUNTIME_DIR": str(user.runtime_dir),
    }
    if display is not None:
        base["DISPLAY"] = display
    return {**base, **(env or {})}


def as_user_argv(user: DeskUser, argv: Sequence[str]) -> list[str]:
    """`argv` run as `user`. setpriv execs in place (unlike runuser, which stays as a root parent), so a spawned
    helper's pid is the user's own process; --init-groups gives it exactly the user's groups."""
    return [_tool("setpriv"), f"--reuid={user.uid}", f"--regid={user.gid}", "--init-groups", "--", *argv]


def run_as(
    user: DeskUser,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    display: str | None = None,
    cwd: Path | None = None,
    input: str | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` as `user` to completion (cwd: the user's home) and capture its output as text; never raises on
    a non-zero exit, so tests can assert on refusals."""
    return subprocess.run(
        as_user_argv(user, argv),
        env=user_env(user, display=display, env=env),
        cwd=cwd or user.home,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


_SPAWNED: dict[int, list[subprocess.Popen[str]]] = {}


def spawn_as(
    user: DeskUser,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    display: str | None = None,
    cwd: Path | None = None,
    stdin: int | IO[Any] | None = subprocess.DEVNULL,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
) -> subprocess.Popen[str]:
    """Start a long-running `argv` as `user` in its own session (text streams). `proc.pid` becomes the user's own
    process once setpriv has exec'd it: wait for the helper's first sign of life before checking its credentials.
    Stop it yourself or leave it: removing the user kills and reaps it."""
    proc = subprocess.Popen(
        as_user_argv(user, argv),
        env=user_env(user, display=display, env=env),
        cwd=cwd or user.home,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        text=True,
        start_new_session=True,
    )
    _SPAWNED.setdefault(user.uid, []).append(proc)
    return proc


def prepare_user_python() -> Path:
    """Build or re-sync the root-owned install (scripts/user-venv.sh) and return its python, which the desk users
    and the root service both run. Warm, this takes well under a second."""
    done = subprocess.run(
        ["bash", str(USER_VENV_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=USER_VENV_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{USER_VENV_SCRIPT} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


@dataclass
class DeskUsers:
    """Creates users on demand (`desk_user_factory()`) and removes every one of them on `close()`."""

    created: list[DeskUser] = field(default_factory=list)

    def __call__(self) -> DeskUser:
        user = create_desk_user()
        self.created.append(user)
        return user

    def close(self) -> None:
        errors: list[BaseException] = []
        while self.created:
            try:
                remove_desk_user(self.created.pop())
            except Exception as exc:  # noqa: BLE001 - remove the others first, then report
                errors.append(exc)
        if errors:
            raise errors[0]


def _skip_without_privilege() -> None:
    reason = missing_privilege()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture
def desk_user_factory() -> Iterator[DeskUsers]:
    """Call it to create a fresh standard user; all of them are removed after the test."""
    _skip_without_privilege()
    users = DeskUsers()
    try:
        yield users
    finally:
        users.close()


@pytest.fixture
def desk_user(desk_user_factory: DeskUsers) -> DeskUser:
    """One fresh standard user for this test."""
    return desk_user_factory()


@pytest.fixture
def desk_users(desk_user_factory: DeskUsers) -> tuple[DeskUser, DeskUser]:
    """Two fresh standard users for this test (two desks on one PC)."""
    return desk_user_factory(), desk_user_factory()


@pytest.fixture(scope="session")
def user_python() -> Path:
    """/opt/deskwarden-test/venv/bin/python (or $DESKWARDEN_USER_PREFIX's), with the current source synced."""
    _skip_without_privilege()
    return prepare_user_python()


@pytest.fixture(scope="session")
def desk_display() -> Iterator[str]:
    """DISPLAY of a private Xvfb that any local user may connect to: started without -auth, Xvfb admits every local
    client (checked on Debian 12's Xvfb 21.1.7). Not for tests of X isolation between users."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed")
    with xvfb_display() as display:
        yield display
