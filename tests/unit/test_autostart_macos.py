"""macOS autostart through its adapter: plist written under a temporary home and parsed, launchctl faked."""

from __future__ import annotations

import plistlib
from collections.abc import Sequence
from pathlib import Path

from agent_app.core.autostart.macos import MacAutostart
from agent_app.core.autostart.model import LAUNCHD_LABEL, CommandResult, LaunchSpec

SPEC = LaunchSpec(
    argv=("/Applications/DeskWarden.app/Contents/MacOS/deskwarden", "agent"),
    version="3.1.0",
    env={"DESKWARDEN_HOME": "/Users/a & b/<state>"},
)


class FakeLaunchctl:
    def __init__(self, *, bootstrap_rc: int = 0) -> None:
        self.calls: list[list[str]] = []
        self._rc = bootstrap_rc

    def __call__(self, argv: Sequence[str]) -> CommandResult:
        self.calls.append(list(argv))
        return CommandResult(self._rc if argv[1] == "bootstrap" else 0)


def test_register_writes_keepalive_plist_and_bootstraps(tmp_path: Path) -> None:
    run = FakeLaunchctl()
    adapter = MacAutostart(user_home=tmp_path, run=run, uid=501)

    done = adapter.register(SPEC)

    path = tmp_path / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"
    assert done[0] == str(path)
    data = plistlib.loads(path.read_bytes())
    assert data["Label"] == LAUNCHD_LABEL
    assert data["ProgramArguments"] == list(SPEC.argv)
    assert data["EnvironmentVariables"] == {"DESKWARDEN_HOME": "/Users/a & b/<state>"}
    assert data["RunAtLoad"] is True
    assert data["KeepAlive"] == {"SuccessfulExit": False}
    assert path.stat().st_mode & 0o022 == 0
    assert ["launchctl", "bootstrap", "gui/501", str(path)] in run.calls


def test_bootstrap_failure_still_leaves_plist_for_next_login(tmp_path: Path) -> None:
    adapter = MacAutostart(user_home=tmp_path, run=FakeLaunchctl(bootstrap_rc=5), uid=501)
    done = adapter.register(SPEC)
    assert len(done) == 1
    assert Path(done[0]).is_file()


def test_all_users_writes_library_launchagents_without_launchctl(tmp_path: Path) -> None:
    run = FakeLaunchctl()
    adapter = MacAutostart(user_home=tmp_path / "home", system_root=tmp_path / "root", run=run, uid=0)
    spec = LaunchSpec(argv=SPEC.argv, version="1", all_users=True)

    adapter.register(spec)

    path = tmp_path / "root" / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"
    assert plistlib.loads(path.read_bytes())["EnvironmentVariables"] == {}
    assert run.calls == []
    assert adapter.unregister(spec) == [str(path)]
    assert not path.exists()


def test_unregister_boots_out_and_removes(tmp_path: Path) -> None:
    run = FakeLaunchctl()
    adapter = MacAutostart(user_home=tmp_path, run=run, uid=501)
    adapter.register(SPEC)
    run.calls.clear()

    removed = adapter.unregister(SPEC)

    assert removed == [str(tmp_path / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist")]
    assert run.calls == [["launchctl", "bootout", "gui/501", removed[0]]]
    assert adapter.unregister(SPEC) == []
