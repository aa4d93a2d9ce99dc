"""UsbCollector logic (diffing, events, enforcement outcomes) through a fake VolumeSource."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from pydantic import JsonValue

from collectors.base import CollectorContext, Decision
from collectors.usb import EnforcementError, UsbCollector, Volume, create, mount_user
from policy_client.schema import Action, Controls, EventKind, PolicyDocument, Severity, UsbControl
from tests.support.sink import Sink

STICK = Volume(
    mount_point="/media/u/STICK",
    device="/dev/sdb1",
    filesystem="vfat",
    vendor_id="0781",
    product_id="5581",
    serial="4C530001",
    bus="usb",
    label="STICK",
    size_bytes=16_000_000_000,
)


class FakeVolumes:
    def __init__(self, volumes: list[Volume] | None = None) -> None:
        self.volumes = list(volumes or [])
        self._changed = threading.Event()
        self._lock = threading.Lock()
        self.unmounted: list[Volume] = []
        self.read_only: list[Volume] = []
        self.fail_with: str | None = None
        self.closed = 0
        self.roots_seen: list[list[str]] = []

    def set(self, volumes: list[Volume]) -> None:
        with self._lock:
            self.volumes = list(volumes)
        self._changed.set()

    def snapshot(self, media_roots: list[str]) -> list[Volume]:
        self.roots_seen.append(list(media_roots))
        with self._lock:
            return list(self.volumes)

    def wait_for_change(self, timeout: float) -> bool:
        fired = self._changed.wait(timeout)
        self._changed.clear()
        return fired

    def wake(self) -> None:
        self._changed.set()

    def close(self) -> None:
        self.closed += 1

    def unmount(self, volume: Volume) -> dict[str, JsonValue]:
        if self.fail_with:
            raise EnforcementError(self.fail_with)
        self.unmounted.append(volume)
        return {"method": "fake"}

    def remount_read_only(self, volume: Volume) -> dict[str, JsonValue]:
        if self.fail_with:
            raise EnforcementError(self.fail_with)
        self.read_only.append(volume)
        return {"method": "fake-remount"}


@pytest.fixture
def running() -> Iterator[Callable[..., tuple[UsbCollector, FakeVolumes, Sink]]]:
    started: list[UsbCollector] = []

    def make(
        initial: list[Volume] | None = None, policy: PolicyDocument | None = None, **kwargs: object
    ) -> tuple[UsbCollector, FakeVolumes, Sink]:
        fake = FakeVolumes(initial)
        usb = UsbCollector(volumes=fake, **kwargs)  # type: ignore[arg-type]
        sink = Sink()
        usb.start(sink, policy or PolicyDocument(version=3))
        assert usb.wait_ready(3.0)
        started.append(usb)
        return usb, fake, sink

    yield make
    for usb in started:
        usb.stop()


def decision(action: str) -> Decision:
    return Decision(action=action, rule_id="usb", policy_version=3, severity=Severity.high)  # type: ignore[arg-type]


def test_mount_and_removal_are_reported_with_device_attributes(
    running: Callable[..., tuple[UsbCollector, FakeVolumes, Sink]],
) -> None:
    _usb, fake, sink = running()
    fake.set([STICK])
    [mounted] = sink.wait_count(1)
    assert mounted.draft.kind is EventKind.usb_mounted
    assert mounted.draft.severity is Severity.medium
    assert mounted.collector_id == "usb"
    assert mounted.target == STICK
    assert mounted.draft.data == {
        "vendor_id": "0781",
        "product_id": "5581",
        "serial": "4C530001",
        "bus": "usb",
        "label": "STICK",
        "filesystem": "vfat",
        "size_bytes": 16_000_000_000,
        "mount_point": "/media/u/STICK",
    }
    fake.set([])
    removed = sink.wait_count(2)[1]
    assert removed.draft.kind is EventKind.usb_removed
    assert removed.draft.severity is Severity.info


def test_already_mounted_volume_reported_once_at_start(
    running: Callable[..., tuple[UsbCollector, FakeVolumes, Sink]],
) -> None:
    _usb, fake, sink = running([STICK])
    [first] = sink.wait_count(1)
    assert first.draft.data["present_at_start"] is True
    other = Volume(mount_point="/media/u/B", device="/dev/sdc1")
    fake.set([STICK, other])
    items = sink.wait_count(2)
    assert [o.draft.data["mount_point"] for o in items] == ["/media/u/STICK", "/media/u/B"]


def test_media_roots_default_from_policy_and_override(
    running: Callable[..., tuple[UsbCollector, FakeVolumes, Sink]],
) -> None:
    policy = PolicyDocument(version=1, controls=Controls(usb=UsbControl(media_roots=["/mnt/removable"])))
    _usb, fake, _sink = running(policy=policy)
    assert fake.roots_seen[0] == ["/mnt/removable"]
    _usb2, fake2, _sink2 = running(policy=policy, media_roots=["/tmp/x"])
    assert fake2.roots_seen[0] == ["/tmp/x"]


def test_off_mode_reports_nothing(running: Callable[..., tuple[UsbCollector, FakeVolumes, Sink]]) -> None:
    policy = PolicyDocument(version=1, controls=Controls(usb=UsbControl(mode="off")))
    usb, fake, sink = running(policy=policy)
    fake.set([STICK])
    # Once the collector knows the volume, the snapshot was processed; nothing may have been emitted.
    deadline = time.monotonic() + 3
    while not usb.known_volumes() and time.monotonic() < deadline:
        fake._changed.wait(0.01)
    assert usb.known_volumes() == [STICK]
    assert sink.items == []


def test_block_unmounts_a_known_volume(running: Callable[..., tuple[UsbCollector, FakeVolumes, Sink]]) -> None:
    usb, fake, sink = running([STICK])
    sink.wait_count(1)
    outcome = usb.enforce(STICK, decision("block"))
    assert outcome.action is Action.blocked
    assert outcome.data == {"unmounted": True, "method": "fake"}
    assert fake.unmounted == [STICK]


def test_read_only_remounts(running: Callable[..., tuple[UsbCollector, FakeVolumes, Sink]]) -> None:
    usb, fake, sink = running([STICK])
    sink.wait_count(1)
    outcome = usb.enforce(STICK, decision("read_only"))
    assert outcome.action is Action.blocked
    assert outcome.data["read_only"] is True
    assert fake.read_only == [STICK]


@pytest.mark.parametrize(
    ("action", "expected"), [("audit", Action.observed), ("ignore", Action.observed), ("warn", Action.warned)]
)
def test_non_blocking_decisions_touch_nothing(
    running: Callable[..., tuple[UsbCollector, FakeVolumes, Sink]], action: str, expected: Action
) -> None:
    usb, fake, sink = running([STICK])
    sink.wait_count(1)
    assert usb.enforce(STICK, decision(action)).action is expected
    assert fake.unmounted == []
    assert fake.read_only == []


def test_failure_is_reported_not_raised_and_not_retried(
    running: Callable[..., tuple[UsbCollector, FakeVolumes, Sink]],
) -> None:
    usb, fake, sink = running([STICK])
    sink.wait_count(1)
    fake.fail_with = "umount: target is busy"
    outcome = usb.enforce(STICK, decision("block"))
    assert outcome.action is Action.failed
    assert "busy" in str(outcome.data["error"])
    assert fake.unmounted == []


def test_unknown_targets_are_never_enforced(running: Callable[..., tuple[UsbCollector, FakeVolumes, Sink]]) -> None:
    usb, fake, _sink = running([])
    keyboard_like = Volume(mount_point="/", device="/dev/input/event3")
    assert usb.enforce(keyboard_like, decision("block")).action is Action.failed
    assert usb.enforce("/dev/input/mouse0", decision("block")).action is Action.failed
    assert fake.unmounted == []


def test_stop_returns_promptly_and_closes_source(
    running: Callable[..., tuple[UsbCollector, FakeVolumes, Sink]],
) -> None:
    usb, fake, _sink = running(rescan_seconds=60.0)
    began = time.monotonic()
    usb.stop()
    assert time.monotonic() - began < 2.0
    assert usb.state.value == "stopped"
    assert fake.closed == 1


def test_probe_without_backend() -> None:
    usb = UsbCollector(volumes=None)
    # On Linux a backend exists; the probe must say so without side effects.
    assert usb.probe().available is (usb._volumes is not None)


def test_mount_user_from_udisks_mount_points() -> None:
    def ann_only(name: str) -> bool:
        return name == "ann"

    roots = ["/media", "/run/media"]
    assert mount_user("/media/ann/STICK", roots, is_user=ann_only) == "ann"
    assert mount_user("/run/media/ann/My Stick", roots, is_user=ann_only) == "ann"
    assert mount_user("/media/STICK", roots, is_user=ann_only) == ""  # mounted by hand, not for a user
    assert mount_user("/media/usb0/part1", roots, is_user=ann_only) == ""  # not an account
    assert mount_user("/media/ann", roots, is_user=ann_only) == ""
    assert mount_user("/mnt/ann/STICK", roots, is_user=ann_only) == ""
    assert mount_user("E:\\", roots, is_user=ann_only) == ""


def test_events_name_the_desk_user_the_volume_was_mounted_for() -> None:
    fake = FakeVolumes()
    usb = create(CollectorContext(role="service", hash_key=b"k" * 32), volumes=fake, is_user=lambda name: name == "u")
    assert isinstance(usb, UsbCollector)
    sink = Sink()
    usb.start(sink, PolicyDocument(version=3))
    try:
        assert usb.wait_ready(3.0)
        other = Volume(mount_point="/media/STICK2", device="/dev/sdc1")
        fake.set([STICK, other])
        users = {o.draft.data["mount_point"]: o.draft.user for o in sink.wait_count(2)}
        assert users == {"/media/u/STICK": "u", "/media/STICK2": ""}
    finally:
        usb.stop()


def test_usb_runs_in_the_service_only() -> None:
    assert create(CollectorContext(role="helper", hash_key=b"k" * 32)) is None
