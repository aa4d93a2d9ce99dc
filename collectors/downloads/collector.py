"""DownloadsCollector: reports finished downloads in the policy's folders (for every monitored desk user in the
service) and quarantines or deletes them when the pipeline decides so.

watchdog's observer threads only queue file names; the collector's own thread sets up the watches (again every
`rescan_seconds`, so a user who logs in later or a folder created later is watched), waits for files to be
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
from watchdog.observers.api import BaseObserver, ObservedWatch

from collectors.base import Collector, CollectorState, Decision, EventSink, Outcome, UserHome
from collectors.downloads.files import FileRef, FolderId, delete, open_regular
from collectors.downloads.inspect import inspect_download, is_partial_name, sha256_stream
from collectors.downloads.quarantine import default_quarantine_dir, quarantine_file, was_released
from policy_client.schema import Action, DownloadsControl, EventDraft, EventKind, PolicyDocument

log = logging.getLogger(__name__)

_DEDUP_SIZE = 1024
RESCAN_SECONDS = 30.0
"""How often the collector thread re-reads the monitored users and checks which folders exist (a few stat calls)."""


@dataclass(frozen=True, slots=True)
class WatchedFolder:
    """One folder being watched and whom its downloads are attributed to."""

    folder: str
    """The folder as configured, e.g. "~/Downloads" (what events report)."""
    user: str
    """The desk user the folder belongs to; empty when the runtime's own user is meant."""
    id: FolderId

    @property
    def root(self) -> Path:
        return Path(self.id.path)


@dataclass(frozen=True, slots=True)
class _Arrival:
    path: str
    watch: WatchedFolder
    settle: bool
    """True: wait until no further change for `settle_seconds`; False: the file is complete now."""


@dataclass(frozen=True, slots=True)
class _Cancel:
    path: str


@dataclass(frozen=True, slots=True)
class _Rescan:
    done: threading.Event


_RECONFIGURE = object()
_WAKE = object()


class _FolderHandler(FileSystemEventHandler):
    """Runs on watchdog's thread: turns file events of one folder into queue items, nothing else."""

    def __init__(self, watch: WatchedFolder, out: queue.Queue[object], *, use_close_events: bool) -> None:
        self._watch = watch
        self._root = watch.id.path
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
                self._out.put(_Arrival(dest, self._watch, settle=False))
        elif isinstance(event, FileClosedEvent):
            if self._direct_child(src):
                self._out.put(_Arrival(src, self._watch, settle=False))
        elif isinstance(event, FileCreatedEvent):
            # With close events a file moved in from elsewhere shows up as "created" with no close;
            # a file being written gets "modified" next, which cancels this and waits for the close.
            if self._direct_child(src):
                self._out.put(_Arrival(src, self._watch, settle=True))
        elif isinstance(event, FileModifiedEvent) and self._direct_child(src):
            self._out.put(_Cancel(src) if self._close else _Arrival(src, self._watch, settle=True))


def folder_owner(path: Path) -> str:
    """Login of the account that owns `path`; empty when the OS cannot say (Windows here)."""
    if sys.platform == "win32":
        return ""
    else:
        import pwd

        try:
            uid = os.stat(path).st_uid
        except OSError:
            return ""
        try:
            return pwd.getpwuid(uid).pw_name
        except KeyError:
            return str(uid)


def home_relative(folder: str) -> str | None:
    """The part after "~/" ("Downloads" for "~/Downloads", "" for "~"); None for anything else (an absolute
    path, or another user's "~bob/...", which is taken as it is)."""
    if folder == "~":
        return ""
    if folder[:2] in ("~/", "~\\"):
        return folder[2:]
    return None


def _within(path: Path, home: Path) -> bool:
    return path == home or home in path.parents


class DownloadsCollector(Collector):
    """Reports each finished download once (`download.detected`), with a PII summary of its text.

    Started and stopped from the agent's main thread; owns one worker thread plus watchdog's observer. With
    `homes` (the service), "~" in policy paths expands for every monitored user and each event names its user.
    """

    id = "downloads"

    def __init__(
        self,
        *,
        quarantine_dir: Path | None = None,
        hash_key: bytes | None = None,
        homes: Callable[[], list[UserHome]] | None = None,
        owner_of: Callable[[Path], str] = folder_owner,
        observer_factory: Callable[[], BaseObserver] | None = None,
        use_close_events: bool | None = None,
        settle_seconds: float = 1.0,
        rescan_seconds: float = RESCAN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._quarantine_dir = quarantine_dir
        self._key = hash_key if hash_key is not None else secrets.token_bytes(32)
        self._homes = homes
        self._owner_of = owner_of
        self._observer_factory = observer_factory or Observer
        # Only Linux (inotify) reports close-after-write; elsewhere a file is complete once it stops changing.
        self._use_close = sys.platform.startswith("linux") if use_close_events is None else use_close_events
        self._settle = settle_seconds
        self._rescan_seconds = rescan_seconds
        self._clock = clock
        self._queue: queue.Queue[object] = queue.Queue()
        self._ready = threading.Event()
        self._pending: dict[str, tuple[float, WatchedFolder]] = {}
        self._seen: OrderedDict[tuple[str, int, int, int], None] = OrderedDict()
        self._schedules: dict[WatchedFolder, ObservedWatch] = {}
        self._last_homes: list[UserHome] = []
        self._next_rescan = 0.0
        self.watched: list[WatchedFolder] = []
        """The folders being watched now (replaced as a whole on every re-evaluation)."""
        self.skipped: list[str] = []
        """Configured folders that are not watched (do not exist, or cannot be watched), with their user."""

    @property
    def quarantine_dir(self) -> Path:
        return self._quarantine_dir if self._quarantine_dir is not None else default_quarantine_dir()

    @property
    def control(self) -> DownloadsControl:
        return self.policy.controls.downloads

    @property
    def state(self) -> CollectorState:
        """`unavailable` while running with nothing to watch (no configured folder exists yet): the console must
        not show a green collector that sees nothing. Back to `running` once a folder is watched."""
        state = super().state
        watching = self.watched or self._policy is None or self.control.mode == "off"
        return CollectorState.unavailable if state is CollectorState.running and not watching else state

    @property
    def unavailable_reason(self) -> str:
        """Why `state` is `unavailable` (the folders not watched), or empty."""
        if self.state is not CollectorState.unavailable:
            return ""
        if self.skipped:
            return "no download folder to watch: " + ", ".join(self.skipped)
        if self._homes is not None and not self._last_homes:
            return "no monitored user"
        return "no download folder configured"

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

    def rescan(self) -> threading.Event:
        """Re-read the monitored users and folders now (for example when a user logs in). Non-blocking; the
        returned event is set once the collector thread has done it."""
        done = threading.Event()
        self._queue.put(_Rescan(done))
        return done

    def _wake(self) -> None:
        self._queue.put(_WAKE)

    # --- collector thread -----------------------------------------------------------------------

    def _run(self) -> None:
        observer = self._observer_factory()
        observer.daemon = True
        self._schedules = {}
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
                elif isinstance(item, _Rescan):
                    self._sync_watches(observer)
                    item.done.set()
                elif isinstance(item, _Arrival):
                    self._on_arrival(item)
                elif isinstance(item, _Cancel):
                    self._pending.pop(item.path, None)
                if self._clock() >= self._next_rescan:
                    self._sync_watches(observer)
                self._process_due()
        finally:
            observer.stop()
            observer.join(self.stop_timeout)
            self._schedules = {}
            self.watched = []

    def _next_timeout(self) -> float:
        deadline = self._next_rescan
        if self._pending:
            deadline = min(deadline, *(due for due, _ in self._pending.values()))
        return max(0.0, deadline - self._clock())

    def _monitored_homes(self) -> list[UserHome] | None:
        if self._homes is None:
            return None
        try:
            self._last_homes = list(self._homes())
        except Exception:  # the runtime's session lookup failing must not stop the watches we have
            log.exception("could not list the monitored users; keeping the last known list")
        return self._last_homes

    def _desired_watches(self) -> tuple[list[WatchedFolder], list[str]]:
        """The folders policy asks for that exist now, and the ones skipped (collector thread; cheap stats)."""
        control = self.control
        if control.mode == "off":
            return [], []
        homes = self._monitored_homes()
        candidates: list[tuple[str, str, Path]] = []
        for folder in control.paths:
            rest = home_relative(folder)
            if homes is None:
                candidates.append((folder, "", Path(folder).expanduser()))
            elif rest is not None:
                candidates.extend((folder, home.user, Path(home.home) / rest) for home in homes)
            else:
                path = Path(folder).expanduser()
                owner = next((h.user for h in homes if _within(path, Path(h.home))), None)
                candidates.append((folder, owner if owner is not None else self._owner_of(path), path))
        watches: dict[FolderId, WatchedFolder] = {}
        skipped: list[str] = []
        for folder, user, path in candidates:
            label = f"{folder} ({user})" if user else folder
            try:
                folder_id = FolderId.of(path)
            except OSError:
                skipped.append(label)
                continue
            watches.setdefault(folder_id, WatchedFolder(folder=folder, user=user, id=folder_id))
        return list(watches.values()), skipped

    def _sync_watches(self, observer: BaseObserver) -> None:
        self._next_rescan = self._clock() + self._rescan_seconds
        wanted, skipped = self._desired_watches()
        for watch in [w for w in self._schedules if w not in wanted]:
            scheduled = self._schedules.pop(watch)
            try:
                observer.unschedule(scheduled)
            except (KeyError, OSError) as exc:  # the emitter may have ended with its folder already
                log.debug("unscheduling a downloads watch failed: %s", exc)
            log.info("no longer watching downloads folder %s of %s", watch.folder, watch.user or "this user")
        for watch in wanted:
            if watch in self._schedules:
                continue
            handler = _FolderHandler(watch, self._queue, use_close_events=self._use_close)
            try:
                self._schedules[watch] = observer.schedule(handler, watch.id.path, recursive=False)
            except OSError as exc:
                log.warning("cannot watch downloads folder %s: %s", watch.folder, exc)
                skipped.append(f"{watch.folder} ({watch.user})" if watch.user else watch.folder)
                continue
            log.info("watching downloads folder %s of %s", watch.folder, watch.user or "this user")
        was_watching = bool(self.watched)
        self.watched = [w for w in wanted if w in self._schedules]
        for label in sorted(set(skipped) - set(self.skipped)):
            log.warning("downloads folder %s is not watched (missing, or cannot be watched)", label)
        self.skipped = skipped
        if was_watching and not self.watched:
            log.warning("no downloads folder is watched any more")

    def _on_arrival(self, item: _Arrival) -> None:
        if is_partial_name(os.path.basename(item.path)):
            return
        if item.settle:
            self._pending[item.path] = (self._clock() + self._settle, item.watch)
        else:
            self._pending.pop(item.path, None)
            self._report(Path(item.path), item.watch)

    def _process_due(self) -> None:
        now = self._clock()
        for path, (deadline, watch) in list(self._pending.items()):
            if deadline <= now:
                del self._pending[path]
                self._report(Path(path), watch)

    def _report(self, path: Path, watch: WatchedFolder) -> None:
        control = self.control
        if control.mode == "off" or watch not in self._schedules:
            return
        try:
            # Read through the watched folder's descriptor and never through a link: in the service this
            # thread runs as root inside a folder the desk user controls.
            fh, st = open_regular(watch.id, path.name)
        except OSError as exc:
            log.debug("not reporting a download that is gone or not a regular file: %s", type(exc).__name__)
            return
        with fh:
            if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
                return  # empty files carry nothing; Firefox's zero-byte placeholder is one of them
            if was_released(path, st):
                return  # an admin released it from quarantine; it is not a new download
            key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
            if key in self._seen:
                return
            self._seen[key] = None
            if len(self._seen) > _DEDUP_SIZE:
                self._seen.popitem(last=False)
            try:
                digest = sha256_stream(fh, stop=self._stopping)
                if digest is None:
                    return
                fh.seek(0)
                inspection = inspect_download(
                    path,
                    folder=watch.folder,
                    size=st.st_size,
                    sha256=digest,
                    control=control,
                    key=self._key,
                    stream=fh,
                )
            except OSError as exc:
                log.info("could not read a finished download: %s", type(exc).__name__)
                return
        draft = EventDraft(
            kind=EventKind.download_detected, severity=inspection.severity, user=watch.user, data=inspection.data
        )
        self._emit(draft, target=FileRef.read(watch.id, path.name, st))

    # --- pipeline thread ------------------------------------------------------------------------

    def enforce(self, target: Any, decision: Decision) -> Outcome:
        try:
            if decision.action == "warn":
                return Outcome(Action.warned)
            if decision.action not in ("quarantine", "delete"):
                return Outcome(Action.observed)
            if not isinstance(target, FileRef):
                return Outcome(Action.failed, {"error": "target is not a reported download"})
            if decision.action == "quarantine":
                qid = quarantine_file(target, self.quarantine_dir, extra={"rule": decision.rule_id})
                return Outcome(Action.quarantined, {"quarantine_id": qid})
            delete(target)
            return Outcome(Action.deleted)
        except OSError as exc:
            return Outcome(Action.failed, {"error": _short_reason(exc)})
        except Exception as exc:  # enforce must never raise into the pipeline
            log.exception("downloads enforcement failed")
            return Outcome(Action.failed, {"error": type(exc).__name__})


def _short_reason(exc: OSError) -> str:
    return f"{type(exc).__name__}: {exc.strerror or exc}"[:200]
