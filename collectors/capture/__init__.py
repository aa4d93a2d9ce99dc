"""Screen-capture collector: capture tools by process scan (in the service, across desk users) and capture
shortcuts by keyboard hook (in the session helper).

`create` is called once on the main thread of either process; the collector is started and stopped there.
Importing this package loads nothing heavy: psutil and the keyboard hook load with the collector.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from collectors.base import Collector, CollectorContext

if TYPE_CHECKING:
    from collectors.capture.collector import (
        HotkeyTarget,
        ScreenCaptureCollector,
        ToolTarget,
        is_desk_account,
        login_of,
        same_user,
    )
    from collectors.capture.hotkeys import KeySource
    from collectors.capture.known_tools import default_tool_names
    from collectors.capture.process_scan import AdaptiveInterval, ProcessTable

__all__ = [
    "HotkeyTarget",
    "ScreenCaptureCollector",
    "ToolTarget",
    "create",
    "default_tool_names",
    "is_desk_account",
    "login_of",
    "same_user",
]

_LAZY = {
    "HotkeyTarget": "collectors.capture.collector",
    "ScreenCaptureCollector": "collectors.capture.collector",
    "ToolTarget": "collectors.capture.collector",
    "is_desk_account": "collectors.capture.collector",
    "login_of": "collectors.capture.collector",
    "same_user": "collectors.capture.collector",
    "default_tool_names": "collectors.capture.known_tools",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def create(
    ctx: CollectorContext,
    *,
    processes: ProcessTable | None = None,
    keys: KeySource | None = None,
    interval: AdaptiveInterval | None = None,
) -> Collector | None:
    """The `screen_capture` collector for the role.

    Service: the process scanner only, over every desk user's processes (events name the tool's owner; a tool
    of a system account is reported, never terminated); no keyboard hook. Helper: the capture-shortcut watcher
    only (`capture.hotkey`), clearing a screenshot left on the clipboard through `ctx.clear_clipboard_image`;
    no process scanning, no terminating.
    """
    from collectors.capture.collector import ScreenCaptureCollector

    if ctx.role == "service":
        return ScreenCaptureCollector(processes=processes, interval=interval, watch_hotkeys=False, across_users=True)
    return ScreenCaptureCollector(
        keys=keys, interval=interval, clear_clipboard_image=ctx.clear_clipboard_image, scan_processes=False
    )
