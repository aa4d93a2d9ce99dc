"""Linux autostart: real .desktop and systemd --user files under a temporary XDG_CONFIG_HOME, systemctl faked."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from agent_app.core.autostart.linux import LinuxAutostart, desktop_quote, systemd_quote
from agent_app.core.autostart.model import CommandResult, LaunchSpec


class FakeSystemctl:
    def __init__(self, *, fail: Sequence[str] = ()) -> None:
        self.calls: list[list[str]] = []
        self._fail = set(fail)

    def __call__(self, argv: Sequence[str]) -> CommandResult:
        self.calls.append(list(argv))
        verb = next((a for a in argv[1:] if not a.startswith("-")), "")
        return CommandResult(1, "Failed to connect to bus") if verb in self._fail else CommandResult(0)


SPEC = LaunchSpec(
    argv=("/opt/Desk Warden/deskwarden", "agent"),
    version="9.9.9",
    env={"DESKWARDEN_HOME": "/home/a b/state%1"},
)


def exec_words(exec_line: str) -> list[str]:
    """Split an Exec value the way the Desktop Entry spec says: string unescape, then quoted words, then %%."""
    text = exec_line.replace("\\\\", "\\")
    words: list[str] = []
    current: list[str] | None = None
    quoted = False
    i = 0
    while i < len(text):
        c = text[i]
        if quoted:
            if c == "\\" and i + 1 < len(text) and text[i + 1] in '"`$\\':
                current.append(text[i + 1])  # type: ignore[union-attr]
                i += 1
            elif c == '"':
                quoted = False
            else:
                current.append(c)  # type: ignore[union-attr]
        elif c == '"':
            quoted = True
            current = current if current is not None else []
        elif c == " ":
            if current is not None:
                words.append("".join(current))
            current = None
        else:
            current = (current if current is not None else []) + [c]
        i += 1
    if current is not None:
        words.append("".join(current))
    return [w.replace("%%", "%") for w in words]


def _desktop(path: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path, encoding="utf-8")
    return parser["Desktop Entry"]


def test_register_with_systemd_writes_unit_and_desktop_that_starts_it(tmp_path: Path) -> None:
    run = FakeSystemctl()
    adapter = LinuxAutostart(config_home=tmp_path, run=run, systemd=True)

    done = adapter.register(SPEC)

    desktop = tmp_path / "autostart" / "deskwarden.desktop"
    unit = tmp_path / "systemd" / "user" / "deskwarden.service"
    assert str(desktop) in done
    assert str(unit) in done
    entry = _desktop(desktop)
    assert entry["Type"] == "Application"
    assert entry["Exec"] == "systemctl --user start deskwarden.service"
    assert entry["X-DeskWarden-Version"] == "9.9.9"
    text = unit.read_text(encoding="utf-8")
    assert 'ExecStart="/opt/Desk Warden/deskwarden" agent' in text
    assert 'Environment="DESKWARDEN_HOME=/home/a b/state%%1"' in text
    assert "Restart=always" in text
    assert "${" not in text
    assert ["systemctl", "--user", "daemon-reload"] in run.calls
    assert ["systemctl", "--user", "enable", "deskwarden.service"] in run.calls


def test_register_without_systemd_starts_agent_from_desktop_entry(tmp_path: Path) -> None:
    run = FakeSystemctl()
    adapter = LinuxAutostart(config_home=tmp_path, run=run, systemd=False)

    adapter.register(SPEC)

    assert not (tmp_path / "systemd").exists()
    assert run.calls == []
    exec_line = _desktop(tmp_path / "autostart" / "deskwarden.desktop")["Exec"]
    assert exec_words(exec_line) == ["env", "DESKWARDEN_HOME=/home/a b/state%1", "/opt/Desk Warden/deskwarden", "agent"]


def test_unit_enable_failure_falls_back_to_direct_desktop_entry(tmp_path: Path) -> None:
    adapter = LinuxAutostart(config_home=tmp_path, run=FakeSystemctl(fail=["enable"]), systemd=True)

    done = adapter.register(SPEC)

    assert not (tmp_path / "systemd" / "user" / "deskwarden.service").exists()
    assert done == [str(tmp_path / "autostart" / "deskwarden.desktop")]
    assert "deskwarden" in _desktop(tmp_path / "autostart" / "deskwarden.desktop")["Exec"].split()[-2]


def test_systemd_detected_through_user_manager(tmp_path: Path) -> None:
    if shutil.which("systemctl") is None:
        pytest.skip("systemctl not installed")
    assert LinuxAutostart(config_home=tmp_path, run=FakeSystemctl()).uses_systemd(all_users=False)
    assert not LinuxAutostart(config_home=tmp_path, run=FakeSystemctl(fail=["show-environment"])).uses_systemd(
        all_users=False
    )


def test_unregister_removes_both_files_and_disables(tmp_path: Path) -> None:
    run = FakeSystemctl()
    adapter = LinuxAutostart(config_home=tmp_path, run=run, systemd=True)
    adapter.register(SPEC)
    run.calls.clear()

    removed = adapter.unregister(SPEC)

    assert sorted(removed) == sorted(
        [str(tmp_path / "autostart" / "deskwarden.desktop"), str(tmp_path / "systemd" / "user" / "deskwarden.service")]
    )
    assert not (tmp_path / "autostart" / "deskwarden.desktop").exists()
    assert not (tmp_path / "systemd" / "user" / "deskwarden.service").exists()
    assert ["systemctl", "--user", "disable", "--now", "deskwarden.service"] in run.calls
    assert adapter.unregister(SPEC) == []


def test_all_users_writes_under_system_config_and_enables_globally(tmp_path: Path) -> None:
    run = FakeSystemctl()
    adapter = LinuxAutostart(config_home=tmp_path / "user", system_config=tmp_path / "etc", run=run, systemd=True)
    spec = LaunchSpec(argv=("/opt/deskwarden/deskwarden", "agent"), version="1", all_users=True)

    adapter.register(spec)

    assert (tmp_path / "etc" / "xdg" / "autostart" / "deskwarden.desktop").is_file()
    assert (tmp_path / "etc" / "systemd" / "user" / "deskwarden.service").is_file()
    assert not (tmp_path / "user").exists()
    assert run.calls == [["systemctl", "--global", "enable", "deskwarden.service"]]
    adapter.unregister(spec)
    assert not (tmp_path / "etc" / "xdg" / "autostart" / "deskwarden.desktop").exists()


def test_default_config_home_follows_xdg_config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert LinuxAutostart().desktop_path(all_users=False) == tmp_path / "cfg" / "autostart" / "deskwarden.desktop"


@pytest.mark.parametrize("arg", ["plain", "with space", 'quo"te', "back\\slash", "dollar$HOME", "pct%u", "tick`x`"])
def test_desktop_quote_round_trips(arg: str) -> None:
    quoted = desktop_quote(arg)
    assert exec_words(quoted) == [arg]


@pytest.mark.parametrize("arg", ["plain", "with space", 'quo"te', "back\\slash", "dollar$HOME", "pct%u"])
def test_systemd_quote_survives_systemd_parsing(arg: str, tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    unit = tmp_path / "q.service"
    unit.write_text(f"[Service]\nExecStart=/bin/true {systemd_quote(arg)}\n", encoding="utf-8")
    # `verify` parses ExecStart and fails on unbalanced quoting or unknown specifiers.
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
