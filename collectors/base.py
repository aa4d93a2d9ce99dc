"""The collector contract: how a signal source reports observations and carries out enforcement.

Collectors are started and stopped from the agent's main thread; each owns its own worker thread
(or, for the clipboard, the GUI thread's signal) and calls `sink.emit` from there. The pipeline
thread calls `enforce`.
"""

from __future__ import annotations

import abc
import importlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Literal, Protocol

from policy_client.schema import Action, EventDraft, PolicyDocument, Severity

log = logging.getLogger(__name__)

DecisionAction = Literal[
    "ignore", "audit", "warn", "block", "read_only", "mask", "clear", "quarantine", "delete", "terminate"
]


@dataclass(frozen=True, slots=True)
class Decision:
    """What policy says to do about one observation (the output of `agent_app.core.decide`)."""

    action: DecisionAction
    rule_id: str
    policy_version: int
    severity: Severity
    message: str = ""
    """One plain sentence for the person at the desk; empty for audit-only."""
    exception_allowed: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """What enforcement actually did; becomes the event's `action` plus extra `data`."""

    action: Action
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Observation:
    """One thing a collector saw. `target` is a collector-private handle used only by `enforce`
    (a mount point, a file path, a pid); it never leaves the device unless also put in `draft.data`."""

    draft: EventDraft
    target: Any = None
    collector_id: str = ""


class EventSink(Protocol):
    """Thread-safe and non-blocking; never raises into the caller."""

    def emit(self, observation: Observation) -> None: ...


@dataclass(frozen=True, slots=True)
class Probe:
    available: bool
    reason: str = ""


class CollectorState(StrEnum):
    stopped = "stopped"
    running = "running"
    failed = "failed"
    unavailable = "unavailable"
    off = "off"


class Collector(abc.ABC):
    """Base class for every signal source.

    Subclasses implement `_run` (called on the collector's own thread, must return soon after
    `self._stopping` is set) or override `start`/`stop` when the OS delivers callbacks itself.
    """

    id: ClassVar[str]
    stop_timeout: ClassVar[float] = 5.0

    def __init__(self) -> None:
        self._sink: EventSink | None = None
        self._policy: PolicyDocument | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        """Set when the worker thread died of an exception; the supervisor restarts the collector."""

    # --- contract -------------------------------------------------------------------------------

    def probe(self) -> Probe:
        """Can this collector run here? Cheap, no side effects."""
        return Probe(True)

    def start(self, sink: EventSink, policy: PolicyDocument) -> None:
        self._sink = sink
        self._policy = policy
        self._stopping.clear()
        self.error = None
        self._thread = threading.Thread(target=self._guarded_run, name=f"collector-{self.id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.stop_timeout)
            if thread.is_alive():
                log.warning("collector %s did not stop within %.1f s", self.id, self.stop_timeout)
        self._thread = None

    def reconfigure(self, policy: PolicyDocument) -> None:
        """Swap in a new policy snapshot. Called from the main thread; must not block."""
        self._policy = policy

    def enforce(self, target: Any, decision: Decision) -> Outcome:
        """Carry out `decision` on `target`. Called on the pipeline thread. Never raises: a failed
        enforcement is reported as `Action.failed` with the reason."""
        return Outcome(Action.observed)

    @property
    def state(self) -> CollectorState:
        if self.error is not None:
            return CollectorState.failed
        if self._thread is not None and self._thread.is_alive():
            return CollectorState.running
        return CollectorState.stopped

    # --- helpers for subclasses -----------------------------------------------------------------

    @property
    def policy(self) -> PolicyDocument:
        if self._policy is None:
            raise RuntimeError(f"collector {self.id} has not been started")
        return self._policy

    def _emit(self, draft: EventDraft, target: Any = None) -> None:
        sink = self._sink
        if sink is not None:
            sink.emit(Observation(draft=draft, target=target, collector_id=self.id))

    def _run(self) -> None:  # pragma: no cover - overridden
        self._stopping.wait()

    def _wake(self) -> None:  # noqa: B027 - optional hook; the default `_run` needs no waking
        """Interrupt a blocking wait in `_run` (override when `_run` blocks on something else)."""

    def _guarded_run(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            log.exception("collector %s crashed", self.id)
            self.error = exc


# --- registry -----------------------------------------------------------------------------------

CollectorRole = Literal["service", "helper"]
"""Where a collector instance runs: `service` is the privileged per-machine process (USB, downloads of every
monitored user, the process scanner); `helper` is the per-session tray process (clipboard, capture hotkeys)."""


@dataclass(frozen=True, slots=True)
class UserHome:
    """A desk user whose session the service monitors: login name and home directory."""

    user: str
    home: str


@dataclass(frozen=True)
class CollectorContext:
    """What a collector factory may use. Built once per process by the runtime (main thread)."""

    role: CollectorRole
    hash_key: bytes
    """Per-device key for keyed hashes of detected values (never the chain key)."""
    quarantine_dir: str = ""
    """Where quarantined downloads go: inside the service's state directory, unreadable to the desk user."""
    monitored_homes: Callable[[], list[UserHome]] | None = None
    """The desk users whose folders the service watches (`~` in policy paths expands per user); None means the
    current user only."""
    clear_clipboard_image: Callable[[], bool] | None = None
    """In the helper: clears an image left on the clipboard (set once the clipboard collector exists)."""


CollectorFactory = Callable[[CollectorContext], "Collector | None"]
"""Builds the collector for a role, or returns None when it does not run in that role."""

REGISTRY: dict[str, str] = {
    "usb": "collectors.usb:create",
    "downloads": "collectors.downloads:create",
    "clipboard": "collectors.clipboard:create",
    "screen_capture": "collectors.capture:create",
}
"""Collector id -> "module:factory". Static, so the installer can derive hidden imports from it. Each factory
takes a `CollectorContext` and returns the collector for that role, or None."""


def load_collector_factory(collector_id: str) -> CollectorFactory:
    module_name, _, factory_name = REGISTRY[collector_id].partition(":")
    module = importlib.import_module(module_name)
    factory: CollectorFactory = getattr(module, factory_name)
    return factory
