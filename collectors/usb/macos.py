"""macOS USB storage backend: /Volumes listing, `diskutil info -plist` attributes, `diskutil eject`.

`snapshot`/`wait_for_change` run on the USB collector's watcher thread; `unmount` and
`remount_read_only` on the pipeline thread. Commands go through an injectable runner for tests.
"""

from __future__ import annotations

import json
import logging
import os
import plistlib
import re
import subprocess
import threading
from collections.abc import Callable
from typing import Any

from pydantic import JsonValue

from collectors.usb.model import EnforcementError, Volume

log = logging.getLogger(__name__)

Runner = Callable[[list[str]], "subprocess.CompletedProcess[bytes]"]
_TIMEOUT = 15.0
_WHOLE_DISK = re.compile(r"^(/dev/)?(disk\d+)")


def run_command(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, capture_output=True, timeout=_TIMEOUT, check=False)


def whole_disk(device_node: str) -> str:
    """`/dev/disk4s1` -> `/dev/disk4`."""
    match = _WHOLE_DISK.match(device_node)
    return f"/dev/{match.group(2)}" if match else device_node


def parse_diskutil_info(data: bytes) -> dict[str, Any]:
    try:
        info = plistlib.loads(data)
    except (plistlib.InvalidFileException, ValueError, TypeError):
        return {}
    return info if isinstance(info, dict) else {}


def is_external(info: dict[str, Any]) -> bool:
    """Removable or external physical media; disk images and internal disks are not."""
    if str(info.get("BusProtocol", "")).lower() == "disk image":
        return False
    if info.get("Internal") is False:
        return True
    return bool(info.get("RemovableMedia") or info.get("Removable") or info.get("Ejectable"))


def find_usb_ids(profile: Any, bsd_disk: str) -> tuple[str | None, str | None, str | None]:
    """(vendor_id, product_id, serial) of the USB device whose media has BSD name `bsd_disk` (`disk4`),
    searched in `system_profiler SPUSBDataType -json` output."""

    def hexid(value: Any) -> str | None:
        match = re.match(r"\s*0x([0-9a-fA-F]{1,4})", str(value or ""))
        return match.group(1).lower().zfill(4) if match else None

    def walk(node: Any) -> tuple[str | None, str | None, str | None] | None:
        if isinstance(node, dict):
            for media in node.get("Media", []) or []:
                if isinstance(media, dict) and media.get("bsd_name") == bsd_disk:
                    return hexid(node.get("vendor_id")), hexid(node.get("product_id")), node.get("serial_num")
            for child in node.get("_items", []) or []:
                found = walk(child)
                if found:
                    return found
        elif isinstance(node, list):
            for child in node:
                found = walk(child)
                if found:
                    return found
        return None

    items = profile.get("SPUSBDataType", []) if isinstance(profile, dict) else []
    return walk(items) or (None, None, None)


class MacVolumeSource:
    """Polls the /Volumes listing (cheap: one readdir) and describes new entries with diskutil."""

    def __init__(
        self, *, volumes_dir: str = "/Volumes", runner: Runner = run_command, poll_interval: float = 0.5
    ) -> None:
        self._dir = volumes_dir
        self._runner = runner
        self._interval = poll_interval
        self._wake = threading.Event()
        self._listing: frozenset[str] | None = None
        self._cache: dict[str, Volume | None] = {}

    def _list(self) -> frozenset[str]:
        try:
            return frozenset(os.listdir(self._dir))
        except OSError:
            return frozenset()

    def snapshot(self, media_roots: list[str]) -> list[Volume]:
        """`media_roots` is a Linux notion; macOS mounts removable media under /Volumes."""
        listing = self._list()
        self._listing = listing
        found: dict[str, Volume | None] = {}
        for name in sorted(listing):
            path = os.path.join(self._dir, name)
            if path in self._cache:
                found[path] = self._cache[path]
            elif os.path.ismount(path):
                found[path] = self._describe(path)
        self._cache = found
        return [v for v in found.values() if v is not None]

    def _describe(self, path: str) -> Volume | None:
        info = parse_diskutil_info(self._run(["diskutil", "info", "-plist", path]))
        if not info or not is_external(info):
            return None
        node = str(info.get("DeviceNode") or "")
        vendor = product = serial = None
        if str(info.get("BusProtocol", "")).upper() == "USB" and node:
            try:
                profile = json.loads(self._run(["system_profiler", "SPUSBDataType", "-json"]) or b"{}")
            except json.JSONDecodeError:
                profile = {}
            vendor, product, serial = find_usb_ids(profile, whole_disk(node).removeprefix("/dev/"))
        size = info.get("TotalSize") or info.get("Size")
        return Volume(
            mount_point=path,
            device=node or path,
            filesystem=info.get("FilesystemType") or info.get("FilesystemName"),
            vendor_id=vendor,
            product_id=product,
            serial=serial,
            bus=str(info["BusProtocol"]).lower() if info.get("BusProtocol") else None,
            label=info.get("VolumeName") or None,
            size_bytes=int(size) if isinstance(size, int) else None,
        )

    def _run(self, argv: list[str]) -> bytes:
        try:
            return self._runner(argv).stdout or b""
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("%s failed: %s", argv[0], exc)
            return b""

    def wait_for_change(self, timeout: float) -> bool:
        """Poll the listing every `poll_interval` until it differs, `timeout` passes or `wake`."""
        remaining = timeout
        while remaining > 0:
            step = min(self._interval, remaining)
            if self._wake.wait(step):
                self._wake.clear()
                return False
            remaining -= step
            if self._list() != self._listing:
                return True
        return False

    def wake(self) -> None:
        self._wake.set()

    def close(self) -> None:
        self._listing = None

    def unmount(self, volume: Volume) -> dict[str, JsonValue]:
        target = whole_disk(volume.device) if volume.device.startswith("/dev/disk") else volume.mount_point
        result = self._runner(["diskutil", "eject", target])
        if result.returncode == 0:
            return {"method": "diskutil eject"}
        result = self._runner(["diskutil", "unmount", volume.mount_point])
        if result.returncode != 0:
            raise EnforcementError(f"diskutil unmount: exit {result.returncode} ({_tail(result.stderr)})")
        return {"method": "diskutil unmount"}

    def remount_read_only(self, volume: Volume) -> dict[str, JsonValue]:
        if not volume.device.startswith("/dev/disk"):
            raise EnforcementError("no device node to remount read-only")
        result = self._runner(["diskutil", "unmount", volume.mount_point])
        if result.returncode != 0:
            raise EnforcementError(f"diskutil unmount: exit {result.returncode} ({_tail(result.stderr)})")
        result = self._runner(["diskutil", "mount", "readOnly", volume.device])
        if result.returncode != 0:
            # The volume stays unmounted: blocked rather than writable.
            return {"method": "diskutil unmount", "read_only": False, "fallback": "unmounted"}
        return {"method": "diskutil mount readOnly"}


def _tail(data: bytes | None) -> str:
    lines = (data or b"").decode("utf-8", "replace").strip().splitlines()
    return lines[-1][:200] if lines else "no detail"
