"""Real USB collector path on Linux: loop-mounted ext4 images under the test's own media root."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from collectors.base import Decision, Observation
from collectors.usb import UsbCollector, Volume
from policy_client.schema import Action, EventKind, PolicyDocument, Severity

pytestmark = [
    pytest.mark.platform,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="loop mounts are Linux only"),
    pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() != 0, reason="loop mounts need root"),
    pytest.mark.skipif(not os.path.exists("/dev/loop-control"), reason="no loop device support (/dev/loop-control)"),
    pytest.mark.skipif(shutil.which("mkfs.ext4") is None, reason="mkfs.ext4 not installed"),
]


class RecordingSink:
    def __init__(self) -> None:
        self.observations: list[Observation] = []
        self._cond = threading.Condition()

    def emit(self, observation: Observation) -> None:
        with self._cond:
            self.observations.append(observation)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[Observation], bool], timeout: float = 5.0) -> Observation:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for obs in self.observations:
                    if predicate(obs):
                        return obs
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no matching observation within {timeout}s: {self.observations!r}")
                self._cond.wait(remaining)


def _mounted(path: Path) -> bool:
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        return any(line.split(" ")[4] == str(path) for line in fh)


def _mount_options(path: Path) -> str:
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            parts = line.split(" ")
            if parts[4] == str(path):
                return parts[5]
    raise AssertionError(f"{path} is not mounted")


class LoopImages:
    """Makes ext4 images and loop-mounts them; undoes everything on cleanup."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.images: list[Path] = []
        self.mounts: list[Path] = []

    def make(self, label: str) -> Path:
        image = self.base / f"{label}-{uuid.uuid4().hex[:8]}.img"
        subprocess.run(["truncate", "-s", "8M", str(image)], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", label, str(image)], check=True)
        self.images.append(image)
        return image

    def mount(self, image: Path, where: Path) -> None:
        where.mkdir(parents=True, exist_ok=True)
        self.mounts.append(where)
        result = subprocess.run(["mount", "-o", "loop", str(image), str(where)], capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"loop mount not permitted here: {result.stderr.strip()}")

    def cleanup(self) -> None:
        for where in self.mounts:
            if _mounted(where):
                subprocess.run(["umount", "-l", str(where)], check=False)
        for image in self.images:
            listing = subprocess.run(["losetup", "-j", str(image)], capture_output=True, text=True, check=False)
            for line in listing.stdout.splitlines():
                subprocess.run(["losetup", "-d", line.split(":", 1)[0]], check=False)


@pytest.fixture
def loops(tmp_path: Path) -> Iterator[LoopImages]:
    images = LoopImages(tmp_path)
    try:
        yield images
    finally:
        images.cleanup()


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[tuple[UsbCollector, RecordingSink, Path]]:
    media_root = tmp_path / "media"
    media_root.mkdir()
    usb = UsbCollector(media_roots=[str(media_root)])
    sink = RecordingSink()
    usb.start(sink, PolicyDocument(version=1))
    try:
        assert usb.wait_ready(5.0)
        yield usb, sink, media_root
    finally:
        usb.stop()
        assert usb.state.value == "stopped"


def _decision(action: str) -> Decision:
    return Decision(action=action, rule_id="usb.test", policy_version=1, severity=Severity.high)  # type: ignore[arg-type]


def test_loop_mount_is_reported_then_blocked_then_removed(
    collector: tuple[UsbCollector, RecordingSink, Path], loops: LoopImages
) -> None:
    usb, sink, media_root = collector
    stick = media_root / "STICK"
    loops.mount(loops.make("DWTEST"), stick)

    mounted = sink.wait_for(
        lambda o: o.draft.kind is EventKind.usb_mounted and o.draft.data["mount_point"] == str(stick)
    )
    assert mounted.draft.data["filesystem"] == "ext4"
    assert mounted.draft.data["label"] == "DWTEST"
    assert mounted.draft.severity is Severity.medium
    assert isinstance(mounted.draft.data["size_bytes"], int)
    assert mounted.draft.data["size_bytes"] == 8 * 1024 * 1024
    assert mounted.draft.data["vendor_id"] is None  # a loop device has no USB parent
    assert "present_at_start" not in mounted.draft.data
    assert isinstance(mounted.target, Volume)
    assert mounted.target.device.startswith("/dev/loop")

    outcome = usb.enforce(mounted.target, _decision("block"))
    assert outcome.action is Action.blocked, outcome
    assert outcome.data["unmounted"] is True
    assert not _mounted(stick)

    removed = sink.wait_for(
        lambda o: o.draft.kind is EventKind.usb_removed and o.draft.data["mount_point"] == str(stick)
    )
    assert removed.draft.data["filesystem"] == "ext4"


def test_read_only_remounts_in_place(collector: tuple[UsbCollector, RecordingSink, Path], loops: LoopImages) -> None:
    usb, sink, media_root = collector
    stick = media_root / "RO"
    loops.mount(loops.make("DWRO"), stick)
    mounted = sink.wait_for(
        lambda o: o.draft.kind is EventKind.usb_mounted and o.draft.data["mount_point"] == str(stick)
    )
    assert _mount_options(stick).split(",")[0] == "rw"

    outcome = usb.enforce(mounted.target, _decision("read_only"))
    assert outcome.action is Action.blocked, outcome
    assert outcome.data["read_only"] is True
    assert _mount_options(stick).split(",")[0] == "ro"
    with pytest.raises(OSError, match="Read-only"):
        (stick / "copy.txt").write_text("customer data")

    subprocess.run(["umount", str(stick)], check=True)
    sink.wait_for(lambda o: o.draft.kind is EventKind.usb_removed and o.draft.data["mount_point"] == str(stick))


def test_mount_outside_media_root_is_ignored_and_never_enforced(
    collector: tuple[UsbCollector, RecordingSink, Path], loops: LoopImages, tmp_path: Path
) -> None:
    usb, sink, media_root = collector
    outside = tmp_path / "elsewhere"
    loops.mount(loops.make("OUTSIDE"), outside)
    inside = media_root / "INSIDE"
    loops.mount(loops.make("INSIDE"), inside)

    # Both changes happened before the second mount was observed; the watcher reports in order.
    sink.wait_for(lambda o: o.draft.data.get("mount_point") == str(inside))
    assert all(o.draft.data["mount_point"] != str(outside) for o in sink.observations)

    forged = Volume(mount_point=str(outside), device="/dev/loop99")
    outcome = usb.enforce(forged, _decision("block"))
    assert outcome.action is Action.failed
    assert _mounted(outside)


def test_volume_present_at_start_is_reported(tmp_path: Path, loops: LoopImages) -> None:
    media_root = tmp_path / "media"
    stick = media_root / "EARLY"
    loops.mount(loops.make("EARLY"), stick)
    usb = UsbCollector(media_roots=[str(media_root)])
    sink = RecordingSink()
    usb.start(sink, PolicyDocument(version=1))
    try:
        obs = sink.wait_for(lambda o: o.draft.kind is EventKind.usb_mounted)
        assert obs.draft.data["present_at_start"] is True
        assert obs.draft.data["mount_point"] == str(stick)
    finally:
        usb.stop()


def test_a_volume_mounted_for_a_user_names_that_user(
    collector: tuple[UsbCollector, RecordingSink, Path], loops: LoopImages
) -> None:
    _usb, sink, media_root = collector
    stick = media_root / "root" / "FORUSER"  # udisks' /media/<user>/<label>; "root" is an account on every box
    loops.mount(loops.make("FORUSER"), stick)
    mounted = sink.wait_for(
        lambda o: o.draft.kind is EventKind.usb_mounted and o.draft.data["mount_point"] == str(stick)
    )
    assert mounted.draft.user == "root"
