"""Real capture-tool detection on this OS: processes started under listed names, terminated on block; in the
service role (root) a desk user's tool is terminated and root's is left alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from collectors.base import CollectorContext, Decision, Observation
from collectors.capture import ScreenCaptureCollector, ToolTarget, create
from collectors.capture.process_scan import AdaptiveInterval
from policy_client.schema import Action, Controls, EventKind, PolicyDocument, ScreenCaptureControl, Severity

SLEEP = shutil.which("sleep")
pytestmark = [
    pytest.mark.platform,
    pytest.mark.skipif(SLEEP is None or os.name != "posix", reason="needs a POSIX sleep binary"),
]


class Sink:
    def __init__(self) -> None:
        self.items: list[tuple[float, Observation]] = []
        self.cond = threading.Condition()

    def emit(self, observation: Observation) -> None:
        with self.cond:
            self.items.append((time.monotonic(), observation))
            self.cond.notify_all()

    def wait_for(self, predicate: Callable[[Observation], bool], timeout: float = 6.0) -> tuple[float, Observation]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for at, obs in self.items:
                    if predicate(obs):
                        return at, obs
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching observation within {timeout}s")
                self.cond.wait(left)


class Tools:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.procs: list[subprocess.Popen[bytes]] = []

    def binary(self, name: str) -> Path:
        assert SLEEP is not None
        path = self.base / name
        shutil.copy(SLEEP, path)
        path.chmod(0o755)
        return path

    def run(self, path: Path) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([str(path), "600"])
        self.procs.append(proc)
        return proc

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(5)


@pytest.fixture
def tools(tmp_path: Path) -> Iterator[Tools]:
    t = Tools(tmp_path)
    try:
        yield t
    finally:
        t.cleanup()


def _start(control: ScreenCaptureControl) -> tuple[ScreenCaptureCollector, Sink]:
    collector = ScreenCaptureCollector(interval=AdaptiveInterval())
    sink = Sink()
    collector.start(sink, PolicyDocument(version=2, controls=Controls(screen_capture=control)))
    assert collector.wait_ready(10.0)
    return collector, sink


def _is_pid(pid: int) -> Callable[[Observation], bool]:
    return lambda o: o.draft.kind is EventKind.capture_tool_started and o.draft.data["pid"] == pid


def test_listed_tool_is_detected_within_budget_and_terminated(tools: Tools) -> None:
    other = tools.run(tools.binary("notatool"))
    collector, sink = _start(ScreenCaptureControl(mode="block", hotkeys=False))
    try:
        began = time.monotonic()
        tool = tools.run(tools.binary("flameshot"))
        at, obs = sink.wait_for(_is_pid(tool.pid))
        assert at - began <= 2.0, f"detected after {at - began:.2f}s (budget 2 s)"
        assert obs.draft.data["name"] == "flameshot"
        assert obs.draft.data["exe"] == str(tools.base / "flameshot")
        assert obs.draft.data["same_user"] is True
        assert obs.draft.severity is Severity.medium
        assert all(o.draft.data["pid"] != other.pid for _, o in sink.items)

        decision = Decision(action="terminate", rule_id="capture.block", policy_version=2, severity=Severity.high)
        outcome = collector.enforce(obs.target, decision)
        assert outcome.action is Action.terminated, outcome
        assert outcome.data["how"] in ("terminated", "killed")
        # psutil reaps its own children, so Popen may only see ECHILD: check the pid itself is gone.
        tool.wait(5)
        assert not psutil.pid_exists(tool.pid)
        assert other.poll() is None  # only the reported tool is touched
    finally:
        collector.stop()


def test_policy_executable_path_is_matched_and_a_stale_target_is_not_killed(tools: Tools) -> None:
    custom = tools.binary("custom-grabber")
    collector, sink = _start(ScreenCaptureControl(mode="audit", hotkeys=False, executable_paths=[str(custom)]))
    try:
        proc = tools.run(custom)
        _, obs = sink.wait_for(_is_pid(proc.pid))
        assert obs.draft.data["name"] == "custom-grabber"
        assert isinstance(obs.target, ToolTarget)

        # A target whose start time differs (pid reuse) must never be terminated.
        stale = ToolTarget(pid=proc.pid, create_time=obs.target.create_time - 100, name="x", may_terminate=True)
        decision = Decision(action="terminate", rule_id="r", policy_version=2, severity=Severity.high)
        assert collector.enforce(stale, decision).action is Action.failed
        assert proc.poll() is None
    finally:
        collector.stop()


# --- the service (root): tools of every desk user ----------------------------------------------------------------


def _unused_uid() -> int:
    """A uid in the range of people's accounts that no account uses (no useradd needed, nothing to clean up)."""
    import pwd

    for uid in range(61000, 62000):
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
    raise AssertionError("no free uid between 61000 and 62000")


@pytest.fixture
def shared_tools() -> Iterator[Tools]:
    """Tools in a folder another uid can execute from (pytest's tmp_path is root-only)."""
    base = Path(tempfile.mkdtemp(prefix="dw-capture-", dir="/tmp"))
    base.chmod(0o755)
    t = Tools(base)
    try:
        yield t
    finally:
        t.cleanup()
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="starting a process as another uid needs root"
)
def test_service_terminates_a_desk_users_tool_and_leaves_roots_alone(shared_tools: Tools) -> None:
    uid = _unused_uid()
    ctx = CollectorContext(role="service", hash_key=b"k" * 32)
    collector = create(ctx, interval=AdaptiveInterval())
    assert isinstance(collector, ScreenCaptureCollector)
    sink = Sink()
    collector.start(
        sink, PolicyDocument(version=2, controls=Controls(screen_capture=ScreenCaptureControl(mode="block")))
    )
    assert collector.wait_ready(10.0)
    try:
        binary = shared_tools.binary("flameshot")
        theirs = subprocess.Popen([str(binary), "600"], user=uid, group=uid, extra_groups=[])
        shared_tools.procs.append(theirs)
        roots = shared_tools.run(binary)
        _, desk = sink.wait_for(_is_pid(theirs.pid))
        _, system = sink.wait_for(_is_pid(roots.pid))
        assert desk.draft.user == str(uid)  # no account name for this uid: psutil reports the number
        assert desk.draft.data["desk_user"] is True
        assert (system.draft.user, system.draft.data["desk_user"]) == ("root", False)

        decision = Decision(action="terminate", rule_id="capture.block", policy_version=2, severity=Severity.high)
        outcome = collector.enforce(desk.target, decision)
        assert outcome.action is Action.terminated, outcome
        theirs.wait(5)
        assert not psutil.pid_exists(theirs.pid)
        assert collector.enforce(system.target, decision).action is Action.failed
        assert roots.poll() is None
    finally:
        collector.stop()
