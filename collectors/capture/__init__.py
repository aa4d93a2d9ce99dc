"""Screen-capture collector: capture tools by process scan and capture shortcuts by keyboard hook.

Started and stopped from the agent's main thread. The collector thread runs the process scanner;
the key source's own thread reports shortcuts; both call `sink.emit`. The pipeline thread calls
`enforce` (terminate a tool, clear an image left on the clipboard).
"""

from __future__ import annotations

import getpass
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from collectors.base import Collector, Decision, EventSink, Outcome, Probe
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

__all__ = ["HotkeyTarget", "ScreenCaptureCollector", "ToolTarget", "default_tool_names"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ToolTarget:
    """Enough to terminate exactly the process that was seen (pid plus start time against reuse)."""

    pid: int
    create_time: float
    name: str
    same_user: bool


@dataclass(frozen=True, slots=True)
class HotkeyTarget:
    shortcut: str
    suppressed: bool = False


def _current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def same_user(process_user: str | None, agent_user: str) -> bool:
    """Compare logins; Windows reports DOMAIN\\user, the agent may know only user."""
    if not process_user or not agent_user:
        return False
    a, b = process_user.casefold(), agent_user.casefold()
    return a == b or a.rsplit("\\", 1)[-1] == b.rsplit("\\", 1)[-1]


class ScreenCaptureCollector(Collector):
    """Reports capture tools starting (`capture.tool_started`) and capture shortcuts (`capture.hotkey`)."""

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
    ) -> None:
        super().__init__()
        self._table = processes or PsutilProcessTable()
        self._keys: KeySource = keys or PynputKeySource(platform=platform)
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
        self.hotkeys_error: str | None = None
        """Why the keyboard hook is not running (no display, no permission), or None."""

    # --- lifecycle (main thread) ----------------------------------------------------------------

    def probe(self) -> Probe:
        try:
            self._table.pids()
        except OSError as exc:
            return Probe(False, f"cannot list processes: {exc}")
        return Probe(True)

    def start(self, sink: EventSink, policy: PolicyDocument) -> None:
        self._ready.clear()
        super().start(sink, policy)
        self._apply_hotkeys(policy)

    def stop(self) -> None:
        self._stop_keys()
        for timer in list(self._timers):
            timer.cancel()
        self._timers.clear()
        super().stop()

    def reconfigure(self, policy: PolicyDocument) -> None:
        super().reconfigure(policy)
        if self.state.value == "running":
            self._apply_hotkeys(policy)

    def wait_ready(self, timeout: float) -> bool:
        """True once the first full process scan finished (tests and benchmarks wait on this)."""
        return self._ready.wait(timeout)

    @property
    def hotkeys_running(self) -> bool:
        return self._keys_running

    def _apply_hotkeys(self, policy: PolicyDocument) -> None:
        control = policy.controls.screen_capture
        want = control.hotkeys and control.mode != "off"
        with self._keys_lock:
            if want and not self._keys_running:
                try:
                    self._keys.start(self._on_key_press, self._on_key_release)
                    self._keys_running = True
                    self.hotkeys_error = None
                except (OSError, ImportError) as exc:
                    self.hotkeys_error = str(exc)[:200]
                    log.warning("capture hotkeys unavailable: %s", self.hotkeys_error)
            elif not want and self._keys_running:
                self._keys.stop()
                self._keys_running = False
            if self._keys_running:
                self._suppressing = self._keys.set_suppress_print_screen(control.mode == "block")

    def _stop_keys(self) -> None:
        with self._keys_lock:
            if self._keys_running:
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

    def _report_tool(self, info: ProcessInfo) -> None:
        mine = same_user(info.username, self._agent_user)
        log.info("capture tool %s started (pid %s)", info.name, info.pid)
        self._emit(
            EventDraft(
                kind=EventKind.capture_tool_started,
                severity=Severity.medium,
                data={"name": info.name, "exe": info.exe, "pid": info.pid, "same_user": mine},
            ),
            target=ToolTarget(pid=info.pid, create_time=info.create_time, name=info.name, same_user=mine),
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
        if not target.same_user:
            return Outcome(Action.failed, {"error": "tool runs under another user; not terminated"})
        try:
            how = self._table.terminate(target.pid, target.create_time, timeout=self._terminate_timeout)
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
