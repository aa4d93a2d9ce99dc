"""ScreenCaptureCollector: capture tools by process scan and capture shortcuts by keyboard hook.

Started and stopped from the main thread of the process it runs in. In the service it only scans processes
(of every desk user); in the session helper it only watches capture shortcuts. The collector thread runs the
process scanner; the key source's own thread reports shortcuts; both call `sink.emit`. The pipeline thread
calls `enforce` (terminate a tool, clear an image left on the clipboard).
"""

from __future__ import annotations

import getpass
import logging
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from collectors.base import Collector, CollectorState, Decision, EventSink, Outcome, Probe
from collectors.capture.hotkeys import KeySource, PynputKeySource, ShortcutDetector, Token
from collectors.capture.known_tools import ToolMatcher, default_tool_names
from collectors.capture.process_scan import (
    AdaptiveInterval,
    ProcessInfo,
    ProcessScanner,
    ProcessTable,
    PsutilProcessTable,
)
from policy_client.schema import Action, EventDraft, EventKind, PolicyDocument, Severity

__all__ = [
    "HotkeyTarget",
    "ScreenCaptureCollector",
    "ToolTarget",
    "default_tool_names",
    "is_desk_account",
    "login_of",
    "same_user",
]

log = logging.getLogger(__name__)

NOBODY_UID = 65534
"""`nobody` on Linux; macOS's `nobody` (-2) shows as 4294967294. Neither is a desk account."""
_WINDOWS_SERVICE_ACCOUNTS = ("nt authority\\", "font driver host\\", "window manager\\")
"""SYSTEM, LOCAL SERVICE and NETWORK SERVICE live under NT AUTHORITY; UMFD-n and DWM-n under the other two."""


@dataclass(frozen=True, slots=True)
class ToolTarget:
    """Enough to terminate exactly the process that was seen (pid plus start time against reuse)."""

    pid: int
    create_time: float
    name: str
    may_terminate: bool
    """Decided when the tool was seen: the agent's own user, or (in the service) a desk user's process."""
    user: str = ""


@dataclass(frozen=True, slots=True)
class HotkeyTarget:
    shortcut: str
    suppressed: bool = False


def _current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def default_min_desk_uid(platform: str = sys.platform) -> int:
    """The first uid of a person's account: 501 on macOS, 1000 on Linux (UID_MIN of login.defs)."""
    return 501 if platform == "darwin" else 1000


def is_desk_account(info: ProcessInfo, *, platform: str = sys.platform, min_uid: int | None = None) -> bool:
    """True when `info` runs under a person's account, never a system or service account (root, daemons,
    nobody; SYSTEM, LOCAL SERVICE, NETWORK SERVICE). An owner the OS would not tell is not a desk account."""
    if not info.username:
        return False
    if platform == "win32":
        name = info.username.casefold()
        return not name.startswith(_WINDOWS_SERVICE_ACCOUNTS) and not name.endswith("$")
    if info.uid is None:
        return False
    lowest = min_uid if min_uid is not None else default_min_desk_uid(platform)
    return lowest <= info.uid < NOBODY_UID


def login_of(process_user: str | None) -> str:
    """The login an event names: Windows reports DOMAIN\\user, the rest of the agent knows only user."""
    return (process_user or "").rsplit("\\", 1)[-1]


def same_user(process_user: str | None, agent_user: str) -> bool:
    """Compare logins; Windows reports DOMAIN\\user, the agent may know only user."""
    if not process_user or not agent_user:
        return False
    a, b = process_user.casefold(), agent_user.casefold()
    return a == b or a.rsplit("\\", 1)[-1] == b.rsplit("\\", 1)[-1]


class ScreenCaptureCollector(Collector):
    """Reports capture tools starting (`capture.tool_started`) and capture shortcuts (`capture.hotkey`).

    `scan_processes` and `watch_hotkeys` pick the halves (the service scans, the session helper watches keys).
    With `across_users` (the service, running as root) a tool of any desk user is reported under its owner's
    login and may be terminated; without it only the agent's own user's tools may be.
    """

    id = "screen_capture"

    def __init__(
        self,
        *,
        processes: ProcessTable | None = None,
        keys: KeySource | None = None,
        clear_clipboard_image: Callable[[], bool] | None = None,
        interval: AdaptiveInterval | None = None,
        platform: str = sys.platform,
        agent_user: str | None = None,
        clipboard_delay: float = 0.7,
        terminate_timeout: float = 2.0,
        scan_processes: bool = True,
        watch_hotkeys: bool = True,
        across_users: bool = False,
        min_desk_uid: int | None = None,
        own_pid: int | None = None,
    ) -> None:
        super().__init__()
        self._scan = scan_processes
        self._watch_keys = watch_hotkeys
        self._across_users = across_users
        self._min_uid = min_desk_uid if min_desk_uid is not None else default_min_desk_uid(platform)
        self._own_pid = own_pid if own_pid is not None else os.getpid()
        self._table: ProcessTable | None = (processes or PsutilProcessTable()) if scan_processes else None
        self._keys: KeySource | None = (keys or PynputKeySource(platform=platform)) if watch_hotkeys else None
        self._clear_clipboard_image = clear_clipboard_image
        self._interval = interval or AdaptiveInterval()
        self._platform = platform
        self._agent_user = agent_user if agent_user is not None else _current_user()
        self._clipboard_delay = clipboard_delay
        self._terminate_timeout = terminate_timeout
        self._detector = ShortcutDetector(platform=platform)
        self._keys_running = False
        self._suppressing = False
        self._keys_lock = threading.Lock()
        self._timers: set[threading.Timer] = set()
        self._matcher: tuple[int, ToolMatcher] | None = None
        self._ready = threading.Event()
        self._started = False
        self.hotkeys_error: str | None = None
        """Why the keyboard hook is not running (no display, no permission), or None."""

    # --- lifecycle (main thread) ----------------------------------------------------------------

    def probe(self) -> Probe:
        if self._table is None:
            return Probe(True)  # the keyboard hook's availability is only known once it starts
        try:
            self._table.pids()
        except OSError as exc:
            return Probe(False, f"cannot list processes: {exc}")
        return Probe(True)

    def start(self, sink: EventSink, policy: PolicyDocument) -> None:
        self._ready.clear()
        if self._scan:
            super().start(sink, policy)
        else:
            # Hotkeys only: the key source brings its own thread, the collector needs none.
            self._sink, self._policy, self.error = sink, policy, None
            self._stopping.clear()
            self._ready.set()
        self._started = True
        self._apply_hotkeys(policy)

    def stop(self) -> None:
        self._started = False
        self._stop_keys()
        timers = list(self._timers)
        self._timers.clear()
        for timer in timers:
            timer.cancel()
        for timer in timers:
            if timer is not threading.current_thread():
                timer.join(self.stop_timeout)
        super().stop()

    def reconfigure(self, policy: PolicyDocument) -> None:
        super().reconfigure(policy)
        if self._started:
            self._apply_hotkeys(policy)

    @property
    def state(self) -> CollectorState:
        """With the process scanner: its thread. Hotkeys only: `running` while the hook runs, `unavailable`
        when it cannot (no display, no permission; see `hotkeys_error`), `off` when policy turns hotkeys off."""
        if self._scan or self.error is not None or not self._started:
            return super().state
        if self._keys_running:
            return CollectorState.running
        control = self.policy.controls.screen_capture
        if not control.hotkeys or control.mode == "off":
            return CollectorState.off
        return CollectorState.unavailable

    @property
    def unavailable_reason(self) -> str:
        """Why `state` is `unavailable`, or empty."""
        return (self.hotkeys_error or "no keyboard hook") if self.state is CollectorState.unavailable else ""

    def wait_ready(self, timeout: float) -> bool:
        """True once the first full process scan finished (tests and benchmarks wait on this)."""
        return self._ready.wait(timeout)

    @property
    def hotkeys_running(self) -> bool:
        return self._keys_running

    def _apply_hotkeys(self, policy: PolicyDocument) -> None:
        keys = self._keys
        if keys is None:
            return
        control = policy.controls.screen_capture
        want = control.hotkeys and control.mode != "off"
        with self._keys_lock:
            if want and not self._keys_running:
                try:
                    keys.start(self._on_key_press, self._on_key_release)
                    self._keys_running = True
                    self.hotkeys_error = None
                except (OSError, ImportError) as exc:
                    self.hotkeys_error = str(exc)[:200]
                    log.warning("capture hotkeys unavailable: %s", self.hotkeys_error)
            elif not want and self._keys_running:
                keys.stop()
                self._keys_running = False
            if self._keys_running:
                self._suppressing = keys.set_suppress_print_screen(control.mode == "block")

    def _stop_keys(self) -> None:
        with self._keys_lock:
            if self._keys_running and self._keys is not None:
                self._keys.stop()
            self._keys_running = False

    # --- hotkeys (key source thread) ------------------------------------------------------------

    def _on_key_press(self, key_name: Token | None) -> None:
        try:
            shortcut = self._detector.press(key_name)
            if shortcut is None:
                return
            suppressed = self._suppressing and shortcut == "PrintScreen"
            data: dict[str, Any] = {"shortcut": shortcut}
            if suppressed:
                data["suppressed"] = True
            self._emit(
                EventDraft(kind=EventKind.capture_hotkey, severity=Severity.medium, data=data),
                target=HotkeyTarget(shortcut=shortcut, suppressed=suppressed),
            )
        except Exception:  # an OS hook callback must never raise
            log.exception("capture hotkey handling failed")

    def _on_key_release(self, key_name: Token | None) -> None:
        self._detector.release(key_name)

    # --- process scan (collector thread) --------------------------------------------------------

    def _tool_matcher(self) -> ToolMatcher:
        policy = self.policy
        cached = self._matcher
        if cached is None or cached[0] != id(policy):
            cached = (id(policy), ToolMatcher.for_policy(policy.controls.screen_capture, platform=self._platform))
            self._matcher = cached
        return cached[1]

    def _matches(self, info: ProcessInfo) -> bool:
        return self._tool_matcher().matches(info.name, info.exe)

    def _run(self) -> None:
        if self._table is None:
            raise RuntimeError("this screen-capture collector does not scan processes")
        scanner = ProcessScanner(table=self._table)
        first = True
        while not self._stopping.is_set():
            result = scanner.scan(self._matches)
            if first:
                self._ready.set()
                first = False
            if self.policy.controls.screen_capture.mode != "off":
                for info in result.hits:
                    self._report_tool(info)
            self._stopping.wait(self._interval.after(result))

    def _may_terminate(self, info: ProcessInfo) -> bool:
        if info.pid == self._own_pid:
            return False
        if self._across_users:
            # Root may end anything: only a person's own processes, never a system or service account's.
            return is_desk_account(info, platform=self._platform, min_uid=self._min_uid)
        return same_user(info.username, self._agent_user)

    def _report_tool(self, info: ProcessInfo) -> None:
        allowed = self._may_terminate(info)
        data: dict[str, Any] = {"name": info.name, "exe": info.exe, "pid": info.pid}
        if self._across_users:
            data["desk_user"] = allowed
            user = login_of(info.username)
        else:
            data["same_user"] = allowed
            user = ""  # the agent's own user, filled in by the runtime
        log.info("capture tool %s started (pid %s)", info.name, info.pid)
        self._emit(
            EventDraft(kind=EventKind.capture_tool_started, severity=Severity.medium, user=user, data=data),
            target=ToolTarget(
                pid=info.pid, create_time=info.create_time, name=info.name, may_terminate=allowed, user=user
            ),
        )

    # --- enforcement (pipeline thread) ----------------------------------------------------------

    def enforce(self, target: Any, decision: Decision) -> Outcome:
        try:
            if decision.action in ("ignore", "audit"):
                return Outcome(Action.observed)
            if decision.action == "warn":
                return Outcome(Action.warned)
            if isinstance(target, ToolTarget) and decision.action in ("terminate", "block"):
                return self._terminate(target)
            if isinstance(target, HotkeyTarget) and decision.action in ("clear", "block"):
                return self._clear_after_capture(target)
            return Outcome(Action.observed, {"unsupported_action": decision.action})
        except Exception as exc:  # enforcement never raises into the pipeline
            log.exception("screen-capture enforcement failed")
            return Outcome(Action.failed, {"error": f"{type(exc).__name__}: {exc}"[:300]})

    def _terminate(self, target: ToolTarget) -> Outcome:
        table = self._table
        if table is None:
            return Outcome(Action.failed, {"error": "this process does not scan for capture tools"})
        if not target.may_terminate:
            return Outcome(Action.failed, {"error": "tool runs under a system account or another user; not terminated"})
        # Look again: the pid must still be the process that was seen, still under an account we may end.
        now = table.inspect(target.pid)
        if now is None:
            return Outcome(Action.observed, {"already_exited": True})
        if abs(now.create_time - target.create_time) > 0.01:
            return Outcome(Action.failed, {"error": f"pid {target.pid} was reused by another process"})
        if not self._may_terminate(now):
            return Outcome(Action.failed, {"error": "tool now runs under another account; not terminated"})
        try:
            how = table.terminate(target.pid, target.create_time, timeout=self._terminate_timeout)
        except (PermissionError, LookupError) as exc:
            return Outcome(Action.failed, {"error": str(exc)[:300]})
        if how == "exited":
            return Outcome(Action.observed, {"already_exited": True})
        return Outcome(Action.terminated, {"how": how})

    def _clear_after_capture(self, target: HotkeyTarget) -> Outcome:
        if target.suppressed:
            return Outcome(Action.blocked, {"suppressed": True})
        clear = self._clear_clipboard_image
        if clear is None:
            return Outcome(Action.failed, {"error": "no clipboard access to clear the image"})

        # The capture tool needs a moment to put the image on the clipboard; clear after it, on a
        # timer thread, so neither the pipeline nor the key hook waits.
        def run() -> None:
            self._timers.discard(timer)
            try:
                if not clear():
                    log.warning("clipboard image was not cleared")
            except Exception:
                log.exception("clearing the clipboard image failed")

        timer = threading.Timer(self._clipboard_delay, run)
        timer.daemon = True
        self._timers.add(timer)
        timer.start()
        return Outcome(Action.cleared, {"clipboard": "clear_scheduled", "delay_ms": int(self._clipboard_delay * 1000)})
