"""The pipeline thread: decide, enforce and durably record every observation (ARCHITECTURE.md section 3).

Collectors call `emit` from their own threads (non-blocking); the agent calls `record` for its own events.
The pipeline thread owns its outbox connection and commits in groups.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from agent_app.core.decide import decide
from collectors.base import Collector, Decision, Observation, Outcome
from policy_client.schema import Action, EventDraft, EventKind, PolicyDocument, RuleRef

log = logging.getLogger(__name__)

MAX_GROUP = 1000

ENFORCED_KIND: dict[tuple[EventKind, Action], EventKind] = {
    (EventKind.usb_mounted, Action.blocked): EventKind.usb_blocked,
    (EventKind.download_detected, Action.quarantined): EventKind.download_quarantined,
    (EventKind.download_detected, Action.deleted): EventKind.download_quarantined,
    (EventKind.capture_tool_started, Action.terminated): EventKind.capture_tool_terminated,
}
"""An observation that enforcement acted on is recorded under the kind that says so (ARCHITECTURE.md section 4)."""
RETRY_WAIT_S = 1.0


class OutboxWriter(Protocol):
    def append(self, drafts: Sequence[EventDraft]) -> list[int]: ...

    def set_quota(self, quota_bytes: int) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the person at the desk must be told; crosses to the GUI thread."""

    seq: int
    kind: str
    control: str
    decision: Decision
    outcome: Action
    summary: dict[str, Any]
    """Metadata safe to show (the event's `data`); never raw sensitive content."""
    user: str = ""
    """The desk user the event is attributed to; the service shows the notice in that user's session."""


@dataclass(frozen=True, slots=True)
class _Flush:
    done: threading.Event


@dataclass(slots=True)
class _Batch:
    """Drafts whose seqs the caller waits for (a helper's events, answered over IPC once durable)."""

    drafts: list[EventDraft]
    done: threading.Event
    seqs: list[int] | None = None


_Item = Observation | EventDraft | _Flush | _Batch


class Pipeline:
    """Queue in, outbox out. `emit`/`record` are thread-safe and never block or raise."""

    def __init__(
        self,
        *,
        outbox_factory: Callable[[], OutboxWriter],
        policy: Callable[[], PolicyDocument],
        collector: Callable[[str], Collector | None],
        user: str,
        device_id: Callable[[], str] = str,
        on_written: Callable[[Sequence[int]], None] = lambda seqs: None,
        on_notice: Callable[[Notice], None] = lambda notice: None,
    ) -> None:
        self._outbox_factory = outbox_factory
        self._policy = policy
        self._collector = collector
        self._user = user
        self._device_id = device_id
        self._on_written = on_written
        self._on_notice = on_notice
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.written = 0

    # --- producers (any thread) -----------------------------------------------------------------

    def emit(self, observation: Observation) -> None:
        self._queue.put(observation)

    def record(self, draft: EventDraft) -> None:
        self._queue.put(draft)

    def record_batch(self, drafts: Sequence[EventDraft], timeout: float = 5.0) -> list[int] | None:
        """Record `drafts` and wait until they are durable: their seqs, [] when the quota refused some (the
        refusal is itself recorded as `agent.loss`), or None on timeout (they stay queued and are written)."""
        batch = _Batch(list(drafts), threading.Event())
        self._queue.put(batch)
        if not batch.done.wait(timeout):
            return None
        return batch.seqs if batch.seqs is not None else []

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued before this call is committed. False on timeout."""
        done = threading.Event()
        self._queue.put(_Flush(done))
        return done.wait(timeout)

    # --- lifecycle (main thread) ----------------------------------------------------------------

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="pipeline", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Commit what is queued, then stop."""
        self._stopping.set()
        self._queue.put(_Flush(threading.Event()))
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # --- pipeline thread ------------------------------------------------------------------------

    def _run(self) -> None:
        outbox = self._outbox_factory()
        try:
            while True:
                items = self._take()
                self._process(outbox, items)
                if self._stopping.is_set() and self._queue.empty():
                    return
        finally:
            outbox.close()

    def _take(self) -> list[_Item]:
        items = [self._queue.get()]
        while len(items) < MAX_GROUP:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def _process(self, outbox: OutboxWriter, items: list[_Item]) -> None:
        drafts: list[EventDraft] = []
        notices: list[tuple[int, Notice]] = []
        flushes: list[threading.Event] = []
        batches: list[tuple[int, _Batch]] = []
        for item in items:
            if isinstance(item, _Flush):
                flushes.append(item.done)
            elif isinstance(item, _Batch):
                batches.append((len(drafts), item))
                drafts.extend(d if d.user else d.model_copy(update={"user": self._user}) for d in item.drafts)
            elif isinstance(item, Observation):
                handled = self._handle(item)
                if handled is not None:
                    draft, notice = handled
                    if notice is not None:
                        notices.append((len(drafts), notice))
                    drafts.append(draft)
            else:
                drafts.append(item if item.user else item.model_copy(update={"user": self._user}))
        if drafts:
            # The quota travels in policy; a new snapshot applies from the next group on.
            outbox.set_quota(self._policy().controls.reporting.queue_quota_mb * 2**20)
        seqs = self._commit(outbox, drafts) if drafts else []
        # `append` returns the seqs of accepted drafts only; when the quota refused some, positions no longer
        # line up, so callers get no seqs to refer to (notices still go out: the person must be told).
        aligned = len(seqs) == len(drafts)
        for start, batch in batches:
            batch.seqs = seqs[start : start + len(batch.drafts)] if aligned else []
            batch.done.set()
        for done in flushes:
            done.set()
        if seqs:
            self.written += len(seqs)
            self._on_written(seqs)
        for index, notice in notices:
            self._safe_notice(dataclasses.replace(notice, seq=seqs[index] if aligned else 0))

    def _commit(self, outbox: OutboxWriter, drafts: list[EventDraft]) -> list[int]:
        """Write the group; on an unexpected error keep retrying until stopped (violations are never dropped)."""
        while True:
            try:
                return outbox.append(drafts)
            except Exception:
                log.exception("outbox append failed; %d events wait in memory", len(drafts))
                if self._stopping.is_set():
                    return []
                self._stopping.wait(RETRY_WAIT_S)

    def _handle(self, observation: Observation) -> tuple[EventDraft, Notice | None] | None:
        policy = self._policy()
        draft = observation.draft
        decision = decide(draft, policy, device_id=self._device_id())
        if decision.action == "ignore":
            return None
        outcome = Outcome(Action.observed)
        collector = self._collector(observation.collector_id)
        if decision.action not in ("audit",) and collector is not None:
            try:
                outcome = collector.enforce(observation.target, decision)
            except Exception as exc:
                log.exception("enforcement by %s failed", observation.collector_id)
                outcome = Outcome(Action.failed, {"error": type(exc).__name__})
        data = {**draft.data, **outcome.data}
        final = draft.model_copy(
            update={
                "kind": ENFORCED_KIND.get((draft.kind, outcome.action), draft.kind),
                "action": outcome.action,
                "severity": max(decision.severity, draft.severity, key=lambda s: s.rank),
                "rule": RuleRef(id=decision.rule_id, policy_version=decision.policy_version)
                if decision.rule_id
                else None,
                "data": data,
                "user": draft.user or self._user,
            }
        )
        notice = None
        if decision.message or outcome.action is Action.failed:
            notice = Notice(
                0, final.kind.value, observation.collector_id, decision, outcome.action, data, user=final.user
            )
        return final, notice

    def _safe_notice(self, notice: Notice) -> None:
        try:
            self._on_notice(notice)
        except Exception:
            log.exception("notice callback failed")
