"""Windows USB storage backend: WM_DEVICECHANGE volume arrival, drive type, device ids, eject.

A message-only window on its own thread (`DeviceChangeWindow`) signals changes; `snapshot` and
`wait_for_change` run on the USB collector's watcher thread; `unmount` on the pipeline thread.
All Win32 calls sit behind `Win32Volumes` so the logic is tested on any OS with a fake.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import JsonValue

from collectors.usb.model import EnforcementError, Volume

log = logging.getLogger(__name__)

DRIVE_REMOVABLE = 2
DRIVE_FIXED = 3
WM_DEVICECHANGE = 0x0219
WM_CLOSE = 0x0010
DBT_DEVICEARRIVAL = 0x8000
DBT_DEVICEREMOVECOMPLETE = 0x8004
DBT_DEVTYP_DEVICEINTERFACE = 5
DEVICE_NOTIFY_WINDOW_HANDLE = 0
GUID_DEVINTERFACE_VOLUME = "53F5630D-B6BF-11D0-94F2-00A0C91EFB8B"
WATCHER_CLASS = "DeskWardenUsbWatcher"
"""The message-only window's class: FindWindowExW(HWND_MESSAGE, None, WATCHER_CLASS, None) finds it."""
FSCTL_LOCK_VOLUME = 0x00090018
FSCTL_DISMOUNT_VOLUME = 0x00090020
IOCTL_STORAGE_MEDIA_REMOVAL = 0x002D4804
IOCTL_STORAGE_EJECT_MEDIA = 0x002D4808
_POWERSHELL_TIMEOUT = 15.0


@dataclass(frozen=True, slots=True)
class VolumeLabel:
    label: str | None
    filesystem: str | None
    volume_serial: int


@dataclass(frozen=True, slots=True)
class DeviceIds:
    vendor_id: str | None = None
    product_id: str | None = None
    serial: str | None = None
    bus: str | None = None


class Win32Volumes(Protocol):
    """The Win32 calls the backend needs (one real implementation, fakes in tests)."""

    def logical_drives(self) -> list[str]:
        """Drive roots present now, e.g. ["C:\\", "E:\\"] (GetLogicalDrives)."""
        ...

    def drive_type(self, root: str) -> int:
        """GetDriveTypeW."""
        ...

    def volume_information(self, root: str) -> VolumeLabel | None:
        """GetVolumeInformationW; None when no media is inserted."""
        ...

    def total_bytes(self, root: str) -> int | None:
        """GetDiskFreeSpaceExW total size."""
        ...

    def device_ids(self, root: str) -> DeviceIds:
        """VID/PID/serial/bus of the disk behind a drive letter."""
        ...

    def eject(self, root: str) -> dict[str, JsonValue]:
        """Lock, dismount and eject the volume; raises EnforcementError when it cannot dismount."""
        ...


class ChangeNotifier(Protocol):
    def start(self, on_change: Callable[[], None]) -> bool:
        """Begin delivering device-change callbacks; False when the OS facility is unavailable."""
        ...

    def stop(self) -> None: ...


# --- device ids through PowerShell CIM (no wmi/pywin32 dependency) --------------------------------

_DEVICE_IDS_SCRIPT = r"""
$ErrorActionPreference = 'Stop'
$ld = Get-CimInstance Win32_LogicalDisk -Filter "DeviceID='{letter}'"
$part = Get-CimAssociatedInstance -InputObject $ld -ResultClassName Win32_DiskPartition | Select-Object -First 1
$disk = Get-CimAssociatedInstance -InputObject $part -ResultClassName Win32_DiskDrive | Select-Object -First 1
$parent = $null
try { $parent = (Get-PnpDeviceProperty -InstanceId $disk.PNPDeviceID -KeyName DEVPKEY_Device_Parent).Data } catch {}
[pscustomobject]@{pnp=$disk.PNPDeviceID; parent=$parent; serial=$disk.SerialNumber;
  interface=$disk.InterfaceType} | ConvertTo-Json -Compress
"""

_USB_ID = re.compile(r"VID_([0-9A-Fa-f]{4})&PID_([0-9A-Fa-f]{4})(?:\\([^\\&]+))?")


def parse_device_ids(text: str) -> DeviceIds:
    """Parse the JSON printed by `_DEVICE_IDS_SCRIPT` (tolerates empty or partial output)."""
    try:
        raw: Any = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError:
        return DeviceIds()
    if not isinstance(raw, dict):
        return DeviceIds()
    parent = str(raw.get("parent") or "")
    match = _USB_ID.search(parent) or _USB_ID.search(str(raw.get("pnp") or ""))
    serial = (str(raw.get("serial") or "").strip()) or None
    vendor = product = None
    if match:
        vendor, product = match.group(1).lower(), match.group(2).lower()
        # The USB instance id ends in the device's iSerial; the disk's own SerialNumber is often mangled.
        if match.group(3):
            serial = match.group(3)
    interface = str(raw.get("interface") or "").strip().lower() or None
    return DeviceIds(vendor_id=vendor, product_id=product, serial=serial, bus=interface or ("usb" if match else None))


def powershell_device_ids(root: str, *, runner: Callable[[list[str]], str] | None = None) -> DeviceIds:
    letter = root[:2].upper()
    if not re.fullmatch(r"[A-Z]:", letter):
        return DeviceIds()
    script = _DEVICE_IDS_SCRIPT.replace("{letter}", letter)
    argv = ["powershell", "-NoProfile", "-NonInteractive", "-Command", script]
    try:
        output = runner(argv) if runner else _run_text(argv)
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("device ids for %s unavailable: %s", letter, exc)
        return DeviceIds()
    return parse_device_ids(output)


def _run_text(argv: list[str]) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=_POWERSHELL_TIMEOUT, check=False)
    return result.stdout


# --- the real Win32 calls ---------------------------------------------------------------------------


class CtypesWin32Volumes:
    """`Win32Volumes` over kernel32 through ctypes."""

    def logical_drives(self) -> list[str]:
        if sys.platform == "win32":
            mask = ctypes.windll.kernel32.GetLogicalDrives()
            return [f"{chr(65 + i)}:\\" for i in range(26) if mask & (1 << i)]
        else:
            return []

    def drive_type(self, root: str) -> int:
        if sys.platform == "win32":
            return int(ctypes.windll.kernel32.GetDriveTypeW(ctypes.c_wchar_p(root)))
        else:
            return 0

    def volume_information(self, root: str) -> VolumeLabel | None:
        if sys.platform == "win32":
            from ctypes import wintypes

            name = ctypes.create_unicode_buffer(261)
            fs = ctypes.create_unicode_buffer(261)
            serial = wintypes.DWORD()
            ok = ctypes.windll.kernel32.GetVolumeInformationW(
                ctypes.c_wchar_p(root), name, 261, ctypes.byref(serial), None, None, fs, 261
            )
            if not ok:
                return None
            return VolumeLabel(label=name.value or None, filesystem=fs.value or None, volume_serial=serial.value)
        else:
            return None

    def total_bytes(self, root: str) -> int | None:
        if sys.platform == "win32":
            total = ctypes.c_ulonglong()
            if ctypes.windll.kernel32.GetDiskFreeSpaceExW(ctypes.c_wchar_p(root), None, ctypes.byref(total), None):
                return int(total.value)
        return None

    def device_ids(self, root: str) -> DeviceIds:
        return powershell_device_ids(root)

    def eject(self, root: str) -> dict[str, JsonValue]:
        if sys.platform == "win32":
            from ctypes import wintypes

            kernel32 = ctypes.windll.kernel32
            kernel32.CreateFileW.restype = wintypes.HANDLE
            path = "\\\\.\\" + root[:2]
            handle = kernel32.CreateFileW(
                ctypes.c_wchar_p(path), 0xC0000000, 0x00000003, None, 3, 0, None
            )  # GENERIC_READ|WRITE, FILE_SHARE_READ|WRITE, OPEN_EXISTING
            if handle in (None, wintypes.HANDLE(-1).value):
                raise EnforcementError(f"cannot open {root[:2]} (error {kernel32.GetLastError()})")
            returned = wintypes.DWORD()

            def ioctl(code: int, in_buf: Any = None, in_size: int = 0) -> bool:
                return bool(
                    kernel32.DeviceIoControl(handle, code, in_buf, in_size, None, 0, ctypes.byref(returned), None)
                )

            try:
                locked = ioctl(FSCTL_LOCK_VOLUME)
                if not ioctl(FSCTL_DISMOUNT_VOLUME):
                    raise EnforcementError(f"dismount of {root[:2]} refused (error {kernel32.GetLastError()})")
                allow = ctypes.c_ubyte(0)
                ioctl(IOCTL_STORAGE_MEDIA_REMOVAL, ctypes.byref(allow), 1)
                ejected = ioctl(IOCTL_STORAGE_EJECT_MEDIA)
                return {"method": "dismount", "locked": locked, "ejected": ejected}
            finally:
                kernel32.CloseHandle(handle)
        else:
            raise EnforcementError("eject is only available on Windows")


def _register_volume_interface(hwnd: int) -> int | None:
    """RegisterDeviceNotificationW for GUID_DEVINTERFACE_VOLUME on `hwnd` (the window thread); None when refused."""
    if sys.platform == "win32":
        import uuid
        from ctypes import wintypes

        class DevBroadcastDeviceInterface(ctypes.Structure):
            _fields_ = [
                ("dbcc_size", wintypes.DWORD),
                ("dbcc_devicetype", wintypes.DWORD),
                ("dbcc_reserved", wintypes.DWORD),
                ("dbcc_classguid", ctypes.c_ubyte * 16),
                ("dbcc_name", wintypes.WCHAR * 1),
            ]

        user32 = ctypes.windll.user32
        user32.RegisterDeviceNotificationW.restype = ctypes.c_void_p
        user32.RegisterDeviceNotificationW.argtypes = [wintypes.HANDLE, ctypes.c_void_p, wintypes.DWORD]
        flt = DevBroadcastDeviceInterface()
        flt.dbcc_size = ctypes.sizeof(DevBroadcastDeviceInterface)
        flt.dbcc_devicetype = DBT_DEVTYP_DEVICEINTERFACE
        flt.dbcc_classguid[:] = list(uuid.UUID(GUID_DEVINTERFACE_VOLUME).bytes_le)
        handle = user32.RegisterDeviceNotificationW(hwnd, ctypes.byref(flt), DEVICE_NOTIFY_WINDOW_HANDLE)
        if not handle:
            log.warning("RegisterDeviceNotification(volume) failed (%d)", ctypes.GetLastError())
            return None
        return int(handle)
    else:
        return None


class DeviceChangeWindow:
    """A hidden message-only window on its own thread that turns WM_DEVICECHANGE into a callback."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._hwnd: int | None = None
        self._ready = threading.Event()
        self._ok = False
        self._proc: Any = None  # keeps the WNDPROC callback alive while the window exists
        self._notification: int | None = None

    def start(self, on_change: Callable[[], None]) -> bool:
        if sys.platform == "win32":
            self._ready.clear()
            self._thread = threading.Thread(target=self._pump, args=(on_change,), name="usb-devicechange", daemon=True)
            self._thread.start()
            self._ready.wait(5.0)
            return self._ok
        else:
            return False

    def _pump(self, on_change: Callable[[], None]) -> None:
        if sys.platform == "win32":
            from ctypes import wintypes

            user32 = ctypes.windll.user32
            wndproc_type = ctypes.WINFUNCTYPE(
                ctypes.c_ssize_t, wintypes.HWND, wintypes.UINT, wintypes.WPARAM, wintypes.LPARAM
            )
            user32.DefWindowProcW.argtypes = [wintypes.HWND, wintypes.UINT, wintypes.WPARAM, wintypes.LPARAM]
            user32.DefWindowProcW.restype = ctypes.c_ssize_t

            def proc(hwnd: int, msg: int, wparam: int, lparam: int) -> int:
                if msg == WM_DEVICECHANGE and wparam in (DBT_DEVICEARRIVAL, DBT_DEVICEREMOVECOMPLETE):
                    try:
                        on_change()
                    except Exception:
                        log.exception("device change callback failed")
                    return 1
                if msg == WM_CLOSE:
                    user32.DestroyWindow(hwnd)
                    user32.PostQuitMessage(0)
                    return 0
                return int(user32.DefWindowProcW(hwnd, msg, wparam, lparam))

            self._proc = wndproc_type(proc)

            class WNDCLASSW(ctypes.Structure):
                _fields_ = [
                    ("style", wintypes.UINT),
                    ("lpfnWndProc", wndproc_type),
                    ("cbClsExtra", ctypes.c_int),
                    ("cbWndExtra", ctypes.c_int),
                    ("hInstance", wintypes.HINSTANCE),
                    ("hIcon", wintypes.HICON),
                    ("hCursor", wintypes.HANDLE),
                    ("hbrBackground", wintypes.HBRUSH),
                    ("lpszMenuName", wintypes.LPCWSTR),
                    ("lpszClassName", wintypes.LPCWSTR),
                ]

            cls = WNDCLASSW()
            cls.lpfnWndProc = self._proc
            cls.hInstance = ctypes.windll.kernel32.GetModuleHandleW(None)
            cls.lpszClassName = WATCHER_CLASS
            user32.RegisterClassW(ctypes.byref(cls))  # fails harmlessly when already registered
            hwnd_message = wintypes.HWND(-3)
            hwnd = user32.CreateWindowExW(
                0, cls.lpszClassName, "DeskWarden", 0, 0, 0, 0, 0, hwnd_message, None, None, None
            )
            self._ok = bool(hwnd)
            self._hwnd = hwnd or None
            if hwnd:
                # Broadcast DBT_DEVTYP_VOLUME messages go to top-level windows only, never to a message-only one:
                # it learns of volumes by registering for the volume device interface.
                self._notification = _register_volume_interface(hwnd)
            self._ready.set()
            if not hwnd:
                return
            msg = wintypes.MSG()
            while user32.GetMessageW(ctypes.byref(msg), None, 0, 0) > 0:
                user32.TranslateMessage(ctypes.byref(msg))
                user32.DispatchMessageW(ctypes.byref(msg))
            if self._notification:
                user32.UnregisterDeviceNotification(ctypes.c_void_p(self._notification))
                self._notification = None
        else:
            self._ready.set()

    def stop(self) -> None:
        if sys.platform == "win32" and self._hwnd is not None:
            ctypes.windll.user32.PostMessageW(self._hwnd, WM_CLOSE, 0, 0)
        if self._thread is not None:
            self._thread.join(5.0)
        self._thread = None
        self._hwnd = None


class WindowsVolumeSource:
    """Removable drive letters (plus fixed drives on the USB bus), refreshed on WM_DEVICECHANGE.

    Without a working notifier it falls back to polling every `wait_for_change` timeout.
    """

    def __init__(self, *, api: Win32Volumes | None = None, notifier: ChangeNotifier | None = None) -> None:
        self._api = api or CtypesWin32Volumes()
        self._notifier = notifier or DeviceChangeWindow()
        self._changed = threading.Event()
        self._woken = False
        self._started = False
        self._notifying = False
        self._ids_cache: dict[tuple[str, int], DeviceIds] = {}

    def _on_change(self) -> None:
        self._changed.set()

    def snapshot(self, media_roots: list[str]) -> list[Volume]:
        """`media_roots` is a Linux notion; Windows reports every removable drive letter."""
        volumes: list[Volume] = []
        for root in self._api.logical_drives():
            dtype = self._api.drive_type(root)
            if dtype not in (DRIVE_REMOVABLE, DRIVE_FIXED):
                continue
            info = self._api.volume_information(root)
            if info is None:
                continue  # an empty card reader slot
            key = (root, info.volume_serial)
            ids = self._ids_cache.get(key)
            if ids is None:
                ids = self._api.device_ids(root)
                self._ids_cache[key] = ids
            if dtype == DRIVE_FIXED and ids.bus != "usb":
                continue  # internal disks are never storage we control
            volumes.append(
                Volume(
                    mount_point=root,
                    device=root,
                    filesystem=info.filesystem,
                    vendor_id=ids.vendor_id,
                    product_id=ids.product_id,
                    serial=ids.serial,
                    bus=ids.bus,
                    label=info.label,
                    size_bytes=self._api.total_bytes(root),
                )
            )
        return volumes

    def wait_for_change(self, timeout: float) -> bool:
        if not self._started:
            self._started = True
            self._notifying = self._notifier.start(self._on_change)
            if not self._notifying:
                log.warning("WM_DEVICECHANGE unavailable; polling drive letters every %.1f s", timeout)
        if self._consume_wake():
            return False
        signalled = self._changed.wait(timeout)
        self._changed.clear()
        if self._consume_wake():
            return False
        return signalled or not self._notifying

    def _consume_wake(self) -> bool:
        woken, self._woken = self._woken, False
        return woken

    def wake(self) -> None:
        self._woken = True
        self._changed.set()

    def close(self) -> None:
        if self._started:
            with contextlib.suppress(Exception):
                self._notifier.stop()
        self._started = False
        self._notifying = False

    def unmount(self, volume: Volume) -> dict[str, JsonValue]:
        return self._api.eject(volume.mount_point)

    def remount_read_only(self, volume: Volume) -> dict[str, JsonValue]:
        # Windows has no per-volume read-only remount for a standard user; ejecting is the safe
        # fallback, reported as such (read_only False) so the console shows what really happened.
        details = self._api.eject(volume.mount_point)
        return {**details, "read_only": False, "fallback": "ejected"}
