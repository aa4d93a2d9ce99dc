"""Downloads collector: watches the policy's download folders (watchdog), reports finished files
with a PII summary, and quarantines or deletes them on the pipeline's decision.

`create` is called once on the main thread of the service; `DownloadsCollector` is started from there and owns
its worker thread. Importing this package loads nothing heavy: watchdog and the scanner load with the collector.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collectors.base import Collector, CollectorContext

if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver

    from collectors.downloads.collector import DownloadsCollector, WatchedFolder
    from collectors.downloads.files import FileRef
    from collectors.downloads.quarantine import default_quarantine_dir, quarantine_file, read_record, restore

__all__ = [
    "DownloadsCollector",
    "FileRef",
    "WatchedFolder",
    "create",
    "default_quarantine_dir",
    "quarantine_file",
    "read_record",
    "restore",
]

_LAZY = {
    "DownloadsCollector": "collectors.downloads.collector",
    "WatchedFolder": "collectors.downloads.collector",
    "FileRef": "collectors.downloads.files",
    "default_quarantine_dir": "collectors.downloads.quarantine",
    "quarantine_file": "collectors.downloads.quarantine",
    "read_record": "collectors.downloads.quarantine",
    "restore": "collectors.downloads.quarantine",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def create(
    ctx: CollectorContext,
    *,
    observer_factory: Callable[[], BaseObserver] | None = None,
    settle_seconds: float = 1.0,
    rescan_seconds: float = 30.0,
) -> Collector | None:
    """The downloads collector of the service: every monitored user's folders, the service's quarantine folder.

    None in the session helper (the service watches downloads for every user)."""
    if ctx.role != "service":
        return None
    from collectors.downloads.collector import DownloadsCollector

    return DownloadsCollector(
        quarantine_dir=Path(ctx.quarantine_dir) if ctx.quarantine_dir else None,
        hash_key=ctx.hash_key,
        homes=ctx.monitored_homes,
        observer_factory=observer_factory,
        settle_seconds=settle_seconds,
        rescan_seconds=rescan_seconds,
    )
