"""Collector supervision: policy turns collectors on and off; crashes restart within 3 per 10 minutes."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from agent_app.core.supervisor import CollectorSupervisor
from collectors.base import Collector, Observation, Probe
from policy_client.schema import Controls, DownloadsControl, EventKind, PolicyDocument


class Crashing(Collector):
    """Its worker thread dies of an exception whenever `crash` is set."""

    id = "downloads"

    def __init__(self) -> None:
        super().__init__()
        self.starts = 0
        self.crash = threading.Event()

    def start(self, sink: object, policy: PolicyDocument) -> None:  # type: ignore[override]
        self.starts += 1
        super().start(sink, policy)  # type: ignore[arg-type]

    def _run(self) -> None:
        while not self._stopping.is_set():
            if self.crash.is_set():
                raise OSError("inotify watch limit reached")
            self._stopping.wait(0.01)


class Unavailable(Collector):
    id = "clipboard"

    def probe(self) -> Probe:
        return Probe(False, "no display")


class Sink:
    def emit(self, observation: Observation) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def wait_failed(collector: Collector) -> None:
    thread = collector._thread
    assert thread is not None
    thread.join(5)
    assert collector.state.value == "failed"


def test_crashes_restart_three_times_in_ten_minutes_then_give_up() -> None:
    collector, clock, recorded = Crashing(), Clock(), []
    supervisor = CollectorSupervisor({"downloads": collector}, sink=Sink(), record=recorded.append, clock=clock)
    supervisor.apply(PolicyDocument(version=1))
    assert collector.starts == 1
    collector.crash.set()
    for restart in range(3):
        wait_failed(collector)
        supervisor.check()
        assert collector.starts == 2 + restart
        clock.now += timedelta(minutes=1)
    wait_failed(collector)
    supervisor.check()
    assert collector.starts == 4, "a fourth restart within ten minutes is over budget"
    assert supervisor.states() == {"downloads": "failed"}
    kinds = {draft.kind for draft in recorded}
    assert kinds == {EventKind.agent_collector_failed}
    assert [draft.data["gave_up"] for draft in recorded] == [False, False, False, True]
    assert recorded[0].data["error"] == "OSError"
    collector.crash.clear()
    supervisor.stop_all()


def test_the_budget_refills_after_ten_minutes() -> None:
    collector, clock, recorded = Crashing(), Clock(), []
    supervisor = CollectorSupervisor({"downloads": collector}, sink=Sink(), record=recorded.append, clock=clock)
    supervisor.apply(PolicyDocument(version=1))
    collector.crash.set()
    for _ in range(6):
        wait_failed(collector)
        supervisor.check()
        clock.now += timedelta(minutes=4)
    assert not any(draft.data["gave_up"] for draft in recorded)
    assert collector.starts == 7
    collector.crash.clear()
    supervisor.stop_all()


def test_policy_turns_collectors_off_and_on_and_unavailable_ones_are_reported() -> None:
    collector, unavailable = Crashing(), Unavailable()
    supervisor = CollectorSupervisor(
        {"downloads": collector, "clipboard": unavailable}, sink=Sink(), record=lambda draft: None
    )
    supervisor.apply(PolicyDocument(version=1))
    assert supervisor.states() == {"downloads": "running", "clipboard": "unavailable"}
    supervisor.apply(PolicyDocument(version=2, controls=Controls(downloads=DownloadsControl(mode="off"))))
    assert supervisor.states()["downloads"] == "off"
    assert collector._thread is None
    supervisor.apply(PolicyDocument(version=3))
    assert supervisor.states()["downloads"] == "running"
    assert collector.starts == 2
    supervisor.stop_all()
    assert supervisor.states()["downloads"] == "stopped"
