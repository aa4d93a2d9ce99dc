"""Windows-side programs for the USB tests under Wine: a removable drive letter defined through Wine's mount manager
(what winecfg does), and the WM_DEVICECHANGE a volume arrival delivers, sent to the service's watcher window.

Wine 8 only broadcasts its own DBT_DEVICEARRIVAL (mountmgr's BroadcastSystemMessageW) to top-level windows, and
registers no volume device interfaces, so a message-only window registered for GUID_DEVINTERFACE_VOLUME (what the
service uses, as Windows requires) hears nothing from Wine itself. The test therefore delivers the message the way
Windows delivers a registered notification: straight to the window, from a program on the service's desktop.
Each snippet runs in the Windows Python through `WineDesk.python`; used from the test's thread.
"""

from __future__ import annotations

DEFINE_REMOVABLE_DRIVE = r"""
import ctypes, struct
from ctypes import wintypes
k32 = ctypes.WinDLL("kernel32", use_last_error=True)
k32.CreateFileW.restype = wintypes.HANDLE
IOCTL_MOUNTMGR_DEFINE_UNIX_DRIVE = 0x6DC080  # CTL_CODE('m', 32, METHOD_BUFFERED, FILE_READ|FILE_WRITE_ACCESS)
DRIVE_REMOVABLE = 2
manager = k32.CreateFileW(r"\\.\MountPointManager", 0xC0000000, 3, None, 3, 0, None)
if manager in (None, wintypes.HANDLE(-1).value):
    raise OSError(ctypes.get_last_error(), "cannot open the mount manager")
target = UNIX_PATH.encode() + b"\0"
head = 32  # struct mountmgr_unix_drive: size, type, fs_type, serial, unix_dev, letter, three offsets
buffer = ctypes.create_string_buffer(head + len(target))
struct.pack_into("<IIIIQHHHH", buffer, 0, len(buffer), DRIVE_REMOVABLE, 0, 0, 0, ord(LETTER.lower()), head, 0, 0)
buffer[head:] = target
done = wintypes.DWORD()
ok = k32.DeviceIoControl(
    wintypes.HANDLE(manager), IOCTL_MOUNTMGR_DEFINE_UNIX_DRIVE, buffer, len(buffer), None, 0, ctypes.byref(done), None
)
error = ctypes.get_last_error()
k32.CloseHandle(wintypes.HANDLE(manager))
if not ok:
    raise OSError(error, "IOCTL_MOUNTMGR_DEFINE_UNIX_DRIVE failed")
result = {"drive_type": k32.GetDriveTypeW(LETTER + ":\\")}
"""

SEND_ARRIVAL_TO_THE_SERVICE = r"""
import ctypes
from ctypes import wintypes
user32 = ctypes.WinDLL("user32", use_last_error=True)
user32.OpenWindowStationW.restype = wintypes.HANDLE
user32.OpenDesktopW.restype = wintypes.HANDLE
user32.FindWindowExW.restype = wintypes.HWND
user32.FindWindowExW.argtypes = [wintypes.HWND, wintypes.HWND, wintypes.LPCWSTR, wintypes.LPCWSTR]
user32.SendMessageTimeoutW.argtypes = [
    wintypes.HWND, wintypes.UINT, wintypes.WPARAM, wintypes.LPARAM, wintypes.UINT, wintypes.UINT, ctypes.c_void_p
]
GENERIC_ALL, HWND_MESSAGE, WM_DEVICECHANGE, DBT_DEVICEARRIVAL, DBT_DEVTYP_VOLUME = 0x10000000, -3, 0x219, 0x8000, 2
SMTO_ABORTIFHUNG = 0x2
ENUM_NAMES = ctypes.WINFUNCTYPE(wintypes.BOOL, wintypes.LPWSTR, wintypes.LPARAM)


def names(enumerate_with, *args):
    found = []
    callback = ENUM_NAMES(lambda name, _param: found.append(name) or True)
    enumerate_with(*args, callback, 0)
    return found


# Wine's services.exe starts services on a window station of their own, away from the console's WinSta0: look on
# every station and desktop for the service's window.
hwnd, seen = None, []
for station_name in names(user32.EnumWindowStationsW):
    station = user32.OpenWindowStationW(station_name, False, GENERIC_ALL)
    if not station or not user32.SetProcessWindowStation(wintypes.HANDLE(station)):
        continue
    for desktop_name in names(user32.EnumDesktopsW, wintypes.HANDLE(station)):
        desktop = user32.OpenDesktopW(desktop_name, 0, False, GENERIC_ALL)
        if desktop and user32.SetThreadDesktop(wintypes.HANDLE(desktop)):
            seen.append(station_name + "\\" + desktop_name)
            hwnd = user32.FindWindowExW(HWND_MESSAGE, None, WATCHER_CLASS, None)
            if hwnd:
                break
    if hwnd:
        break
if not hwnd:
    raise LookupError("no " + WATCHER_CLASS + " window on " + repr(seen))

class DevBroadcastVolume(ctypes.Structure):
    _fields_ = [
        ("dbcv_size", wintypes.DWORD),
        ("dbcv_devicetype", wintypes.DWORD),
        ("dbcv_reserved", wintypes.DWORD),
        ("dbcv_unitmask", wintypes.DWORD),
        ("dbcv_flags", wintypes.WORD),
    ]


volume = DevBroadcastVolume(ctypes.sizeof(DevBroadcastVolume), DBT_DEVTYP_VOLUME, 0, 1 << (ord(LETTER.upper()) - 65), 0)
answer = ctypes.c_size_t()
sent = user32.SendMessageTimeoutW(
    hwnd, WM_DEVICECHANGE, DBT_DEVICEARRIVAL, ctypes.addressof(volume), SMTO_ABORTIFHUNG, 10000, ctypes.byref(answer)
)
result = {"sent": bool(sent), "answer": answer.value, "desktop": seen[-1]}
"""


def define_removable_drive(letter: str, unix_path: str) -> str:
    return f"LETTER = {letter!r}\nUNIX_PATH = {unix_path!r}\n" + DEFINE_REMOVABLE_DRIVE


def send_arrival_to_the_service(letter: str) -> str:
    from collectors.usb.windows import WATCHER_CLASS

    return f"LETTER = {letter!r}\nWATCHER_CLASS = {WATCHER_CLASS!r}\n" + SEND_ARRIVAL_TO_THE_SERVICE
