"""ClipboardCollector: classifies clipboard text with the PII detectors and masks or clears it on the
pipeline's decision.

Lives on the GUI thread: `start`/`stop` and the change handler run there; large text is scanned on a
worker thread. `enforce` and `clear_image_if_present` may be called from any thread and marshal to
the GUI thread through a queued Qt signal. PySide6 is imported when the collector starts, not with this module, so
a helper without a display (no Qt application) never maps Qt.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from collectors.base import Collector, CollectorState, Decision, EventSink, Outcome, Probe
from collectors.clipboard.backend import ClipboardBackend, default_backend
from collectors.pii import Finding, ScanResult, confidence_at_least, mask_text, scan, summarize
from policy_client.schema import Action, ClipboardControl, EventDraft, EventKind, PolicyDocument, Severity

if TYPE_CHECKING:
    from collectors.clipboard.gui_bridge import GuiBridge

log = logging.getLogger(__name__)

SYNC_SCAN_CHARS = 200_000
"""Text up to this length is scanned on the GUI thread (about 10 ms per 100 KB); longer text on a worker."""
_LOW_RISK = frozenset({"email", "phone"})


@dataclass(frozen=True, slots=True)
class _Held:
    """The clipboard text kept only until the pipeline has decided about it."""

    token: str
    text: str
    findings: list[Finding]
    """Only the findings at `min_confidence` or above: what the event counts and a mask replaces."""
    min_confidence: str


@dataclass
class _Request:
    op: str
    token: str = ""
    done: threading.Event = field(default_factory=threading.Event)
    outcome: Outcome | None = None
    image_cleared: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    started: bool = False
    cancelled: bool = False
    """Set by a caller that gave up waiting, so a late GUI thread does not act after a reported failure."""


@dataclass(frozen=True, slots=True)
class _Scanned:
    generation: int
    text: str
    result: ScanResult


class ClipboardCollector(Collector):
    """Reports `clipboard.sensitive` with a PII summary (never the text); masks or clears on request."""

    id = "clipboard"

    def __init__(
        self,
        *,
        hash_key: bytes | None = None,
        backend_factory: Callable[[], ClipboardBackend] = default_backend,
        sync_scan_chars: int = SYNC_SCAN_CHARS,
        hold_seconds: float = 30.0,
        enforce_timeout: float = 1.0,
    ) -> None:
        super().__init__()
        self._key = hash_key if hash_key is not None else secrets.token_bytes(32)
        self._backend_factory = backend_factory
        self._backend: ClipboardBackend | None = None
        self._bridge: GuiBridge | None = None
        self._sync_chars = sync_scan_chars
        self._hold_ms = int(hold_seconds * 1000)
        self._enforce_timeout = enforce_timeout
        self._lock = threading.Lock()
        self._held: _Held | None = None
        self._generation = 0
        self._own_text: str | None = None
        self._workers: list[threading.Thread] = []
        self._running = False

    # --- lifecycle (GUI thread) -----------------------------------------------------------------

    def probe(self) -> Probe:
        if "PySide6.QtCore" not in sys.modules:
            return Probe(False, "no Qt application")  # nothing imported Qt, so no application exists
        from PySide6.QtCore import QCoreApplication

        if QCoreApplication.instance() is None:
            return Probe(False, "no Qt application")
        return Probe(True)

    def start(self, sink: EventSink, policy: PolicyDocument) -> None:
        self._sink = sink
        self._policy = policy
        self._stopping.clear()
        self.error = None
        from collectors.clipboard.gui_bridge import GuiBridge

        self._bridge = GuiBridge(self._perform, self._on_scanned)
        self._backend = self._backend_factory()
        self._backend.connect(self._on_changed)
        self._running = True

    def stop(self) -> None:
        self._stopping.set()
        self._running = False
        if self._backend is not None:
            self._backend.disconnect()
        for worker in self._workers:
            worker.join(self.stop_timeout)
        self._workers = []
        self._drop()
        if self._bridge is not None:
            self._bridge.deleteLater()
        self._bridge = None
        self._backend = None

    @property
    def state(self) -> CollectorState:
        if self.error is not None:
            return CollectorState.failed
        return CollectorState.running if self._running else CollectorState.stopped

    @property
    def control(self) -> ClipboardControl:
        return self.policy.controls.clipboard

    # --- change handling (GUI thread) -----------------------------------------------------------

    def _on_changed(self) -> None:
        try:
            self._handle_change()
        except Exception as exc:  # a Qt slot must not raise; the supervisor sees the failure
            log.exception("clipboard change handler failed")
            self.error = exc

    def _handle_change(self) -> None:
        backend = self._backend
        if backend is None or self._policy is None:
            return
        control = self.control
        text = backend.read_text() if control.mode != "off" else None
        with self._lock:
            held = self._held
        if held is not None and text == held.text:
            # X11 may signal one copy more than once (new owner, then the old owner going away):
            # the content awaiting a decision is unchanged, so it is neither re-reported nor dropped.
            return
        self._generation += 1
        self._drop()
        own, self._own_text = self._own_text, None
        if not text or text == own:
            return  # off, empty, image only, or the masked text we put there ourselves
        generation = self._generation
        detectors = list(control.detectors)
        if len(text) <= self._sync_chars:
            self._on_scanned(_Scanned(generation, text, scan(text, detectors=detectors)))
            return
        bridge = self._bridge

        def work() -> None:
            result = scan(text, detectors=detectors)
            if bridge is not None and not self._stopping.is_set():
                bridge.scanned.emit(_Scanned(generation, text, result))

        worker = threading.Thread(target=work, name="clipboard-scan", daemon=True)
        self._workers = [w for w in self._workers if w.is_alive()] + [worker]
        worker.start()

    def _on_scanned(self, item: _Scanned) -> None:
        if item.generation != self._generation or self._stopping.is_set():
            return  # stale (the clipboard changed meanwhile)
        # Only findings at the policy's confidence are reported and masked: a copy with only low-confidence numbers
        # (an order id that passes Luhn) is left alone, and the event's counts are exactly what a mask changes.
        minimum = self.control.min_confidence
        findings = [f for f in item.result.findings if confidence_at_least(f.confidence, minimum)]
        if not findings:
            return  # nothing sensitive at the policy's confidence
        below = len(item.result.findings) - len(findings)
        token = f"{item.generation}:{self._content_hash(item.text)}"
        with self._lock:
            self._held = _Held(token, item.text, findings, minimum)
        from PySide6.QtCore import QTimer

        QTimer.singleShot(self._hold_ms, lambda: self._drop(token))
        severity = Severity.medium if {f.type for f in findings} <= _LOW_RISK else Severity.high
        data: dict[str, Any] = {
            "findings": summarize(findings, item.text, self._key),
            "length": len(item.text),
            "format": "text/plain",
            "scan_truncated": item.result.truncated,
        }
        if below:
            data["below_min_confidence"] = below  # left as copied: not masked, not in `findings`
        self._emit(EventDraft(kind=EventKind.clipboard_sensitive, severity=severity, data=data), target=token)

    def _content_hash(self, text: str) -> str:
        return hmac.new(self._key, text.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:16]

    def _drop(self, token: str | None = None) -> None:
        with self._lock:
            if token is None or (self._held is not None and self._held.token == token):
                self._held = None

    # --- enforcement (any thread -> GUI thread) -------------------------------------------------

    def enforce(self, target: Any, decision: Decision) -> Outcome:
        try:
            if decision.action in ("mask", "clear"):
                req = self._call_gui(_Request(op=decision.action, token=str(target)))
                if req is None:
                    return Outcome(Action.failed, {"error": "the GUI thread did not respond in time"})
                return req.outcome or Outcome(Action.failed, {"error": "not done"})
            self._drop(str(target))
            return Outcome(Action.warned if decision.action == "warn" else Action.observed)
        except Exception as exc:  # enforce must never raise into the pipeline
            log.exception("clipboard enforcement failed")
            return Outcome(Action.failed, {"error": type(exc).__name__})

    def clear_image_if_present(self) -> bool:
        """Clear the clipboard when it holds an image (for the screen-capture collector). Any thread."""
        req = self._call_gui(_Request(op="clear_image"))
        return req is not None and req.image_cleared

    def _call_gui(self, req: _Request) -> _Request | None:
        bridge = self._bridge
        if bridge is None:
            req.outcome = Outcome(Action.failed, {"error": "clipboard collector is not running"})
            return req
        from PySide6.QtCore import QThread

        if QThread.currentThread() is bridge.thread():
            self._perform(req)  # already on the GUI thread: a queued call would wait for ourselves
        else:
            bridge.request.emit(req)
        if req.done.wait(self._enforce_timeout):
            return req
        with req.lock:
            if not req.started:
                req.cancelled = True
                return None
        # The GUI thread has begun; it only touches the clipboard, so it finishes promptly.
        return req if req.done.wait(self._enforce_timeout) else None

    def _perform(self, req: _Request) -> None:
        """GUI thread: act only if the clipboard still holds the content the decision was about."""
        with req.lock:
            if req.cancelled:
                return
            req.started = True
        try:
            backend = self._backend
            if req.op == "clear_image":
                if backend is not None and backend.has_image():
                    backend.clear()
                    req.image_cleared = True
                return
            with self._lock:
                held = self._held if self._held is not None and self._held.token == req.token else None
            if backend is None or held is None:
                req.outcome = Outcome(Action.failed, {"error": "clipboard content is no longer held"})
                return
            if backend.read_text() != held.text:
                self._drop(req.token)
                req.outcome = Outcome(Action.failed, {"error": "clipboard changed before enforcement"})
                return
            if req.op == "mask":
                masked = mask_text(held.text, held.findings, min_confidence=held.min_confidence)
                self._own_text = masked
                backend.set_text(masked)
                req.outcome = Outcome(Action.masked)
            else:
                backend.clear()
                req.outcome = Outcome(Action.cleared)
            self._drop(req.token)
        except Exception as exc:  # a Qt slot must not raise
            log.exception("clipboard %s failed", req.op)
            req.outcome = Outcome(Action.failed, {"error": type(exc).__name__})
        finally:
            req.done.set()
