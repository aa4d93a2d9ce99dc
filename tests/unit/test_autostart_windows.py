"""Windows autostart through its adapter: registry and schtasks faked, task XML parsed for real."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import pytest

from agent_app.core.autostart.model import TASK_NAME, CommandResult, LaunchSpec
from agent_app.core.autostart.windows import RUN_KEY, RUN_VALUE, WindowsAutostart, WinregRegistry, task_xml

NS = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}
SPEC = LaunchSpec(argv=(r"C:\Program Files\DeskWarden\deskwarden.exe", "agent", "--x=a b"), version="2.0.0")


class FakeRegistry:
    def __init__(self) -> None:
        self.values: dict[tuple[str, str, str], str] = {}

    def set_string(self, hive: str, key: str, name: str, value: str) -> None:
        self.values[(hive, key, name)] = value

    def delete_value(self, hive: str, key: str, name: str) -> bool:
        return self.values.pop((hive, key, name), None) is not None


class FakeSchtasks:
    def __init__(self, *, create_rc: int = 0) -> None:
        self.calls: list[list[str]] = []
        self.xml: str | None = None
        self._create_rc = create_rc

    def __call__(self, argv: Sequence[str]) -> CommandResult:
        self.calls.append(list(argv))
        if argv[1] == "/Create":
            self.xml = Path(argv[argv.index("/XML") + 1]).read_text(encoding="utf-16")
            return CommandResult(self._create_rc, "" if self._create_rc == 0 else "ERROR: Access is denied.")
        return CommandResult(0)


def test_per_user_registers_watchdog_task_and_starts_it(tmp_path: Path) -> None:
    registry, run = FakeRegistry(), FakeSchtasks()
    registry.set_string("HKCU", RUN_KEY, RUN_VALUE, "old")  # left by an older install
    adapter = WindowsAutostart(registry=registry, run=run, user_id=r"CORP\asha", scratch_dir=tmp_path)

    done = adapter.register(SPEC)

    assert run.calls[0][:4] == ["schtasks", "/Create", "/TN", TASK_NAME]
    assert ["schtasks", "/Run", "/TN", TASK_NAME] in run.calls
    assert registry.values == {}
    assert TASK_NAME in done[0]
    assert list(tmp_path.iterdir()) == []  # the XML scratch file is gone
    root = ET.fromstring(run.xml.encode("utf-16"))  # type: ignore[union-attr]  # noqa: S314 - our own template
    assert root.findtext("t:Settings/t:MultipleInstancesPolicy", namespaces=NS) == "IgnoreNew"
    assert root.findtext("t:Triggers/t:LogonTrigger/t:UserId", namespaces=NS) == r"CORP\asha"
    assert root.findtext("t:Triggers/t:LogonTrigger/t:Repetition/t:Interval", namespaces=NS) == "PT5M"
    assert root.findtext("t:Actions/t:Exec/t:Command", namespaces=NS) == SPEC.argv[0]
    assert root.findtext("t:Actions/t:Exec/t:Arguments", namespaces=NS) == 'agent "--x=a b"'


def test_per_user_falls_back_to_hkcu_run_when_task_refused() -> None:
    registry = FakeRegistry()
    adapter = WindowsAutostart(registry=registry, run=FakeSchtasks(create_rc=1), user_id="asha")

    done = adapter.register(SPEC)

    expected = r'"C:\Program Files\DeskWarden\deskwarden.exe" agent "--x=a b"'
    assert registry.values == {("HKCU", RUN_KEY, RUN_VALUE): expected}
    assert done == [rf"HKCU\{RUN_KEY}\{RUN_VALUE}"]


def test_all_users_uses_hklm_run_and_no_task() -> None:
    registry, run = FakeRegistry(), FakeSchtasks()
    spec = LaunchSpec(argv=SPEC.argv, version="2", all_users=True)
    adapter = WindowsAutostart(registry=registry, run=run, user_id="asha")

    adapter.register(spec)

    assert ("HKLM", RUN_KEY, RUN_VALUE) in registry.values
    assert run.calls == []
    assert adapter.unregister(spec) == [rf"HKLM\{RUN_KEY}\{RUN_VALUE}"]
    assert registry.values == {}


def test_unregister_ends_and_deletes_task_and_run_value() -> None:
    registry, run = FakeRegistry(), FakeSchtasks()
    registry.set_string("HKCU", RUN_KEY, RUN_VALUE, "x")
    adapter = WindowsAutostart(registry=registry, run=run, user_id="asha")

    removed = adapter.unregister(SPEC)

    assert ["schtasks", "/End", "/TN", TASK_NAME] in run.calls
    assert ["schtasks", "/Delete", "/TN", TASK_NAME, "/F"] in run.calls
    assert len(removed) == 2
    assert registry.values == {}


def test_task_xml_escapes_markup_in_paths() -> None:
    spec = LaunchSpec(argv=(r"C:\R&D <x>\deskwarden.exe", "agent"), version="1")
    root = ET.fromstring(task_xml(spec, user_id="a&b").encode("utf-16"))  # noqa: S314 - our own template
    assert root.findtext("t:Actions/t:Exec/t:Command", namespaces=NS) == r"C:\R&D <x>\deskwarden.exe"


def test_real_registry_refuses_off_windows() -> None:
    import sys

    if sys.platform == "win32":
        pytest.skip("this checks the guard on other systems")
    with pytest.raises(RuntimeError, match="only available on Windows"):
        WinregRegistry().set_string("HKCU", RUN_KEY, RUN_VALUE, "x")
