"""Values and the adapter protocol shared by the USB storage backends.

Pure data; used from the collector's watcher thread and the pipeline thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pydantic import JsonValue


@dataclass(frozen=True, slots=True)
class Volume:
    """One mounted removable volume and what is known about the device behind it.

    Attributes the OS does not know (a loop device has no vendor) are None.
    """

    mount_point: str
    device: str
    """Block device node (`/dev/sdb1`), Windows drive root (`E:\\`) or macOS BSD node (`/dev/disk4s1`)."""
    filesystem: str | None = None
    vendor_id: str | None = None
    product_id: str | None = None
    serial: str | None = None
    bus: str | None = None
    label: str | None = None
    size_bytes: int | None = None

    @property
    def key(self) -> tuple[str, str]:
        """Identity within one mount table: the same device mounted at the same place."""
        return (self.mount_point, self.device)

    def event_data(self) -> dict[str, JsonValue]:
        """The metadata that goes into `usb.*` events (never file names or content)."""
        return {
            "vendor_id": self.vendor_id,
            "product_id": self.product_id,
            "serial": self.serial,
            "bus": self.bus,
            "label": self.label,
            "filesystem": self.filesystem,
            "size_bytes": self.size_bytes,
            "mount_point": self.mount_point,
        }


class EnforcementError(Exception):
    """An OS refused an unmount, eject or remount; the message says why (no secrets)."""


class VolumeSource(Protocol):
    """Per-OS adapter the `UsbCollector` drives.

    `snapshot` and `wait_for_change` are called on the collector's watcher thread; `wake` from the
    thread that stops the collector; `unmount`/`remount_read_only` from the pipeline thread.
    """

    def snapshot(self, media_roots: list[str]) -> list[Volume]:
        """The removable volumes mounted right now (on Linux: only those under `media_roots`)."""
        ...

    def wait_for_change(self, timeout: float) -> bool:
        """Block until the mount table may have changed (True), `timeout` passed or `wake` was called."""
        ...

    def wake(self) -> None:
        """Make a pending `wait_for_change` return now. Thread-safe."""
        ...

    def close(self) -> None:
        """Release OS handles; the source may be reopened by the next `wait_for_change`."""
        ...

    def unmount(self, volume: Volume) -> dict[str, JsonValue]:
        """Unmount (and eject or power off where possible). Returns details; raises `EnforcementError`."""
        ...

    def remount_read_only(self, volume: Volume) -> dict[str, JsonValue]:
        """Make the volume read-only in place; raises `EnforcementError` where the OS cannot."""
        ...
