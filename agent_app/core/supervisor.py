"""Starts, reconfigures and restarts collectors as policy says; reports crashes as `agent.collector_failed`.

Called on the main thread only (collectors such as the clipboard must start where the QApplication lives).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from collectors.base import Collector, CollectorState, EventSink
from policy_client.event_vocabulary import POLICY_CONTROLS
from policy_client.schema import EventDraft, EventKind, PolicyDocument, Severity, utc_now

log = logging.getLogger(__name__)

RESTART_BUDGET = 3
RESTART_WINDOW = timedelta(minutes=10)


def control_mode(collector_id: str, policy: PolicyDocument) -> str:
    """The policy mode of the control a collector serves ("off" turns the collector off)."""
    if collector_id not in POLICY_CONTROLS:
        return "audit"
    return str(getattr(policy.controls, collector_id).mode)


class CollectorSupervisor:
    def __init__(
        self,
        collectors: Mapping[str, Collector],
        *,
        sink: EventSink,
        record: Callable[[EventDraft], None],
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._collectors = dict(collectors)
        self._sink = sink
        self._record = record
        self._clock = clock
        self._restarts: dict[str, deque[datetime]] = {name: deque() for name in self._collectors}
        self._given_up: set[str] = set()
        self._unavailable: dict[str, str] = {}
        self._policy: PolicyDocument | None = None
        self._active: set[str] = set()

    def get(self, collector_id: str) -> Collector | None:
        return self._collectors.get(collector_id)

    def apply(self, policy: PolicyDocument) -> None:
        """Start collectors whose control is on, stop those turned off, hand the rest the new snapshot."""
        self._policy = policy
        for name, collector in self._collectors.items():
            wanted = control_mode(name, policy) != "off"
            if wanted and name not in self._active:
                self._start(name, collector, policy)
            elif not wanted and name in self._active:
                collector.stop()
                self._active.discard(name)
            elif wanted:
                collector.reconfigure(policy)

    def check(self) -> None:
        """Restart crashed collectors within the budget (3 per 10 minutes), then give up and report."""
        if self._policy is None:
            return
        now = self._clock()
        for name, collector in self._collectors.items():
            if collector.state is not CollectorState.failed or name in self._given_up:
                continue
            error = collector.error
            history = self._restarts[name]
            while history and now - history[0] > RESTART_WINDOW:
                history.popleft()
            gave_up = len(history) >= RESTART_BUDGET
            self._record(
                EventDraft(
                    kind=EventKind.agent_collector_failed,
                    severity=Severity.high,
                    data={
                        "collector": name,
                        "error": type(error).__name__ if error else "unknown",
                        "restarts": len(history),
                        "gave_up": gave_up,
                    },
                )
            )
            collector.stop()
            if gave_up:
                log.error("collector %s keeps failing; not restarting it again", name)
                self._given_up.add(name)
                self._active.discard(name)
                continue
            history.append(now)
            self._start(name, collector, self._policy)

    def stop_all(self) -> None:
        for name in list(self._active):
            try:
                self._collectors[name].stop()
            except Exception:
                log.exception("stopping collector %s failed", name)
        self._active.clear()

    def states(self) -> dict[str, str]:
        result: dict[str, str] = {}
        policy = self._policy
        for name, collector in self._collectors.items():
            if name in self._unavailable:
                result[name] = CollectorState.unavailable.value
            elif policy is not None and control_mode(name, policy) == "off":
                result[name] = CollectorState.off.value
            elif name in self._given_up:
                result[name] = CollectorState.failed.value
            else:
                result[name] = collector.state.value
        return result

    def _start(self, name: str, collector: Collector, policy: PolicyDocument) -> None:
        probe = collector.probe()
        if not probe.available:
            if name not in self._unavailable:
                log.warning("collector %s unavailable: %s", name, probe.reason)
            self._unavailable[name] = probe.reason
            return
        self._unavailable.pop(name, None)
        self._active.add(name)
        try:
            collector.start(self._sink, policy)
        except Exception as exc:
            log.exception("collector %s failed to start", name)
            collector.error = exc
