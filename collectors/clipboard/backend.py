"""Clipboard access behind one small interface: Qt's QClipboard everywhere, plus a change-count
poller on macOS (Qt only signals clipboard changes there while the app is active).

Everything here runs on the GUI thread. This is the only collector module that imports PySide6.QtGui.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)


class ClipboardBackend(Protocol):
    """The system clipboard as the collector needs it. GUI thread only."""

    def connect(self, on_change: Callable[[], None]) -> None: ...

    def disconnect(self) -> None: ...

    def read_text(self) -> str | None:
        """The clipboard's plain text; None when it holds no text (for example only an image)."""
        ...

    def has_image(self) -> bool: ...

    def set_text(self, text: str) -> None: ...

    def clear(self) -> None: ...


class QtClipboardBackend:
    """QGuiApplication.clipboard() and its dataChanged signal."""

    def __init__(self) -> None:
        from PySide6.QtGui import QGuiApplication

        clipboard = QGuiApplication.clipboard()
        if clipboard is None:
            raise RuntimeError("no QGuiApplication: the clipboard collector runs inside the agent's Qt app")
        self._clipboard = clipboard
        self._callback: Callable[[], None] | None = None

    def connect(self, on_change: Callable[[], None]) -> None:
        self._callback = on_change
        self._clipboard.dataChanged.connect(on_change)

    def disconnect(self) -> None:
        if self._callback is not None:
            self._clipboard.dataChanged.disconnect(self._callback)
            self._callback = None

    def read_text(self) -> str | None:
        mime = self._clipboard.mimeData()
        if mime is None or not mime.hasText():
            return None
        return str(mime.text())

    def has_image(self) -> bool:
        mime = self._clipboard.mimeData()
        return mime is not None and mime.hasImage()

    def set_text(self, text: str) -> None:
        self._clipboard.setText(text)

    def clear(self) -> None:
        self._clipboard.clear()


class PasteboardAdapter(Protocol):
    def change_count(self) -> int: ...


class AppKitPasteboard:
    """NSPasteboard.generalPasteboard().changeCount() through pyobjc, imported lazily."""

    def __init__(self) -> None:
        appkit: Any = importlib.import_module("AppKit")
        self._pasteboard = appkit.NSPasteboard.generalPasteboard()

    def change_count(self) -> int:
        return int(self._pasteboard.changeCount())


class ChangeCountPoller:
    """Calls `on_change` when the pasteboard's change count moves; a QTimer on the GUI thread."""

    def __init__(self, adapter: PasteboardAdapter, *, interval_ms: int = 500) -> None:
        from PySide6.QtCore import QTimer

        self._adapter = adapter
        self._timer = QTimer()
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)
        self._last = 0
        self._on_change: Callable[[], None] | None = None

    def start(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self._last = self._adapter.change_count()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()
        self._on_change = None

    def _tick(self) -> None:
        count = self._adapter.change_count()
        if count != self._last:
            self._last = count
            if self._on_change is not None:
                self._on_change()


class PollingClipboardBackend:
    """Reads and writes through another backend; learns about changes from a change-count poller."""

    def __init__(self, inner: ClipboardBackend, poller: ChangeCountPoller) -> None:
        self._inner = inner
        self._poller = poller

    def connect(self, on_change: Callable[[], None]) -> None:
        self._poller.start(on_change)

    def disconnect(self) -> None:
        self._poller.stop()

    def read_text(self) -> str | None:
        return self._inner.read_text()

    def has_image(self) -> bool:
        return self._inner.has_image()

    def set_text(self, text: str) -> None:
        self._inner.set_text(text)

    def clear(self) -> None:
        self._inner.clear()


def default_backend() -> ClipboardBackend:
    """The backend for this OS (the one place that chooses)."""
    qt = QtClipboardBackend()
    if sys.platform == "darwin":
        try:
            return PollingClipboardBackend(qt, ChangeCountPoller(AppKitPasteboard()))
        except ImportError:
            log.warning("pyobjc (AppKit) is not available; clipboard changes are seen only while the agent is active")
    return qt
