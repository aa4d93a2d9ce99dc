"""Screen-capture collector logic through fake process tables and key sources (no X, no psutil)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest

from collectors.base import Collector, CollectorContext, CollectorState, Decision
from collectors.capture import (
    HotkeyTarget,
    ScreenCaptureCollector,
    ToolTarget,
    create,
    is_desk_account,
    login_of,
    same_user,
)
from collectors.capture.hotkeys import ShortcutDetector, await_pynput_ready, normalize_key
from collectors.capture.known_tools import ToolMatcher, default_tool_names
from collectors.capture.process_scan import AdaptiveInterval, ProcessInfo, ProcessScanner, ScanResult
from policy_client.schema import Action, Controls, EventKind, PolicyDocument, ScreenCaptureControl, Severity
from tests.support.sink import Sink


def state_of(collector: Collector) -> CollectorState:
    """The collector's state now (a call, so the type checker does not carry an earlier answer forward)."""
    return collector.state


class FakeTable:
    def __init__(self) -> None:
        self.procs: dict[int, ProcessInfo] = {}
        self.inspected: list[int] = []
        self.terminated: list[int] = []
        self.terminate_result: str | Exception = "terminated"
        self.lock = threading.Lock()

    def add(
        self, pid: int, name: str, *, exe: str = "", user: str | None = "ann", created: float | None = None
    ) -> None:
        with self.lock:
            self.procs[pid] = ProcessInfo(pid, name, exe, user, created if created is not None else time.time())

    def pids(self) -> list[int]:
        with self.lock:
            return list(self.procs)

    def inspect(self, pid: int) -> ProcessInfo | None:
        self.inspected.append(pid)
        with self.lock:
            return self.procs.get(pid)

    def terminate(self, pid: int, create_time: float, *, timeout: float) -> str:
        if isinstance(self.terminate_result, Exception):
            raise self.terminate_result
        self.terminated.append(pid)
        return self.terminate_result


class FakeKeys:
    def __init__(self, *, fail: bool = False, can_suppress: bool = False) -> None:
        self.fail = fail
        self.can_suppress = can_suppress
        self.press: Callable[[str | None], None] | None = None
        self.release: Callable[[str | None], None] | None = None
        self.running = False
        self.suppress = False

    def start(self, on_press: Callable[[str | None], None], on_release: Callable[[str | None], None]) -> None:
        if self.fail:
            raise OSError("no display")
        self.press, self.release, self.running = on_press, on_release, True

    def stop(self) -> None:
        self.running = False

    def set_suppress_print_screen(self, suppress: bool) -> bool:
        self.suppress = suppress and self.can_suppress
        return self.suppress

    def tap(self, *keys: str | None) -> None:
        assert self.press is not None
        assert self.release is not None
        for key in keys:
            self.press(key)
        for key in reversed(keys):
            self.release(key)


def policy(**control: object) -> PolicyDocument:
    return PolicyDocument(version=4, controls=Controls(screen_capture=ScreenCaptureControl(**control)))  # type: ignore[arg-type]


def decision(action: str) -> Decision:
    return Decision(action=action, rule_id="capture", policy_version=4, severity=Severity.high)  # type: ignore[arg-type]


@pytest.fixture
def make() -> Iterator[Callable[..., tuple[ScreenCaptureCollector, FakeTable, FakeKeys, Sink]]]:
    made: list[ScreenCaptureCollector] = []

    def build(
        doc: PolicyDocument | None = None, *, keys: FakeKeys | None = None, platform: str = "linux", **kwargs: object
    ) -> tuple[ScreenCaptureCollector, FakeTable, FakeKeys, Sink]:
        table, fake_keys, sink = FakeTable(), keys or FakeKeys(), Sink()
        collector = ScreenCaptureCollector(
            processes=table,
            keys=fake_keys,
            platform=platform,
            agent_user="ann",
            interval=AdaptiveInterval(fast=0.01, slow=0.02),
            **kwargs,  # type: ignore[arg-type]
        )
        collector.start(sink, doc or policy())
        assert collector.wait_ready(3.0)
        made.append(collector)
        return collector, table, fake_keys, sink

    yield build
    for collector in made:
        collector.stop()


# --- detector and key normalisation ----------------------------------------------------------------


def test_shortcuts_per_platform_and_nothing_else() -> None:
    win = ShortcutDetector(platform="win32")
    assert win.press("print_screen") == "PrintScreen"
    assert win.press("print_screen") is None  # auto-repeat while held
    win.release("print_screen")
    assert win.press("s") is None
    win.release("s")
    for mod in ("super", "shift"):
        win.press(mod)
    assert win.press("s") == "Win+Shift+S"
    assert win.press("3") is None
    mac = ShortcutDetector(platform="darwin")
    mac.press("super")
    mac.press("shift")
    assert [mac.press(k) for k in ("3", "4", "5")] == ["Cmd+Shift+3", "Cmd+Shift+4", "Cmd+Shift+5"]
    linux = ShortcutDetector(platform="linux")
    linux.press("super")
    linux.press("shift")
    assert linux.press("s") is None
    assert linux.press(None) is None


def test_normalize_key_keeps_only_modifiers_and_triggers() -> None:
    assert normalize_key(SimpleNamespace(name="print_screen")) == "print_screen"
    assert normalize_key(SimpleNamespace(name="cmd_r")) == "super"
    assert normalize_key(SimpleNamespace(name="enter")) is None
    assert normalize_key(SimpleNamespace(char="a", vk=0x61)) is None
    assert normalize_key(SimpleNamespace(char="S", vk=0x53)) == "s"
    assert normalize_key(SimpleNamespace(char="#", vk=0x23)) == "3"
    assert normalize_key(SimpleNamespace(char=None, vk=0x53), platform="win32") == "s"
    assert normalize_key(SimpleNamespace(char=None, vk=21), platform="darwin") == "4"
    assert normalize_key(SimpleNamespace(char=None, vk=0x41), platform="win32") is None
    assert normalize_key(object()) is None


# --- tool matching and scanning ----------------------------------------------------------------------


def test_tool_matcher_defaults_policy_names_and_paths() -> None:
    assert "SnippingTool.exe" in default_tool_names("win32")
    assert "flameshot" in default_tool_names("linux")
    assert "screencapture" in default_tool_names("darwin")
    win = ToolMatcher.for_policy(ScreenCaptureControl(process_names=["Grabber.exe"]), platform="win32")
    assert win.matches("snippingtool.EXE", "")
    assert win.matches("grabber.exe", "")
    assert win.matches("", "C:\\Program Files\\ShareX\\ShareX.exe")
    assert not win.matches("notepad.exe", "C:\\Windows\\notepad.exe")
    linux = ToolMatcher.for_policy(ScreenCaptureControl(executable_paths=["/opt/cap/bin/run"]), platform="linux")
    assert linux.matches("run", "/opt/cap/bin/run")
    assert not linux.matches("run", "/opt/other/run")


def test_scanner_inspects_only_new_pids_and_reports_once() -> None:
    table = FakeTable()
    for pid in range(100, 400):
        table.add(pid, f"proc{pid}", created=time.time() - 3600)
    scanner = ProcessScanner(table=table)
    matches = ToolMatcher.for_policy(ScreenCaptureControl(), platform="linux")

    def is_tool(info: ProcessInfo) -> bool:
        return matches.matches(info.name, info.exe)

    assert scanner.scan(is_tool).hits == []
    assert len(table.inspected) == 300
    table.inspected.clear()
    table.add(500, "flameshot", created=time.time() - 3600)
    result = scanner.scan(is_tool)
    assert [h.pid for h in result.hits] == [500]
    assert table.inspected == [500]
    table.inspected.clear()
    assert scanner.scan(is_tool).hits == []
    assert table.inspected == []


def test_scanner_rechecks_young_processes_that_exec_a_tool() -> None:
    table = FakeTable()
    now = [1000.0]
    scanner = ProcessScanner(table=table, clock=lambda: now[0])
    table.add(10, "bash", created=999.9)  # fork of a shell, not yet exec'd
    matcher = ToolMatcher.for_policy(ScreenCaptureControl(), platform="linux")
    assert scanner.scan(lambda i: matcher.matches(i.name, i.exe)).hits == []
    table.add(10, "flameshot", created=999.9)  # same process after exec
    now[0] = 1000.5
    assert [h.name for h in scanner.scan(lambda i: matcher.matches(i.name, i.exe)).hits] == ["flameshot"]
    now[0] = 1010.0
    table.inspected.clear()
    scanner.scan(lambda i: matcher.matches(i.name, i.exe))
    assert table.inspected == []  # old processes are not looked at again


def test_adaptive_interval_speeds_up_and_backs_off() -> None:
    interval = AdaptiveInterval(fast=0.5, slow=1.5)
    quiet = ScanResult()
    values = [interval.after(quiet) for _ in range(5)]
    assert values == sorted(values)
    assert values[-1] == 1.5
    assert interval.after(ScanResult(hits=[ProcessInfo(1, "x", "", None, 0.0)])) == 0.5
    interval.after(quiet)
    assert interval.after(ScanResult(new_pids=5)) == 0.5


def test_same_user() -> None:
    assert same_user("CORP\\Ann", "ann")
    assert same_user("ann", "ann")
    assert not same_user("root", "ann")
    assert not same_user(None, "ann")


# --- collector ---------------------------------------------------------------------------------------


def test_tool_start_is_reported_with_target(
    make: Callable[..., tuple[ScreenCaptureCollector, FakeTable, FakeKeys, Sink]],
) -> None:
    _collector, table, _keys, sink = make()
    table.add(42, "flameshot", exe="/usr/bin/flameshot", user="ann")
    table.add(43, "vim", exe="/usr/bin/vim")
    table.add(44, "ksnip", exe="/usr/bin/ksnip", user="root")
    items = sink.wait_count(2)
    by_pid = {o.draft.data["pid"]: o for o in items}
    assert set(by_pid) == {42, 44}
    assert by_pid[42].draft.kind is EventKind.capture_tool_started
    assert by_pid[42].draft.data == {"name": "flameshot", "exe": "/usr/bin/flameshot", "pid": 42, "same_user": True}
    assert by_pid[44].draft.data["same_user"] is False
    target = by_pid[42].target
    assert isinstance(target, ToolTarget)
    assert target.pid == 42


def test_terminate_outcomes(make: Callable[..., tuple[ScreenCaptureCollector, FakeTable, FakeKeys, Sink]]) -> None:
    collector, table, _keys, _sink = make()
    table.add(42, "flameshot", created=1.0)
    table.add(44, "ksnip", user="root", created=1.0)
    mine = ToolTarget(pid=42, create_time=1.0, name="flameshot", may_terminate=True)
    assert collector.enforce(mine, decision("terminate")).action is Action.terminated
    assert collector.enforce(mine, decision("block")).action is Action.terminated
    assert table.terminated == [42, 42]
    theirs = ToolTarget(pid=44, create_time=1.0, name="ksnip", may_terminate=False)
    assert collector.enforce(theirs, decision("terminate")).action is Action.failed
    assert table.terminated == [42, 42]
    table.terminate_result = "exited"
    assert collector.enforce(mine, decision("terminate")).data == {"already_exited": True}
    table.terminate_result = PermissionError("not allowed to terminate pid 42")
    outcome = collector.enforce(mine, decision("terminate"))
    assert outcome.action is Action.failed
    assert "not allowed" in str(outcome.data["error"])
    assert collector.enforce(mine, decision("warn")).action is Action.warned
    assert collector.enforce(mine, decision("audit")).action is Action.observed


def test_hotkey_reported_and_other_keys_ignored(
    make: Callable[..., tuple[ScreenCaptureCollector, FakeTable, FakeKeys, Sink]],
) -> None:
    _collector, _table, keys, sink = make()
    assert keys.running
    keys.tap(None, None, None)  # ordinary keys arrive as None
    keys.tap("shift", "s")
    keys.tap("print_screen")
    [obs] = sink.wait_count(1)
    assert obs.draft.kind is EventKind.capture_hotkey
    assert obs.draft.data == {"shortcut": "PrintScreen"}
    assert obs.target == HotkeyTarget("PrintScreen")


def test_clear_runs_after_delay_off_the_calling_thread(
    make: Callable[..., tuple[ScreenCaptureCollector, FakeTable, FakeKeys, Sink]],
) -> None:
    cleared = threading.Event()
    threads: list[str] = []

    def clear() -> bool:
        threads.append(threading.current_thread().name)
        cleared.set()
        return True

    collector, *_ = make(clear_clipboard_image=clear, clipboard_delay=0.05)
    outcome = collector.enforce(HotkeyTarget("PrintScreen"), decision("clear"))
    assert outcome.action is Action.cleared
    assert outcome.data["delay_ms"] == 50
    assert cleared.wait(3.0)
    assert threads != [threading.current_thread().name]


def test_clear_without_clipboard_access_fails(
    make: Callable[..., tuple[ScreenCaptureCollector, FakeTable, FakeKeys, Sink]],
) -> None:
    collector, *_ = make()
    assert collector.enforce(HotkeyTarget("PrintScreen"), decision("clear")).action is Action.failed


def test_windows_block_mode_suppresses_print_screen(
    make: Callable[..., tuple[ScreenCaptureCollector, FakeTable, FakeKeys, Sink]],
) -> None:
    collector, _table, keys, sink = make(policy(mode="block"), keys=FakeKeys(can_suppress=True), platform="win32")
    assert keys.suppress
    keys.tap("print_screen")
    [obs] = sink.wait_count(1)
    assert obs.draft.data == {"shortcut": "PrintScreen", "suppressed": True}
    outcome = collector.enforce(obs.target, decision("block"))
    assert outcome == type(outcome)(Action.blocked, {"suppressed": True})
    collector.reconfigure(policy(mode="audit"))
    assert not keys.suppress


def test_hotkeys_unavailable_does_not_stop_process_scan(
    make: Callable[..., tuple[ScreenCaptureCollector, FakeTable, FakeKeys, Sink]],
) -> None:
    collector, table, _keys, sink = make(keys=FakeKeys(fail=True))
    assert not collector.hotkeys_running
    assert collector.hotkeys_error == "no display"
    table.add(7, "scrot")
    assert sink.wait_count(1)[0].draft.data["name"] == "scrot"


def test_reconfigure_turns_hotkeys_off_and_off_mode_reports_nothing(
    make: Callable[..., tuple[ScreenCaptureCollector, FakeTable, FakeKeys, Sink]],
) -> None:
    collector, table, keys, sink = make()
    collector.reconfigure(policy(mode="off"))
    assert not keys.running
    table.add(8, "flameshot")
    table.add(9, "marker")
    deadline = time.monotonic() + 3
    while 9 not in table.inspected:
        assert time.monotonic() < deadline
        threading.Event().wait(0.01)
    assert sink.items == []


# --- roles: the service scans every desk user's processes, the helper watches keys ----------------------------

CTX_SERVICE = CollectorContext(role="service", hash_key=b"k" * 32)


@pytest.fixture
def service() -> Iterator[tuple[ScreenCaptureCollector, FakeTable, FakeKeys, Sink]]:
    table, keys, sink = FakeTable(), FakeKeys(), Sink()
    collector = create(CTX_SERVICE, processes=table, keys=keys, interval=AdaptiveInterval(fast=0.01, slow=0.02))
    assert isinstance(collector, ScreenCaptureCollector)
    collector.start(sink, policy(mode="block"))
    assert collector.wait_ready(3.0)
    yield collector, table, keys, sink
    collector.stop()


def _add(table: FakeTable, pid: int, name: str, user: str | None, uid: int | None) -> None:
    with table.lock:
        table.procs[pid] = ProcessInfo(pid, name, f"/usr/bin/{name}", user, 1000.0, uid)


def test_service_reports_each_tool_under_its_owner_and_never_hooks_the_keyboard(
    service: tuple[ScreenCaptureCollector, FakeTable, FakeKeys, Sink],
) -> None:
    _collector, table, keys, sink = service
    assert not keys.running
    _add(table, 50, "flameshot", "ann", 1001)
    _add(table, 51, "flameshot", "root", 0)
    _add(table, 52, "scrot", "nobody", 65534)
    _add(table, 53, "ksnip", None, None)  # owner unknown (access denied)
    by_pid = {o.draft.data["pid"]: o for o in sink.wait_count(4)}
    assert {pid: o.draft.user for pid, o in by_pid.items()} == {50: "ann", 51: "root", 52: "nobody", 53: ""}
    assert {pid: o.draft.data["desk_user"] for pid, o in by_pid.items()} == {50: True, 51: False, 52: False, 53: False}
    assert "same_user" not in by_pid[50].draft.data
    target = by_pid[50].target
    assert isinstance(target, ToolTarget)
    assert (target.user, target.may_terminate) == ("ann", True)


def test_service_terminates_a_desk_users_tool_but_never_a_system_accounts(
    service: tuple[ScreenCaptureCollector, FakeTable, FakeKeys, Sink],
) -> None:
    collector, table, _keys, sink = service
    _add(table, 60, "flameshot", "ann", 1001)
    _add(table, 61, "flameshot", "root", 0)
    _add(table, 62, "flameshot", "gdm", 120)
    by_pid = {o.draft.data["pid"]: o for o in sink.wait_count(3)}
    assert collector.enforce(by_pid[60].target, decision("terminate")).action is Action.terminated
    for pid in (61, 62):
        outcome = collector.enforce(by_pid[pid].target, decision("block"))
        assert outcome.action is Action.failed
        assert "system account" in str(outcome.data["error"])
    assert table.terminated == [60]


def test_service_checks_the_process_again_before_terminating(
    service: tuple[ScreenCaptureCollector, FakeTable, FakeKeys, Sink],
) -> None:
    collector, table, _keys, sink = service
    _add(table, 70, "flameshot", "ann", 1001)
    [obs] = sink.wait_count(1)
    with table.lock:  # the same process now runs a setuid-root program
        table.procs[70] = ProcessInfo(70, "passwd", "/usr/bin/passwd", "root", 1000.0, 0)
    assert collector.enforce(obs.target, decision("terminate")).action is Action.failed
    with table.lock:  # the pid now belongs to a younger process
        table.procs[70] = ProcessInfo(70, "flameshot", "/usr/bin/flameshot", "ann", 2000.0, 1001)
    outcome = collector.enforce(obs.target, decision("terminate"))
    assert outcome.action is Action.failed
    assert "reused" in str(outcome.data["error"])
    with table.lock:
        del table.procs[70]
    assert collector.enforce(obs.target, decision("terminate")).data == {"already_exited": True}
    assert table.terminated == []


def test_the_service_never_terminates_itself() -> None:
    table, sink = FakeTable(), Sink()
    collector = ScreenCaptureCollector(
        processes=table,
        watch_hotkeys=False,
        across_users=True,
        own_pid=80,
        interval=AdaptiveInterval(fast=0.01, slow=0.02),
    )
    collector.start(sink, policy(mode="block"))
    try:
        _add(table, 80, "flameshot", "ann", 1001)  # demo mode: the service runs as a desk user
        [obs] = sink.wait_count(1)
        assert obs.draft.data["desk_user"] is False
        assert collector.enforce(obs.target, decision("terminate")).action is Action.failed
    finally:
        collector.stop()


@pytest.mark.parametrize(
    ("username", "uid", "platform", "desk"),
    [
        ("ann", 1000, "linux", True),
        ("root", 0, "linux", False),
        ("systemd-network", 998, "linux", False),
        ("nobody", 65534, "linux", False),
        ("ann", None, "linux", False),
        (None, 1001, "linux", False),
        ("ann", 501, "darwin", True),
        ("_windowserver", 88, "darwin", False),
        ("nobody", 4294967294, "darwin", False),
        ("CORP\\ann", None, "win32", True),
        ("NT AUTHORITY\\SYSTEM", None, "win32", False),
        ("NT AUTHORITY\\LOCAL SERVICE", None, "win32", False),
        ("NT AUTHORITY\\NETWORK SERVICE", None, "win32", False),
        ("Window Manager\\DWM-1", None, "win32", False),
        ("Font Driver Host\\UMFD-0", None, "win32", False),
        ("CORP\\HOST01$", None, "win32", False),
    ],
)
def test_desk_accounts(username: str | None, uid: int | None, platform: str, desk: bool) -> None:
    assert is_desk_account(ProcessInfo(1, "x", "", username, 0.0, uid), platform=platform) is desk


def test_login_of() -> None:
    assert login_of("CORP\\ann") == "ann"
    assert login_of("ann") == "ann"
    assert login_of(None) == ""


@pytest.fixture
def helper() -> Iterator[Callable[..., tuple[ScreenCaptureCollector, FakeKeys, Sink]]]:
    made: list[ScreenCaptureCollector] = []

    def build(
        doc: PolicyDocument | None = None, *, keys: FakeKeys | None = None, clear: Callable[[], bool] | None = None
    ) -> tuple[ScreenCaptureCollector, FakeKeys, Sink]:
        fake_keys, sink = keys or FakeKeys(), Sink()
        ctx = CollectorContext(role="helper", hash_key=b"k" * 32, clear_clipboard_image=clear)
        collector = create(ctx, processes=FakeTable(), keys=fake_keys)
        assert isinstance(collector, ScreenCaptureCollector)
        collector.start(sink, doc or policy())
        made.append(collector)
        return collector, fake_keys, sink

    yield build
    for collector in made:
        collector.stop()


def test_helper_watches_hotkeys_without_a_scanner_thread(
    helper: Callable[..., tuple[ScreenCaptureCollector, FakeKeys, Sink]],
) -> None:
    before = {t.name for t in threading.enumerate()}
    collector, keys, sink = helper()
    assert {t.name for t in threading.enumerate()} == before
    assert state_of(collector) is CollectorState.running
    assert collector.probe().available
    keys.tap("print_screen")
    [obs] = sink.wait_count(1)
    assert (obs.collector_id, obs.draft.kind, obs.draft.user) == ("screen_capture", EventKind.capture_hotkey, "")
    outcome = collector.enforce(ToolTarget(pid=1, create_time=0.0, name="x", may_terminate=True), decision("block"))
    assert outcome.action is Action.failed
    collector.stop()
    assert state_of(collector) is CollectorState.stopped


def test_helper_clears_a_screenshot_through_the_context(
    helper: Callable[..., tuple[ScreenCaptureCollector, FakeKeys, Sink]],
) -> None:
    cleared = threading.Event()

    def clear() -> bool:
        cleared.set()
        return True

    collector, keys, sink = helper(clear=clear)
    keys.tap("print_screen")
    [obs] = sink.wait_count(1)
    assert collector.enforce(obs.target, decision("clear")).action is Action.cleared
    assert cleared.wait(3.0)


def test_helper_without_a_keyboard_hook_is_unavailable_and_off_when_policy_says_so(
    helper: Callable[..., tuple[ScreenCaptureCollector, FakeKeys, Sink]],
) -> None:
    collector, _keys, _sink = helper(keys=FakeKeys(fail=True))
    assert state_of(collector) is CollectorState.unavailable
    assert collector.unavailable_reason == "no display"
    collector.reconfigure(policy(hotkeys=False))
    assert state_of(collector) is CollectorState.off
    working, keys, _sink = helper(policy(hotkeys=False))
    assert state_of(working) is CollectorState.off
    working.reconfigure(policy(hotkeys=True))
    assert keys.running
    assert state_of(working) is CollectorState.running


def test_a_process_whose_name_fails_with_an_os_error_is_skipped_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    """psutil raises a bare OSError (WinError 87 under Wine 8) for some processes; off Windows there is no other
    name source, so that pid is skipped and the scan goes on (on Windows, collectors/capture/windows_process.py
    answers instead: tests/windows)."""
    from collectors.capture import process_scan

    class Unreadable:
        def __init__(self, pid: int) -> None:
            self.pid = pid

        def oneshot(self) -> contextlib.AbstractContextManager[None]:
            return contextlib.nullcontext()

        def create_time(self) -> float:
            return 0.0

        def name(self) -> str:
            raise OSError(22, "[WinError 87] Invalid parameter: '(originated from NtQuerySystemInformation)'")

    monkeypatch.setattr(process_scan.psutil, "Process", Unreadable)
    assert process_scan.PsutilProcessTable().inspect(4) is None


class _ListenerLike(threading.Thread):
    """pynput's ready protocol (`_condition`, `_ready`, `running`) around a body that may raise before it is ready."""

    def __init__(self, *, fail: bool) -> None:
        super().__init__(daemon=True)
        self._condition = threading.Condition()
        self._ready = False
        self._fail = fail
        self.running = False

    def run(self) -> None:
        if self._fail:
            return  # pynput's X backend raises here on a broken display: the thread ends without marking ready
        self.running = True
        with self._condition:
            self._ready = True
            self._condition.notify()


def test_a_listener_that_dies_before_it_is_ready_is_reported_not_waited_for_forever() -> None:
    listener = _ListenerLike(fail=True)
    listener.start()
    began = time.monotonic()
    assert await_pynput_ready(listener, timeout=30.0) is False
    listener.join()
    assert time.monotonic() - began < 5.0  # noticed the dead thread, did not sit out the timeout


def test_a_listener_that_becomes_ready_is_waited_for() -> None:
    listener = _ListenerLike(fail=False)
    listener.start()
    assert await_pynput_ready(listener, timeout=30.0) is True
    listener.join()
