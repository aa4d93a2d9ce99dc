"""The clipboard collector's Qt object on the GUI thread: queued signals carry enforcement requests from the
pipeline's threads and scan results from the scan worker onto it.

Created by `ClipboardCollector.start` on the GUI thread; imported only then, so PySide6 loads only where a Qt
application runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot


class GuiBridge(QObject):
    """Lives on the GUI thread; `request.emit(...)` and `scanned.emit(...)` from any thread call the handlers there."""

    request = Signal(object)
    scanned = Signal(object)

    def __init__(self, on_request: Callable[[Any], None], on_scanned: Callable[[Any], None]) -> None:
        super().__init__()
        self._on_request = on_request
        self._on_scanned = on_scanned
        self.request.connect(self._handle_request)
        self.scanned.connect(self._handle_scanned)

    @Slot(object)
    def _handle_request(self, req: object) -> None:
        self._on_request(req)

    @Slot(object)
    def _handle_scanned(self, item: object) -> None:
        self._on_scanned(item)
