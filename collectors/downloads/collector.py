"""DownloadsCollector: reports finished downloads in the policy's folders and quarantines or deletes
them when the pipeline decides so.

watchdog's observer threads only queue file names; the collector's own thread waits for files to be
complete, hashes and scans them, and calls `sink.emit`. `enforce` runs on the pipeline thread.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import stat
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from watchdog.events import (
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from collectors.base import Collector, Decision, EventSink, Outcome
from collectors.downloads.inspect import inspect_download, is_partial_name, sha256_file
from collectors.downloads.quarantine import default_quarantine_dir, quarantine_file
from policy_client.schema import Action, DownloadsControl, EventDraft, EventKind, PolicyDocument

log = logging.getLogger(__name__)

_DEDUP_SIZE = 1024


@dataclass(frozen=True, slots=True)
class _Arrival:
    path: str
    folder: str
    """The watched folder as configured, e.g. "~/Downloads"."""
    settle: bool
    """True: wait until no further change for `settle_seconds`; False: the file is complete now."""


@dataclass(frozen=True, slots=True)
class _Cancel:
    path: str


_RECONFIGURE = object()
_WAKE = object()


class _FolderHandler(FileSystemEventHandler):
    """Runs on watchdog's thread: turns file events of one folder into queue items, nothing else."""

    def __init__(self, folder: str, root: str, out: queue.Queue[object], *, use_close_events: bool) -> None:
        self._folder = folder
        self._root = root
        self._out = out
        self._close = use_close_events

    def _direct_child(self, path: str) -> bool:
        return os.path.dirname(path) == self._root

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        src = os.fsdecode(event.src_path)
        if isinstance(event, FileMovedEvent):
            dest = os.fsdecode(event.dest_path)
            if self._direct_child(dest):
                self._out.put(_Arrival(dest, self._folder, settle=False))
        elif isinstance(event, FileClosedEvent):
            if self._direct_child(src):
                self._out.put(_Arrival(src, self._folder, settle=False))
        elif isinstance(event, FileCreatedEvent):
            # With close events a file moved in from elsewhere shows up as "created" with no close;
            # a file being written gets "modified" next, which cancels this and waits for the close.
            if self._direct_child(src):
                self._out.put(_Arrival(src, self._folder, settle=True))
        elif isinstance(event, FileModifiedEvent) and self._direct_child(src):
            self._out.put(_Cancel(src) if self._close else _Arrival(src, self._folder, settle=True))


class DownloadsCollector(Collector):
    """Reports each finished download once (`download.detected`), with a PII summary of its text.

    Started and stopped from the agent's main thread; owns one worker thread plus watchdog's observer.
    """

    id = "downloads"

    def __init__(
        self,
        *,
        quarantine_dir: Path | None = None,
        hash_key: bytes | None = None,
        observer_factory: Callable[[], BaseObserver] = Observer,
        use_close_events: bool | None = None,
        settle_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._quarantine_dir = quarantine_dir
        self._key = hash_key if hash_key is not None else secrets.token_bytes(32)
        self._observer_factory = observer_factory
        # Only Linux (inotify) reports close-after-write; elsewhere a file is complete once it stops changing.
        self._use_close = sys.platform.startswith("linux") if use_close_events is None else use_close_events
        self._settle = settle_seconds
        self._clock = clock
        self._queue: queue.Queue[object] = queue.Queue()
        self._ready = threading.Event()
        self._pending: dict[str, tuple[float, str]] = {}
        self._seen: OrderedDict[tuple[str, int, int], None] = OrderedDict()
        self.watched: list[tuple[str, Path]] = []
        """(folder as configured, absolute path) of the folders being watched now."""
        self.skipped: list[str] = []
        """Configured folders that do not exist and are not watched."""

    @property
    def quarantine_dir(self) -> Path:
        return self._quarantine_dir if self._quarantine_dir is not None else default_quarantine_dir()

    @property
    def control(self) -> DownloadsControl:
        return self.policy.controls.downloads

    # --- lifecycle (main thread) ----------------------------------------------------------------

    def start(self, sink: EventSink, policy: PolicyDocument) -> None:
        """Returns once the folders are watched (or after `stop_timeout`), so nothing written after
        `start` returns is missed."""
        self._ready.clear()
        super().start(sink, policy)
        if not self._ready.wait(self.stop_timeout):
            log.warning("downloads watcher did not start within %.1f s", self.stop_timeout)

    def reconfigure(self, policy: PolicyDocument) -> None:
        super().reconfigure(policy)
        self._queue.put(_RECONFIGURE)

    def _wake(self) -> None:
        self._queue.put(_WAKE)

    # --- collector thread -----------------------------------------------------------------------

    def _run(self) -> None:
        observer = self._observer_factory()
        observer.daemon = True
        try:
            self._sync_watches(observer)
            observer.start()
        finally:
            self._ready.set()
        try:
            while not self._stopping.is_set():
                try:
                    item = self._queue.get(timeout=self._next_timeout())
                except queue.Empty:
                    item = None
                if item is _RECONFIGURE:
                    self._sync_watches(observer)
                elif isinstance(item, _Arrival):
                    self._on_arrival(item)
                elif isinstance(item, _Cancel):
                    self._pending.pop(item.path, None)
                self._process_due()
        finally:
            observer.stop()
            observer.join(self.stop_timeout)

    def _next_timeout(self) -> float | None:
        if not self._pending:
            return None
        return max(0.0, min(deadline for deadline, _ in self._pending.values()) - self._clock())

    def _sync_watches(self, observer: BaseObserver) -> None:
        observer.unschedule_all()
        self.watched = []
        self.skipped = []
        control = self.control
        if control.mode == "off":
            return
        for folder in control.paths:
            root = Path(folder).expanduser()
            if not root.is_dir():
                log.warning("downloads folder %s does not exist; not watched", folder)
                self.skipped.append(folder)
                continue
            root = root.resolve()
            handler = _FolderHandler(folder, str(root), self._queue, use_close_events=self._use_close)
            try:
                observer.schedule(handler, str(root), recursive=False)
            except OSError as exc:
                log.warning("cannot watch downloads folder %s: %s", folder, exc)
                self.skipped.append(folder)
                continue
            self.watched.append((folder, root))

    def _on_arrival(self, item: _Arrival) -> None:
        if is_partial_name(os.path.basename(item.path)):
            return
        if item.settle:
            self._pending[item.path] = (self._clock() + self._settle, item.folder)
        else:
            self._pending.pop(item.path, None)
            self._report(Path(item.path), item.folder)

    def _process_due(self) -> None:
        now = self._clock()
        for path, (deadline, folder) in list(self._pending.items()):
            if deadline <= now:
                del self._pending[path]
                self._report(Path(path), folder)

    def _report(self, path: Path, folder: str) -> None:
        control = self.control
        if control.mode == "off":
            return
        try:
            st = path.stat()
        except OSError:
            return  # gone again (renamed or deleted before we got to it)
        if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
            return  # empty files carry nothing; Firefox's zero-byte placeholder is one of them
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key in self._seen:
            return
        self._seen[key] = None
        if len(self._seen) > _DEDUP_SIZE:
            self._seen.popitem(last=False)
        try:
            digest = sha256_file(path, stop=self._stopping)
            if digest is None:
                return
            inspection = inspect_download(
                path, folder=folder, size=st.st_size, sha256=digest, control=control, key=self._key
            )
        except OSError as exc:
            log.info("could not read a finished download: %s", type(exc).__name__)
            return
        draft = EventDraft(kind=EventKind.download_detected, severity=inspection.severity, data=inspection.data)
        self._emit(draft, target=path.absolute())

    # --- pipeline thread ------------------------------------------------------------------------

    def enforce(self, target: Any, decision: Decision) -> Outcome:
        try:
            path = Path(target)
            if decision.action == "quarantine":
                qid = quarantine_file(path, self.quarantine_dir, extra={"rule": decision.rule_id})
                return Outcome(Action.quarantined, {"quarantine_id": qid})
            if decision.action == "delete":
                path.unlink()
                return Outcome(Action.deleted)
            if decision.action == "warn":
                return Outcome(Action.warned)
            return Outcome(Action.observed)
        except OSError as exc:
            return Outcome(Action.failed, {"error": _short_reason(exc)})
        except Exception as exc:  # enforce must never raise into the pipeline
            log.exception("downloads enforcement failed")
            return Outcome(Action.failed, {"error": type(exc).__name__})


def _short_reason(exc: OSError) -> str:
    return f"{type(exc).__name__}: {exc.strerror or exc}"[:200]
