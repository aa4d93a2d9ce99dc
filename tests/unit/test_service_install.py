"""Service installation per OS through fake runners and a temporary root: the rendered unit, desktop entry and
plists parse and say the right things, and each OS's service manager is driven as it expects."""

from __future__ import annotations

import configparser
import plistlib
import shlex
import stat
from collections.abc import Sequence
from pathlib import Path

import pytest

from agent_app.core.autostart.model import CommandResult
from agent_app.core.autostart.windows import RUN_KEY, RUN_VALUE
from agent_app.core.service_install import ServiceInstallError, default_exe_argv, install, uninstall
from agent_app.core.service_install import linux as linux_install
from agent_app.core.service_install import macos as macos_install
from agent_app.core.service_install import windows as windows_install

EXE = ["/opt/DeskWarden dir/deskwarden"]
WIN_EXE = [r"C:\Program Files\DeskWarden\deskwarden.exe"]


class FakeRunner:
    def __init__(self, answers: dict[tuple[str, ...], int] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.answers = answers or {}

    def __call__(self, argv: Sequence[str]) -> CommandResult:
        argv = list(argv)
        self.calls.append(argv)
        for prefix, code in self.answers.items():
            if tuple(argv[: len(prefix)]) == prefix:
                return CommandResult(code, f"exit {code}")
        return CommandResult(0, "501" if argv[0].endswith("stat") else "")


def parse_unit(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(text)
    return parser


# --- Linux ---------------------------------------------------------------------------------------------------


def test_unit_runs_the_service_as_a_hardened_system_unit() -> None:
    unit = parse_unit(linux_install.unit_text(EXE, version="9.9"))
    service = unit["Service"]

    assert shlex.split(service["ExecStart"]) == [*EXE, "service"]
    assert service["Restart"] == "always"
    assert "User" not in service, "root"
    assert service["KillMode"] == "process", "restarting the service must not kill the helpers it started"
    assert (service["RuntimeDirectory"], service["RuntimeDirectoryMode"]) == ("deskwarden", "0755")
    assert (service["StateDirectory"], service["StateDirectoryMode"]) == ("deskwarden", "0700")
    assert service["ConfigurationDirectory"] == "deskwarden"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    writable = service["ReadWritePaths"].split()
    assert "-/home" in writable, "quarantine moves files out of the users' download folders"
    for absent in ("ProtectHome", "PrivateTmp", "PrivateUsers", "User", "DynamicUser"):
        assert absent not in service, absent
    assert "AF_NETLINK" in service["RestrictAddressFamilies"], "udev device events"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    assert unit["Unit"]["StartLimitIntervalSec"] == "0"


def test_unit_quotes_specifiers_and_variables_in_the_path() -> None:
    service = parse_unit(linux_install.unit_text(["/opt/100%/$HOME/deskwarden"]))["Service"]
    assert service["ExecStart"].startswith('"/opt/100%%/$$HOME/deskwarden"')


def test_autostart_entry_starts_the_helper_in_every_graphical_session() -> None:
    entry = parse_unit(linux_install.autostart_text(EXE, version="9.9"))["Desktop Entry"]

    assert entry["Type"] == "Application"
    assert entry["Exec"] == '"/opt/DeskWarden dir/deskwarden" agent'
    assert entry["X-DeskWarden-Version"] == "9.9"


def test_linux_install_writes_both_files_and_enables_the_unit_now(tmp_path: Path) -> None:
    runner = FakeRunner()
    root = tmp_path / "sysroot"
    unit = root / "etc/systemd/system/deskwarden.service"
    desktop = root / "etc/xdg/autostart/deskwarden-agent.desktop"

    done = linux_install.install_service(EXE, runner=runner, root=root)

    assert done[:2] == [str(unit), str(desktop)]
    assert runner.calls == [["systemctl", f"--root={root}", "enable", "deskwarden.service"]]
    for path in (unit, desktop):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in unit.parent.iterdir()) == ["deskwarden.service"], "no temp file left"


def test_linux_install_on_the_running_system_reloads_and_starts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Written under a temporary directory, driven as if it were "/": the unit path is joined onto root.
    runner = FakeRunner()
    monkeypatch.setattr(linux_install, "under", lambda root, absolute: tmp_path / absolute.lstrip("/"))

    done = linux_install.install_service(EXE, runner=runner)

    assert runner.calls == [["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", "deskwarden.service"]]
    assert done[-1] == "systemd unit deskwarden.service enabled and started"


def test_linux_install_reports_a_refusing_systemctl(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    runner = FakeRunner({("systemctl", "enable"): 1})
    monkeypatch.setattr(linux_install, "under", lambda root, absolute: tmp_path / absolute.lstrip("/"))

    with pytest.raises(ServiceInstallError, match="enable --now"):
        linux_install.install_service(EXE, runner=runner)


def test_linux_uninstall_disables_and_removes(tmp_path: Path) -> None:
    root = tmp_path / "sysroot"
    linux_install.install_service(EXE, runner=FakeRunner(), root=root)
    runner = FakeRunner()

    removed = linux_install.uninstall_service(runner=runner, root=root)

    assert removed == [
        str(root / "etc/systemd/system/deskwarden.service"),
        str(root / "etc/xdg/autostart/deskwarden-agent.desktop"),
    ]
    assert runner.calls == [["systemctl", f"--root={root}", "disable", "deskwarden.service"]]
    assert linux_install.uninstall_service(runner=FakeRunner(), root=root) == []


def test_a_relative_executable_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="absolute"):
        linux_install.install_service(["deskwarden"], runner=FakeRunner(), root=tmp_path)
    with pytest.raises(ValueError, match="absolute"):
        windows_install.install_service(["deskwarden.exe"], runner=FakeRunner(), registry=FakeRegistry())


# --- Windows -------------------------------------------------------------------------------------------------


class FakeRegistry:
    def __init__(self) -> None:
        self.values: dict[tuple[str, str, str], str] = {}

    def set_string(self, hive: str, key: str, name: str, value: str) -> None:
        self.values[(hive, key, name)] = value

    def delete_value(self, hive: str, key: str, name: str) -> bool:
        return self.values.pop((hive, key, name), None) is not None


def test_windows_install_registers_a_localsystem_service_and_the_helper() -> None:
    runner, registry = FakeRunner(), FakeRegistry()

    windows_install.install_service(WIN_EXE, runner=runner, registry=registry)

    create = runner.calls[0]
    assert create[:3] == ["sc.exe", "create", "DeskWarden"]
    options = dict(zip(create[3::2], create[4::2], strict=True))
    assert options["binPath="] == r'"C:\Program Files\DeskWarden\deskwarden.exe" service'
    assert options["start="] == "auto"
    assert options["obj="] == "LocalSystem"
    assert ["sc.exe", "failure", "DeskWarden", "reset=", "86400", "actions=", windows_install.FAILURE_ACTIONS] in (
        runner.calls
    )
    assert ["sc.exe", "sdset", "DeskWarden", windows_install.SERVICE_SDDL] in runner.calls
    assert runner.calls[-1] == ["sc.exe", "start", "DeskWarden"]
    assert registry.values == {("HKLM", RUN_KEY, RUN_VALUE): r'"C:\Program Files\DeskWarden\deskwarden.exe" agent'}


def test_windows_service_security_lets_only_administrators_stop_it() -> None:
    aces = {
        ace.rsplit(";", 1)[1]: ace.split(";")[2] for ace in windows_install.SERVICE_SDDL[2:].strip("()").split(")(")
    }
    assert set(aces) == {"SY", "BA", "IU", "SU", "AU"}
    for users in ("IU", "SU", "AU"):
        rights = {aces[users][i : i + 2] for i in range(0, len(aces[users]), 2)}
        assert rights.isdisjoint({"RP", "WP", "DT", "CR", "DC", "SD", "WD", "WO"}), users
        assert "LC" in rights, "status stays readable"
    assert "WP" in aces["BA"]


def test_windows_install_updates_an_existing_service_and_tolerates_it_running() -> None:
    runner = FakeRunner({("sc.exe", "create"): 1073, ("sc.exe", "start"): 1056})

    done = windows_install.install_service(WIN_EXE, runner=runner, registry=FakeRegistry())

    assert runner.calls[1][:3] == ["sc.exe", "config", "DeskWarden"]
    assert "binPath=" in runner.calls[1]
    assert done[0] == "service DeskWarden updated"


def test_windows_install_without_elevation_fails_clearly() -> None:
    runner = FakeRunner({("sc.exe", "create"): 5})

    with pytest.raises(ServiceInstallError, match=r"sc.exe create DeskWarden failed \(5\)"):
        windows_install.install_service(WIN_EXE, runner=runner, registry=FakeRegistry())


def test_windows_uninstall_stops_deletes_and_removes_the_run_value() -> None:
    registry = FakeRegistry()
    windows_install.install_service(WIN_EXE, runner=FakeRunner(), registry=registry)
    runner = FakeRunner()

    removed = windows_install.uninstall_service(runner=runner, registry=registry)

    assert runner.calls == [["sc.exe", "stop", "DeskWarden"], ["sc.exe", "delete", "DeskWarden"]]
    assert removed == ["service DeskWarden", rf"HKLM\{RUN_KEY}\{RUN_VALUE}"]
    gone = FakeRunner({("sc.exe", "stop"): 1060, ("sc.exe", "delete"): 1060})
    assert windows_install.uninstall_service(runner=gone, registry=registry) == []


# --- macOS ---------------------------------------------------------------------------------------------------

MAC_EXE = ["/Applications/DeskWarden.app/Contents/MacOS/deskwarden"]


def test_daemon_plist_keeps_the_service_alive_as_root() -> None:
    job = plistlib.loads(macos_install.daemon_plist(MAC_EXE).encode())

    assert job["Label"] == "org.deskwarden.service"
    assert job["ProgramArguments"] == [*MAC_EXE, "service"]
    assert job["RunAtLoad"] is True
    assert job["KeepAlive"] is True
    assert job["UserName"] == "root"
    assert job["AbandonProcessGroup"] is True


def test_agent_plist_starts_the_helper_in_gui_logins_only() -> None:
    job = plistlib.loads(macos_install.agent_plist([*MAC_EXE, "--x=<&>"]).encode())

    assert job["Label"] == "org.deskwarden.agent"
    assert job["ProgramArguments"] == [*MAC_EXE, "--x=<&>", "agent"]
    assert job["LimitLoadToSessionType"] == ["Aqua"]
    assert job["KeepAlive"] == {"SuccessfulExit": False}
    assert "UserName" not in job


def test_macos_install_into_an_image_writes_plists_only(tmp_path: Path) -> None:
    runner = FakeRunner()

    done = macos_install.install_service(MAC_EXE, runner=runner, root=tmp_path)

    daemon = tmp_path / "Library/LaunchDaemons/org.deskwarden.service.plist"
    agent = tmp_path / "Library/LaunchAgents/org.deskwarden.agent.plist"
    assert done == [str(daemon), str(agent)]
    assert runner.calls == []
    assert stat.S_IMODE(daemon.stat().st_mode) == 0o644
    assert plistlib.loads(daemon.read_bytes())["Label"] == "org.deskwarden.service"


def test_macos_install_bootstraps_the_daemon(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    runner = FakeRunner({("launchctl", "bootout"): 113})  # nothing loaded yet
    monkeypatch.setattr(macos_install, "under", lambda root, absolute: tmp_path / absolute.lstrip("/"))

    macos_install.install_service(MAC_EXE, runner=runner)

    daemon = tmp_path / "Library/LaunchDaemons/org.deskwarden.service.plist"
    assert runner.calls == [
        ["launchctl", "bootout", "system/org.deskwarden.service"],
        ["launchctl", "enable", "system/org.deskwarden.service"],
        ["launchctl", "bootstrap", "system", str(daemon)],
    ]


def test_macos_install_reports_a_refused_bootstrap(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    runner = FakeRunner({("launchctl", "bootstrap"): 5})
    monkeypatch.setattr(macos_install, "under", lambda root, absolute: tmp_path / absolute.lstrip("/"))

    with pytest.raises(ServiceInstallError, match="bootstrap"):
        macos_install.install_service(MAC_EXE, runner=runner)


def test_macos_uninstall_unloads_the_daemon_and_the_console_users_agent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(macos_install, "under", lambda root, absolute: tmp_path / absolute.lstrip("/"))
    macos_install.install_service(MAC_EXE, runner=FakeRunner())
    runner = FakeRunner()

    removed = macos_install.uninstall_service(runner=runner)

    assert ["launchctl", "bootout", "system/org.deskwarden.service"] in runner.calls
    assert ["launchctl", "bootout", "gui/501/org.deskwarden.agent"] in runner.calls
    assert len(removed) == 2
    assert not list((tmp_path / "Library/LaunchDaemons").iterdir())


# --- choosing ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("platform", ["linux", "darwin"])
def test_install_and_uninstall_choose_the_os_module(platform: str, tmp_path: Path) -> None:
    done = install(EXE, root=tmp_path, runner=FakeRunner(), platform=platform)
    removed = uninstall(root=tmp_path, runner=FakeRunner(), platform=platform)

    assert done[:2] == removed
    assert all(Path(path).is_relative_to(tmp_path) for path in removed)


def test_default_exe_argv_is_absolute() -> None:
    assert Path(default_exe_argv()[0]).is_absolute()
