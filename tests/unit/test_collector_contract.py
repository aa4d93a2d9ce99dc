"""The contract every registered collector keeps, in every role its factory builds it for.

One suite, parametrised over `collectors.base.REGISTRY` x roles (keyring's `BackendBasicTests` is the model): the
factory answers consistently, `probe` is cheap and quiet, a collector starts and stops within `stop_timeout` and
leaves no thread behind, its events are well-formed drafts without raw content, and `enforce` never raises. Real
OS backends run where that is harmless (mount table, inotify, process list, offscreen clipboard); events are
triggered through each collector's adapter. A collector added to the registry fails here until it has a harness.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
from pydantic import JsonValue

from collectors.base import (
    REGISTRY,
    Collector,
    CollectorContext,
    CollectorRole,
    CollectorState,
    Decision,
    Outcome,
    Probe,
    UserHome,
    load_collector_factory,
)
from collectors.capture.process_scan import AdaptiveInterval, ProcessInfo
from collectors.usb import Volume
from policy_client.schema import EventDraft, EventKind, PolicyDocument, Severity
from tests.support.sink import Sink

REPO = Path(__file__).resolve().parents[2]
ROLES: tuple[CollectorRole, ...] = ("service", "helper")
KEY = b"k" * 32
CARD = "4111 1111 1111 1111"
PROBE_BUDGET_S = 1.0

EXPECTED_ROLES: dict[str, set[str]] = {
    "usb": {"service"},
    "downloads": {"service"},
    "clipboard": {"helper"},
    "screen_capture": {"service", "helper"},
}
"""ARCHITECTURE.md section 6: what the privileged service and the per-session helper each run."""

KINDS: dict[str, set[EventKind]] = {
    "usb": {EventKind.usb_mounted, EventKind.usb_removed},
    "downloads": {EventKind.download_detected},
    "clipboard": {EventKind.clipboard_sensitive},
    "screen_capture": {EventKind.capture_tool_started, EventKind.capture_hotkey},
}


def state_of(collector: Collector) -> CollectorState:
    """The collector's state now (a call, so the type checker does not carry an earlier answer forward)."""
    return collector.state


def default_policy() -> PolicyDocument:
    return PolicyDocument.model_validate_json((REPO / "assets" / "policy" / "default.json").read_bytes())


# --- fakes for the adapters -------------------------------------------------------------------------------------


class FakeVolumes:
    def __init__(self) -> None:
        self.volumes: list[Volume] = []
        self._changed = threading.Event()

    def set(self, volumes: list[Volume]) -> None:
        self.volumes = list(volumes)
        self._changed.set()

    def snapshot(self, media_roots: list[str]) -> list[Volume]:
        return list(self.volumes)

    def wait_for_change(self, timeout: float) -> bool:
        fired = self._changed.wait(timeout)
        self._changed.clear()
        return fired

    def wake(self) -> None:
        self._changed.set()

    def close(self) -> None:
        pass

    def unmount(self, volume: Volume) -> dict[str, JsonValue]:
        return {"method": "fake"}

    def remount_read_only(self, volume: Volume) -> dict[str, JsonValue]:
        return {"method": "fake"}


class FakeTable:
    def __init__(self) -> None:
        self.procs: dict[int, ProcessInfo] = {}
        self.lock = threading.Lock()
        self.terminated: list[int] = []

    def add(self, info: ProcessInfo) -> None:
        with self.lock:
            self.procs[info.pid] = info

    def pids(self) -> list[int]:
        with self.lock:
            return list(self.procs)

    def inspect(self, pid: int) -> ProcessInfo | None:
        with self.lock:
            return self.procs.get(pid)

    def terminate(self, pid: int, create_time: float, *, timeout: float) -> str:
        self.terminated.append(pid)
        return "terminated"


class FakeKeys:
    def __init__(self) -> None:
        self.press: Callable[[str | None], None] | None = None
        self.release: Callable[[str | None], None] | None = None

    def start(self, on_press: Callable[[str | None], None], on_release: Callable[[str | None], None]) -> None:
        self.press, self.release = on_press, on_release

    def stop(self) -> None:
        self.press = self.release = None

    def set_suppress_print_screen(self, suppress: bool) -> bool:
        return False


class FakeClipboard:
    def __init__(self) -> None:
        self.text: str | None = None
        self._cb: Callable[[], None] | None = None

    def connect(self, on_change: Callable[[], None]) -> None:
        self._cb = on_change

    def disconnect(self) -> None:
        self._cb = None

    def read_text(self) -> str | None:
        return self.text

    def has_image(self) -> bool:
        return False

    def set_text(self, text: str) -> None:
        self.copy(text)

    def clear(self) -> None:
        self.copy(None)

    def copy(self, text: str | None) -> None:
        self.text = text
        if self._cb is not None:
            self._cb()


# --- one harness per (collector id, role) -----------------------------------------------------------------------


@dataclass
class Trigger:
    """Adapters for the factory, and how to make the collector built with them report one observation."""

    adapters: dict[str, Any] = field(default_factory=dict)
    fire: Callable[[], None] = lambda: None
    user: str = ""
    """The user the event must name ("" = the runtime's own user)."""
    secret: str = ""
    """Raw content the trigger used, which must not appear anywhere in the observation."""


def _usb_service(_: Path) -> Trigger:
    volumes = FakeVolumes()
    stick = Volume(mount_point="/media/ann/STICK", device="/dev/sdz1", label="STICK", bus="usb")
    return Trigger({"volumes": volumes, "is_user": lambda n: n == "ann"}, lambda: volumes.set([stick]), user="ann")


def _downloads_service(homes: Path) -> Trigger:
    def fire() -> None:
        (homes / "ann" / "Downloads" / "customers.csv").write_text(f"name,card\nPriya,{CARD}\n")

    return Trigger({"settle_seconds": 0.05}, fire, user="ann", secret=CARD)


def _capture_service(_: Path) -> Trigger:
    table = FakeTable()
    tool = ProcessInfo(4242, "flameshot", "/usr/bin/flameshot", "ann", time.time(), 1001)
    adapters = {"processes": table, "keys": FakeKeys(), "interval": AdaptiveInterval(fast=0.01, slow=0.02)}
    return Trigger(adapters, lambda: table.add(tool), user="ann")


def _capture_helper(_: Path) -> Trigger:
    keys = FakeKeys()

    def fire() -> None:
        assert keys.press is not None
        assert keys.release is not None
        keys.press("print_screen")
        keys.release("print_screen")

    return Trigger({"keys": keys, "processes": FakeTable()}, fire)


def _clipboard_helper(_: Path) -> Trigger:
    board = FakeClipboard()
    return Trigger({"backend_factory": lambda: board}, lambda: board.copy(f"pay with {CARD}"), secret=CARD)


HARNESSES: dict[tuple[str, str], Callable[[Path], Trigger]] = {
    ("usb", "service"): _usb_service,
    ("downloads", "service"): _downloads_service,
    ("screen_capture", "service"): _capture_service,
    ("screen_capture", "helper"): _capture_helper,
    ("clipboard", "helper"): _clipboard_helper,
}


def _context(role: CollectorRole, tmp_path: Path) -> CollectorContext:
    homes = tmp_path / "home"
    for user in ("ann", "bob"):
        (homes / user / "Downloads").mkdir(parents=True, exist_ok=True)
    return CollectorContext(
        role=role,
        hash_key=KEY,
        quarantine_dir=str(tmp_path / "service" / "quarantine"),
        monitored_homes=lambda: [UserHome(u, str(homes / u)) for u in ("ann", "bob")],
        clear_clipboard_image=lambda: True,
    )


def _cases() -> list[tuple[str, CollectorRole]]:
    """Every (id, role) the registry builds a collector for (construction is side-effect free, so asking is cheap)."""
    found: list[tuple[str, CollectorRole]] = []
    for collector_id in REGISTRY:
        for role in ROLES:
            if load_collector_factory(collector_id)(CollectorContext(role=role, hash_key=KEY)) is not None:
                found.append((collector_id, role))
    return found


CASES = _cases()


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.is_alive()}


def _json(observation_draft: EventDraft) -> str:
    return json.dumps(observation_draft.model_dump(mode="json"))


# --- the suite ----------------------------------------------------------------------------------------------------


def test_every_registered_collector_runs_where_the_architecture_says() -> None:
    built = {cid: {role for c, role in CASES if c == cid} for cid in REGISTRY}
    assert built == EXPECTED_ROLES
    assert set(HARNESSES) == set(CASES), "every (collector, role) needs a contract harness"


@pytest.mark.parametrize("collector_id", sorted(REGISTRY))
@pytest.mark.parametrize("role", ROLES)
def test_factory_answers_consistently_and_constructs_without_side_effects(
    collector_id: str, role: CollectorRole, tmp_path: Path
) -> None:
    factory = load_collector_factory(collector_id)
    ctx = _context(role, tmp_path)
    before = _threads()
    first, second = factory(ctx), factory(ctx)
    assert _threads() == before  # building starts nothing
    assert (first is None) == (second is None) == (role not in EXPECTED_ROLES[collector_id])
    for built in (first, second):
        if built is not None:
            assert isinstance(built, Collector)
            assert built.id == collector_id
            assert state_of(built) is CollectorState.stopped
    assert first is not second or first is None


class CollectorContract:
    """The tests every (collector, role) passes; `built` is made by the registry's factory with fake adapters."""

    @pytest.fixture(params=CASES, ids=[f"{cid}-{role}" for cid, role in CASES])
    def case(self, request: pytest.FixtureRequest) -> tuple[str, CollectorRole]:
        cid, role = request.param
        if cid == "clipboard":
            request.getfixturevalue("qapp")  # the clipboard lives on a Qt GUI thread
        return cid, role

    @pytest.fixture
    def built(self, case: tuple[str, CollectorRole], tmp_path: Path) -> Iterator[tuple[Collector, Trigger]]:
        cid, role = case
        trigger = HARNESSES[case](tmp_path / "home")
        collector = load_collector_factory(cid)(_context(role, tmp_path), **trigger.adapters)
        assert collector is not None
        yield collector, trigger
        collector.stop()

    def test_probe_is_cheap_and_does_not_raise(self, case: tuple[str, CollectorRole], tmp_path: Path) -> None:
        cid, role = case
        collector = load_collector_factory(cid)(_context(role, tmp_path))  # the real OS adapters
        assert collector is not None
        before = _threads()
        began = time.perf_counter()
        probe = collector.probe()
        assert time.perf_counter() - began < PROBE_BUDGET_S
        assert isinstance(probe, Probe)
        assert probe.available or probe.reason
        assert _threads() == before

    def test_real_backend_starts_and_stops_within_its_timeout_leaving_no_thread(
        self, case: tuple[str, CollectorRole], tmp_path: Path
    ) -> None:
        cid, role = case
        collector = load_collector_factory(cid)(_context(role, tmp_path))  # the real OS adapters
        assert collector is not None
        if not collector.probe().available:
            pytest.skip(f"{cid} is unavailable here: {collector.probe().reason}")
        before = _threads()
        collector.start(Sink(), default_policy())
        try:
            # Unavailable is honest where the OS source is missing (no display for the keyboard hook).
            assert state_of(collector) in (CollectorState.running, CollectorState.unavailable)
        finally:
            began = time.monotonic()
            collector.stop()
            assert time.monotonic() - began < collector.stop_timeout
        assert state_of(collector) is CollectorState.stopped
        assert _threads() <= before, f"threads left behind: {_threads() - before}"

    def test_events_are_well_formed_and_carry_no_raw_content(self, built: tuple[Collector, Trigger]) -> None:
        collector, trigger = built
        before = _threads()
        sink = Sink()
        collector.start(sink, default_policy())
        assert state_of(collector) is CollectorState.running
        trigger.fire()
        [observation, *_] = sink.wait_count(1, timeout=5.0)
        draft = observation.draft
        assert isinstance(draft, EventDraft)
        assert observation.collector_id == collector.id
        assert draft.kind in KINDS[collector.id]
        assert draft.ts.tzinfo is not None
        assert draft.user == trigger.user
        dumped = _json(draft) + repr(observation.target)
        if trigger.secret:
            assert trigger.secret not in dumped
            assert trigger.secret.replace(" ", "") not in dumped
        began = time.monotonic()
        collector.stop()
        assert time.monotonic() - began < collector.stop_timeout
        assert state_of(collector) is CollectorState.stopped
        assert _threads() <= before, f"threads left behind: {_threads() - before}"

    @pytest.mark.parametrize("action", ["ignore", "audit", "warn", "block", "read_only", "mask", "clear",
                                        "quarantine", "delete", "terminate"])  # fmt: skip
    def test_enforce_never_raises_on_a_foreign_target(self, built: tuple[Collector, Trigger], action: str) -> None:
        collector, _ = built
        collector.start(Sink(), default_policy())
        decision = Decision(action=action, rule_id="contract", policy_version=0, severity=Severity.high)  # type: ignore[arg-type]
        for target in (None, "/etc/passwd", 1, object()):
            outcome = collector.enforce(target, decision)
            assert isinstance(outcome, Outcome)
            assert outcome.action.value not in ("blocked", "quarantined", "deleted", "terminated", "masked", "cleared")


class TestCollectorContract(CollectorContract):
    pass


def test_the_service_never_imports_pyside6(tmp_path: Path) -> None:
    """The service runs as root without Qt: building and starting every service collector must not load PySide6."""
    script = f"""
import sys
from pathlib import Path
from collectors.base import REGISTRY, CollectorContext, UserHome, load_collector_factory
from policy_client.schema import PolicyDocument

class Sink:
    def emit(self, observation):
        pass

home = Path({str(tmp_path)!r}) / "ann"
(home / "Downloads").mkdir(parents=True)
ctx = CollectorContext(role="service", hash_key=b"k" * 32, quarantine_dir={str(tmp_path / "q")!r},
                       monitored_homes=lambda: [UserHome("ann", str(home))])
built = {{cid: load_collector_factory(cid)(ctx) for cid in REGISTRY}}
policy = PolicyDocument(version=1)
for collector in built.values():
    if collector is not None and collector.probe().available:
        collector.start(Sink(), policy)
for collector in built.values():
    if collector is not None:
        collector.stop()
print(sorted(cid for cid, c in built.items() if c is not None))
loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("PySide6", "shiboken6"))
assert not loaded, loaded
"""
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['downloads', 'screen_capture', 'usb']"
