"""Linux USB storage backend: mount-table changes from /proc/self/mountinfo plus udev attributes.

`wait_for_change`/`snapshot` run on the USB collector's watcher thread; `unmount` and
`remount_read_only` run on the pipeline thread; `wake` on whichever thread stops the collector.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import JsonValue

from collectors.usb.model import EnforcementError, Volume

log = logging.getLogger(__name__)

MOUNTINFO = "/proc/self/mountinfo"
_COMMAND_TIMEOUT = 8.0


@dataclass(frozen=True, slots=True)
class MountEntry:
    mount_point: str
    source: str
    fstype: str
    options: str


def _unescape(field: str) -> str:
    r"""mountinfo escapes space, tab, newline and backslash as octal (`\040`)."""
    if "\\" not in field:
        return field
    out: list[str] = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[MountEntry]:
    """Parse /proc/<pid>/mountinfo (proc(5)); malformed lines are skipped."""
    entries: list[MountEntry] = []
    for line in text.splitlines():
        parts = line.split(" ")
        try:
            sep = parts.index("-", 6)
            entries.append(
                MountEntry(
                    mount_point=_unescape(parts[4]),
                    source=_unescape(parts[sep + 2]),
                    fstype=parts[sep + 1],
                    options=parts[5],
                )
            )
        except (ValueError, IndexError):
            continue
    return entries


def under_roots(path: str, roots: list[str]) -> bool:
    """True when `path` lies strictly below one of `roots` (a root itself is never a volume)."""
    return any(path != root and path.startswith(root.rstrip("/") + "/") for root in roots)


def _canonical_roots(media_roots: list[str]) -> list[str]:
    return [os.path.realpath(os.path.expanduser(root)) for root in media_roots]


Runner = Callable[[list[str]], "subprocess.CompletedProcess[str]"]


def run_command(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT, check=False)


class UdevAttributes:
    """Looks up vendor/product/serial/bus/label/filesystem/size of a block device.

    udev properties (ID_*) come first; without a udev database (containers) it falls back to
    sysfs attributes of the parent USB device and `blkid` for label and filesystem.
    """

    def __init__(self, *, sys_block: str = "/sys/class/block", runner: Runner = run_command) -> None:
        self._sys_block = sys_block
        self._runner = runner
        self._context: Any = None

    def lookup(self, devnode: str) -> dict[str, str | int | None]:
        attrs: dict[str, str | int | None] = {}
        if not devnode.startswith("/dev/"):
            return attrs
        attrs.update(self._from_udev(devnode))
        attrs["size_bytes"] = self._size(devnode)
        if attrs.get("filesystem") is None or attrs.get("label") is None:
            for name, value in self._from_blkid(devnode).items():
                if attrs.get(name) is None:
                    attrs[name] = value
        return attrs

    def _from_udev(self, devnode: str) -> dict[str, str | int | None]:
        try:
            import pyudev  # lazy: optional on non-Linux, absent in some minimal installs

            if self._context is None:
                self._context = pyudev.Context()
            device = pyudev.Devices.from_device_file(self._context, devnode)
            props: Mapping[str, str] = device.properties
            attrs: dict[str, str | int | None] = {
                "vendor_id": props.get("ID_VENDOR_ID"),
                "product_id": props.get("ID_MODEL_ID"),
                "serial": props.get("ID_SERIAL_SHORT"),
                "bus": props.get("ID_BUS"),
                "label": props.get("ID_FS_LABEL"),
                "filesystem": props.get("ID_FS_TYPE"),
            }
            if attrs["vendor_id"] is None:
                usb = device.find_parent("usb", "usb_device")
                if usb is not None:
                    attrs["vendor_id"] = _sysattr(usb.attributes, "idVendor")
                    attrs["product_id"] = _sysattr(usb.attributes, "idProduct")
                    attrs["serial"] = _sysattr(usb.attributes, "serial")
                    attrs["bus"] = "usb"
            return attrs
        except Exception as exc:  # noqa: BLE001 - enrichment is best effort; the mount is still reported
            log.debug("no udev attributes for %s: %s", devnode, exc)
            return {}

    def _size(self, devnode: str) -> int | None:
        name = os.path.basename(os.path.realpath(devnode))
        try:
            with open(os.path.join(self._sys_block, name, "size"), encoding="ascii") as fh:
                return int(fh.read().strip()) * 512
        except (OSError, ValueError):
            return None

    def _from_blkid(self, devnode: str) -> dict[str, str | int | None]:
        if shutil.which("blkid") is None:
            return {}
        try:
            # No cache (-c /dev/null): blkid's cache answers for the previous medium behind a reused device
            # node (the next stick on /dev/sdb1, the next image on /dev/loop3).
            result = self._runner(["blkid", "-c", "/dev/null", "-o", "export", devnode])
        except (OSError, subprocess.SubprocessError):
            return {}
        values = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
        return {"label": values.get("LABEL"), "filesystem": values.get("TYPE")}


def _sysattr(attributes: Any, name: str) -> str | None:
    try:
        value = attributes.asstring(name)
    except (KeyError, UnicodeDecodeError, OSError):
        return None
    return str(value).strip() or None


class LinuxVolumeSource:
    """Watches the mount table with poll(2) (POLLPRI|POLLERR on mountinfo); woken by a self-pipe."""

    def __init__(
        self,
        *,
        mountinfo: str = MOUNTINFO,
        attributes: UdevAttributes | None = None,
        runner: Runner = run_command,
        own_mount_ns: str = "/proc/self/ns/mnt",
        host_mount_ns: str = "/proc/1/ns/mnt",
    ) -> None:
        self._own_ns = own_mount_ns
        self._host_ns = host_mount_ns
        self._mountinfo_path = mountinfo
        self._attributes = attributes or UdevAttributes()
        self._runner = runner
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._wake_pipe: tuple[int, int] | None = None
        self._woken = False
        self._poller: Any = None  # select.poll, which mypy --platform win32 does not know
        self._cache: dict[tuple[str, str], Volume] = {}

    # --- watching (watcher thread) ---------------------------------------------------------------

    def _open(self) -> int:
        if sys.platform == "win32":
            raise OSError("the mount table watcher needs poll(2) and /proc (Linux)")
        else:
            with self._lock:
                if self._fd is None:
                    self._fd = os.open(self._mountinfo_path, os.O_RDONLY | os.O_CLOEXEC)
                    wake_r, wake_w = os.pipe()
                    os.set_blocking(wake_r, False)
                    os.set_blocking(wake_w, False)
                    self._wake_pipe = (wake_r, wake_w)
                    self._poller = select.poll()
                    self._poller.register(self._fd, select.POLLPRI | select.POLLERR)
                    self._poller.register(wake_r, select.POLLIN)
                return self._fd

    def _read_table(self) -> str:
        # Re-reading through the polled descriptor is what re-arms POLLPRI (proc(5)).
        fd = self._open()
        os.lseek(fd, 0, os.SEEK_SET)
        chunks: list[bytes] = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks).decode("utf-8", "surrogateescape")

    def snapshot(self, media_roots: list[str]) -> list[Volume]:
        roots = _canonical_roots(media_roots)
        seen: dict[tuple[str, str], Volume] = {}
        for entry in parse_mountinfo(self._read_table()):
            if not under_roots(entry.mount_point, roots):
                continue
            key = (entry.mount_point, entry.source)
            volume = self._cache.get(key) or self._describe(entry)
            seen[key] = volume
        self._cache = seen
        return list(seen.values())

    def _describe(self, entry: MountEntry) -> Volume:
        attrs = self._attributes.lookup(entry.source)

        def text(name: str) -> str | None:
            value = attrs.get(name)
            return value if isinstance(value, str) and value else None

        size = attrs.get("size_bytes")
        return Volume(
            mount_point=entry.mount_point,
            device=entry.source,
            filesystem=entry.fstype or text("filesystem"),
            vendor_id=text("vendor_id"),
            product_id=text("product_id"),
            serial=text("serial"),
            bus=text("bus"),
            label=text("label"),
            size_bytes=size if isinstance(size, int) else None,
        )

    def wait_for_change(self, timeout: float) -> bool:
        self._open()
        poller, pipe = self._poller, self._wake_pipe
        if poller is None or pipe is None or self._woken:
            self._woken = False
            return False
        changed = False
        for fd, _mask in poller.poll(max(0, int(timeout * 1000))):
            if fd == pipe[0]:
                self._woken = False
                with contextlib.suppress(BlockingIOError):
                    while os.read(pipe[0], 512):
                        pass
            else:
                changed = True
        return changed

    def wake(self) -> None:
        with self._lock:
            self._woken = True
            if self._wake_pipe is not None:
                with contextlib.suppress(BlockingIOError, OSError):
                    os.write(self._wake_pipe[1], b"x")

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if self._wake_pipe is not None:
                for fd in self._wake_pipe:
                    os.close(fd)
                self._wake_pipe = None
            self._poller = None
            self._woken = False

    # --- enforcement (pipeline thread) -----------------------------------------------------------

    def _in_host_namespace(self, argv: list[str]) -> list[str]:
        """A sandboxed service (systemd's ProtectSystem gives it a mount namespace of its own) would unmount only in
        its own view and report success while the desk still sees the stick: act in PID 1's namespace instead."""
        try:
            private = os.readlink(self._own_ns) != os.readlink(self._host_ns)
        except OSError:
            return argv  # cannot tell (no /proc/1 access): the namespace we run in is the only one we can use
        nsenter = shutil.which("nsenter")
        if private and nsenter:
            return [nsenter, f"--mount={self._host_ns}", "--", *argv]
        return argv

    def unmount(self, volume: Volume) -> dict[str, JsonValue]:
        details: dict[str, JsonValue] = {}
        errors: list[str] = []
        if shutil.which("udisksctl") and volume.device.startswith("/dev/"):
            result = self._run(["udisksctl", "unmount", "--no-user-interaction", "-b", volume.device])
            if result is not None and result.returncode == 0:
                details["method"] = "udisks"
            else:
                errors.append(_reason(result, "udisksctl unmount"))
        if "method" not in details:
            result = self._run(self._in_host_namespace(["umount", volume.mount_point]))
            if result is None or result.returncode != 0:
                errors.append(_reason(result, "umount"))
                raise EnforcementError("; ".join(errors))
            details["method"] = "umount"
        if volume.bus == "usb" and shutil.which("udisksctl"):
            # Power-off is best effort: the volume is already gone, the stick just stays visible.
            disk = _parent_disk(volume.device)
            result = self._run(["udisksctl", "power-off", "--no-user-interaction", "-b", disk])
            details["powered_off"] = result is not None and result.returncode == 0
        return details

    def remount_read_only(self, volume: Volume) -> dict[str, JsonValue]:
        result = self._run(self._in_host_namespace(["mount", "-o", "remount,ro", volume.mount_point]))
        if result is None or result.returncode != 0:
            raise EnforcementError(_reason(result, "mount -o remount,ro"))
        return {"method": "remount"}

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[str] | None:
        try:
            return self._runner(argv)
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("%s failed to run: %s", argv[0], exc)
            return None


def _reason(result: subprocess.CompletedProcess[str] | None, what: str) -> str:
    if result is None:
        return f"{what}: could not run"
    detail = (result.stderr or result.stdout or "").strip().splitlines()
    return f"{what}: exit {result.returncode}" + (f" ({detail[-1][:200]})" if detail else "")


def _parent_disk(devnode: str) -> str:
    """`/dev/sdb1` -> `/dev/sdb`, `/dev/nvme0n1p1` -> `/dev/nvme0n1` (sysfs knows the parent)."""
    name = os.path.basename(os.path.realpath(devnode))
    link = os.path.realpath(os.path.join("/sys/class/block", name))
    if os.path.exists(os.path.join(link, "partition")):
        return "/dev/" + os.path.basename(os.path.dirname(link))
    return devnode
