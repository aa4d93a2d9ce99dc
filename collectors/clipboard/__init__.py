"""Clipboard collector: PII classification of copied text on the GUI thread, with mask and clear
enforcement; the macOS backend polls the pasteboard change count.

`create` is called once on the session helper's GUI thread; `ClipboardCollector` is started, stopped and
signalled there. Importing this package, or building the collector, does not import PySide6 (the service and a
helper without a display never load Qt): the collector loads it when it starts in the helper's Qt application.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from collectors.base import Collector, CollectorContext

if TYPE_CHECKING:
    from collectors.clipboard.backend import ClipboardBackend
    from collectors.clipboard.collector import ClipboardCollector

__all__ = ["ClipboardCollector", "create"]


def __getattr__(name: str) -> Any:
    if name == "ClipboardCollector":
        return importlib.import_module("collectors.clipboard.collector").ClipboardCollector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def create(ctx: CollectorContext, *, backend_factory: Callable[[], ClipboardBackend] | None = None) -> Collector | None:
    """The clipboard collector of the session helper (the user's clipboard lives in the user's session);
    None in the service, which never imports PySide6."""
    if ctx.role != "helper":
        return None
    from collectors.clipboard.collector import ClipboardCollector

    if backend_factory is None:
        return ClipboardCollector(hash_key=ctx.hash_key)
    return ClipboardCollector(hash_key=ctx.hash_key, backend_factory=backend_factory)
