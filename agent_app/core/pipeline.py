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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from agent_app.core.decide import decide
from collectors.base import Collector, Decision, Observation, Outcome
from policy_client.event_vocabulary import enforced_kind
from policy_client.schema import Action, EventDraft, PolicyDocument, RuleRef

log = logging.getLogger(__name__)

MAX_GROUP = 1000

RETRY_WAIT_S = 1.0
ENFORCE_TIMEOUT_S = 30.0
"""An enforcement not done by then is recorded as `failed` with `error: timeout`; a USB block can take ~24 s."""


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


@dataclass(slots=True)
class _Pending:
    """An enforcement in flight on its collector's enforcer thread; settled by its outcome or its deadline."""

    number: int
    observation: Observation
    decision: Decision
    timer: threading.Timer | None = None
    settled: bool = False


@dataclass(frozen=True, slots=True)
class _Resolved:
    pending: _Pending
    outcome: Outcome


_Item = Observation | EventDraft | _Flush | _Batch | _Resolved


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
        enforce_timeout: float = ENFORCE_TIMEOUT_S,
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
        self._enforce_timeout = enforce_timeout
        self._enforcers: dict[str, ThreadPoolExecutor] = {}
        """One worker per collector: its enforcements run in order, and a slow one never holds up the others."""
        self._scheduled = 0
        self._outstanding: set[int] = set()
        self._deferred_flushes: list[tuple[int, threading.Event]] = []

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
                if self._stopping.is_set() and self._queue.empty() and not self._outstanding:
                    return
        finally:
            outbox.close()
            for enforcer in self._enforcers.values():
                enforcer.shutdown(wait=False, cancel_futures=True)

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
                if self._outstanding:  # done once the enforcements scheduled so far are recorded too
                    self._deferred_flushes.append((self._scheduled, item.done))
                else:
                    flushes.append(item.done)
            elif isinstance(item, _Resolved):
                finished = self._settle(item)
                if finished is not None:
                    draft, notice = finished
                    if notice is not None:
                        notices.append((len(drafts), notice))
                    drafts.append(draft)
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
        if self._deferred_flushes:
            still: list[tuple[int, threading.Event]] = []
            for mark, done in self._deferred_flushes:
                if any(number <= mark for number in self._outstanding):
                    still.append((mark, done))
                else:
                    done.set()
            self._deferred_flushes = still
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
        """Decide; record at once what needs no enforcement, hand the rest to the collector's enforcer thread
        (the event is recorded when the outcome comes back, or at the deadline)."""
        draft = observation.draft
        decision = decide(draft, self._policy(), device_id=self._device_id())
        if decision.action == "ignore":
            return None
        collector = self._collector(observation.collector_id)
        if decision.action == "audit" or collector is None:
            return self._finish(observation, decision, Outcome(Action.observed))
        self._scheduled += 1
        pending = _Pending(self._scheduled, observation, decision)
        self._outstanding.add(pending.number)
        pending.timer = threading.Timer(
            self._enforce_timeout,
            self._queue.put,
            args=(_Resolved(pending, Outcome(Action.failed, {"error": "timeout"})),),
        )
        pending.timer.daemon = True
        pending.timer.start()
        enforcer = self._enforcers.get(observation.collector_id)
        if enforcer is None:
            enforcer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"enforce-{observation.collector_id}")
            self._enforcers[observation.collector_id] = enforcer
        enforcer.submit(self._enforce, collector, pending)
        return None

    def _enforce(self, collector: Collector, pending: _Pending) -> None:
        """A collector's enforcer thread: never raises; the outcome goes back to the pipeline thread."""
        try:
            outcome = collector.enforce(pending.observation.target, pending.decision)
        except Exception as exc:
            log.exception("enforcement by %s failed", pending.observation.collector_id)
            outcome = Outcome(Action.failed, {"error": type(exc).__name__})
        self._queue.put(_Resolved(pending, outcome))

    def _settle(self, resolved: _Resolved) -> tuple[EventDraft, Notice | None] | None:
        pending = resolved.pending
        if pending.settled:
            log.warning(
                "enforcement by %s finished after its deadline with %s (recorded as a timeout)",
                pending.observation.collector_id,
                resolved.outcome.action.value,
            )
            return None
        pending.settled = True
        if pending.timer is not None:
            pending.timer.cancel()
        self._outstanding.discard(pending.number)
        return self._finish(pending.observation, pending.decision, resolved.outcome)

    def _finish(
        self, observation: Observation, decision: Decision, outcome: Outcome
    ) -> tuple[EventDraft, Notice | None]:
        draft = observation.draft
        data = {**draft.data, **outcome.data}
        final = draft.model_copy(
            update={
                "kind": enforced_kind(draft.kind, outcome.action),
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
