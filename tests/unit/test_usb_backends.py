"""USB backends through their adapters: mountinfo parsing, udev fallbacks, Win32 and diskutil fakes."""

from __future__ import annotations

import plistlib
import subprocess
import threading
from pathlib import Path

import pytest
from pydantic import JsonValue

from collectors.usb.linux import LinuxVolumeSource, MountEntry, UdevAttributes, parse_mountinfo, under_roots
from collectors.usb.macos import MacVolumeSource, find_usb_ids, is_external, whole_disk
from collectors.usb.model import EnforcementError, Volume
from collectors.usb.windows import (
    DRIVE_FIXED,
    DRIVE_REMOVABLE,
    DeviceIds,
    VolumeLabel,
    WindowsVolumeSource,
    parse_device_ids,
    powershell_device_ids,
)

MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 8:2 / / rw,relatime - ext4 /dev/sda2 rw
101 27 8:17 / /media/ann/KINGSTON rw,nosuid,nodev - vfat /dev/sdb1 rw,uid=1000
102 27 8:33 / /run/media/ann/My\\040Stick rw,nosuid shared:7 - exfat /dev/sdc1 rw
103 27 7:0 / /mnt/backup rw - ext4 /dev/loop0 rw
bogus line
"""


def test_parse_mountinfo_unescapes_and_skips_garbage() -> None:
    entries = parse_mountinfo(MOUNTINFO)
    assert len(entries) == 5
    assert entries[3] == MountEntry("/run/media/ann/My Stick", "/dev/sdc1", "exfat", "rw,nosuid")


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/media/ann/KINGSTON", True), ("/media", False), ("/mediax/a", False), ("/run/media/a/b", True), ("/", False)],
)
def test_under_roots(path: str, expected: bool) -> None:
    assert under_roots(path, ["/media", "/run/media/"]) is expected


class NoUdev(UdevAttributes):
    def _from_udev(self, devnode: str) -> dict[str, str | int | None]:
        return {}


def _completed(stdout: str = "", rc: int = 0, stderr: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess([], rc, stdout, stderr)


def test_snapshot_filters_by_media_root_and_enriches(tmp_path: Path) -> None:
    table = tmp_path / "mountinfo"
    table.write_text(MOUNTINFO)
    sys_block = tmp_path / "sys"
    (sys_block / "sdb1").mkdir(parents=True)
    (sys_block / "sdb1" / "size").write_text("2048\n")
    calls: list[list[str]] = []

    def runner(argv: list[str]) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        return _completed("DEVNAME=/dev/sdb1\nLABEL=KINGSTON\nTYPE=vfat\n")

    source = LinuxVolumeSource(mountinfo=str(table), attributes=NoUdev(sys_block=str(sys_block), runner=runner))
    try:
        volumes = source.snapshot(["/media", "/run/media"])
        assert [v.mount_point for v in volumes] == ["/media/ann/KINGSTON", "/run/media/ann/My Stick"]
        stick = volumes[0]
        assert (stick.filesystem, stick.label, stick.size_bytes, stick.vendor_id) == ("vfat", "KINGSTON", 1048576, None)
        assert volumes[1].size_bytes is None  # no sysfs entry: tolerated
        n_calls = len(calls)
        source.snapshot(["/media", "/run/media"])
        assert len(calls) == n_calls  # known mounts are not re-described
    finally:
        source.close()


def test_wait_for_change_is_woken_without_busy_loop(tmp_path: Path) -> None:
    table = tmp_path / "mountinfo"
    table.write_text(MOUNTINFO)
    source = LinuxVolumeSource(mountinfo=str(table), attributes=NoUdev())
    result: list[bool] = []
    done = threading.Event()

    def waiter() -> None:
        result.append(source.wait_for_change(30.0))
        done.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    source.wake()
    assert done.wait(5.0)
    thread.join()
    assert result == [False]
    source.close()
    source.close()  # idempotent


def test_wake_before_wait_is_not_lost(tmp_path: Path) -> None:
    table = tmp_path / "mountinfo"
    table.write_text(MOUNTINFO)
    source = LinuxVolumeSource(mountinfo=str(table), attributes=NoUdev())
    source.wake()
    assert source.wait_for_change(30.0) is False
    source.close()


def test_linux_unmount_falls_back_to_umount_and_reports_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("collectors.usb.linux.shutil.which", lambda name: "/usr/bin/" + name)
    seen: list[list[str]] = []

    def runner(argv: list[str]) -> subprocess.CompletedProcess[str]:
        seen.append(argv)
        if argv[0] == "udisksctl":
            return _completed(rc=1, stderr="Error connecting to the udisks daemon")
        return _completed()

    source = LinuxVolumeSource(runner=runner, attributes=NoUdev())
    volume = Volume(mount_point="/media/a/S", device="/dev/loop3")
    assert source.unmount(volume) == {"method": "umount"}
    assert seen[-1] == ["umount", "/media/a/S"]

    def failing(argv: list[str]) -> subprocess.CompletedProcess[str]:
        return _completed(rc=32, stderr="umount: /media/a/S: target is busy.")

    with pytest.raises(EnforcementError, match="target is busy"):
        LinuxVolumeSource(runner=failing, attributes=NoUdev()).unmount(volume)
    assert LinuxVolumeSource(runner=runner, attributes=NoUdev()).remount_read_only(volume) == {"method": "remount"}


def test_a_sandboxed_service_unmounts_in_the_hosts_mount_namespace(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Regression: under systemd's ProtectSystem the service has its own mount namespace, where a plain umount
    succeeds while the stick stays mounted for the desk user."""
    monkeypatch.setattr(
        "collectors.usb.linux.shutil.which", lambda name: None if name == "udisksctl" else f"/bin/{name}"
    )
    own, host = tmp_path / "self-mnt", tmp_path / "init-mnt"
    own.symlink_to("mnt:[4026532001]")
    host.symlink_to("mnt:[4026531841]")
    seen: list[list[str]] = []

    def runner(argv: list[str]) -> subprocess.CompletedProcess[str]:
        seen.append(argv)
        return _completed()

    source = LinuxVolumeSource(runner=runner, attributes=NoUdev(), own_mount_ns=str(own), host_mount_ns=str(host))
    volume = Volume(mount_point="/media/a/S", device="/dev/loop3")
    assert source.unmount(volume) == {"method": "umount"}
    assert seen[-1] == ["/bin/nsenter", f"--mount={host}", "--", "umount", "/media/a/S"]

    same = LinuxVolumeSource(runner=runner, attributes=NoUdev(), own_mount_ns=str(host), host_mount_ns=str(host))
    same.unmount(volume)
    assert seen[-1] == ["umount", "/media/a/S"]


# --- Windows ---------------------------------------------------------------------------------------


class FakeWin32:
    def __init__(self) -> None:
        self.drives: dict[str, tuple[int, VolumeLabel | None, DeviceIds]] = {
            "C:\\": (DRIVE_FIXED, VolumeLabel("OS", "NTFS", 1), DeviceIds(bus="nvme")),
            "D:\\": (5, VolumeLabel("DVD", "CDFS", 2), DeviceIds()),
        }
        self.id_calls = 0
        self.ejected: list[str] = []

    def logical_drives(self) -> list[str]:
        return list(self.drives)

    def drive_type(self, root: str) -> int:
        return self.drives[root][0]

    def volume_information(self, root: str) -> VolumeLabel | None:
        return self.drives[root][1]

    def total_bytes(self, root: str) -> int | None:
        return 1000

    def device_ids(self, root: str) -> DeviceIds:
        self.id_calls += 1
        return self.drives[root][2]

    def eject(self, root: str) -> dict[str, JsonValue]:
        self.ejected.append(root)
        return {"method": "dismount", "ejected": True}


class FakeNotifier:
    def __init__(self, works: bool = True) -> None:
        self.works = works
        self.callback: object = None
        self.stopped = False

    def start(self, on_change: object) -> bool:
        self.callback = on_change
        return self.works

    def stop(self) -> None:
        self.stopped = True


def test_windows_reports_removable_and_usb_fixed_drives_only() -> None:
    api = FakeWin32()
    api.drives["E:\\"] = (DRIVE_REMOVABLE, VolumeLabel("STICK", "FAT32", 7), DeviceIds("0781", "5581", "4C53", "usb"))
    api.drives["F:\\"] = (DRIVE_FIXED, VolumeLabel("PASSPORT", "exFAT", 8), DeviceIds("1058", "0748", "WX1", "usb"))
    api.drives["G:\\"] = (DRIVE_REMOVABLE, None, DeviceIds())  # empty card slot
    source = WindowsVolumeSource(api=api, notifier=FakeNotifier())
    volumes = source.snapshot([])
    assert [v.mount_point for v in volumes] == ["E:\\", "F:\\"]
    assert volumes[0] == Volume("E:\\", "E:\\", "FAT32", "0781", "5581", "4C53", "usb", "STICK", 1000)
    calls = api.id_calls
    source.snapshot([])
    assert api.id_calls == calls  # device ids are cached per volume serial
    assert source.unmount(volumes[0]) == {"method": "dismount", "ejected": True}
    assert source.remount_read_only(volumes[0])["read_only"] is False
    assert api.ejected == ["E:\\", "E:\\"]


def test_windows_wait_uses_notifier_and_falls_back_to_polling() -> None:
    notifier = FakeNotifier()
    source = WindowsVolumeSource(api=FakeWin32(), notifier=notifier)
    assert source.wait_for_change(0.01) is False  # starts the notifier, nothing happened
    assert callable(notifier.callback)
    notifier.callback()
    assert source.wait_for_change(5.0) is True
    source.wake()
    assert source.wait_for_change(5.0) is False
    source.close()
    assert notifier.stopped

    polling = WindowsVolumeSource(api=FakeWin32(), notifier=FakeNotifier(works=False))
    assert polling.wait_for_change(0.01) is True  # no WM_DEVICECHANGE: every timeout is a rescan


def test_parse_device_ids_from_powershell_json() -> None:
    text = (
        '{"pnp":"USBSTOR\\\\DISK&VEN_SANDISK&PROD_CRUZER&REV_1.00\\\\4C530001&0",'
        '"parent":"USB\\\\VID_0781&PID_5581\\\\4C530001220117","serial":"  4C530001  ","interface":"USB"}'
    )
    assert parse_device_ids(text) == DeviceIds("0781", "5581", "4C530001220117", "usb")
    assert parse_device_ids("") == DeviceIds()
    assert parse_device_ids("not json") == DeviceIds()
    assert parse_device_ids('{"pnp":"SCSI\\\\DISK","serial":"S3Z","interface":"SCSI"}') == DeviceIds(
        None, None, "S3Z", "scsi"
    )


def test_powershell_device_ids_rejects_odd_roots_and_builds_the_query() -> None:
    seen: list[list[str]] = []

    def runner(argv: list[str]) -> str:
        seen.append(argv)
        return '{"parent":"USB\\\\VID_ABCD&PID_1234\\\\SER","interface":"USB"}'

    assert powershell_device_ids("\\\\?\\Volume{x}", runner=runner) == DeviceIds()
    ids = powershell_device_ids("e:\\", runner=runner)
    assert ids == DeviceIds("abcd", "1234", "SER", "usb")
    assert "DeviceID='E:'" in seen[0][-1]


# --- macOS -----------------------------------------------------------------------------------------


def _plist(**values: object) -> bytes:
    return plistlib.dumps(values)


USB_PROFILE = (
    b'{"SPUSBDataType":[{"_name":"USB31Bus","_items":[{"_name":"Cruzer","vendor_id":"0x0781  (SanDisk Corporation)",'
    b'"product_id":"0x5581","serial_num":"4C530001","Media":[{"bsd_name":"disk4"}]}]}]}'
)


def test_macos_describes_external_volumes_with_usb_ids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    volumes_dir = tmp_path / "Volumes"
    for name in ("Macintosh HD", "STICK", "Installer"):
        (volumes_dir / name).mkdir(parents=True)
    monkeypatch.setattr("collectors.usb.macos.os.path.ismount", lambda path: True)
    infos = {
        "Macintosh HD": _plist(
            DeviceNode="/dev/disk3s1", Internal=True, FilesystemType="apfs", BusProtocol="Apple Fabric"
        ),
        "STICK": _plist(
            DeviceNode="/dev/disk4s1",
            Internal=False,
            FilesystemType="msdos",
            VolumeName="STICK",
            TotalSize=15_000,
            BusProtocol="USB",
        ),
        "Installer": _plist(DeviceNode="/dev/disk5s1", BusProtocol="Disk Image", Ejectable=True),
    }

    def runner(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
        if argv[:2] == ["diskutil", "info"]:
            return subprocess.CompletedProcess(argv, 0, infos[Path(argv[-1]).name], b"")
        if argv[0] == "system_profiler":
            return subprocess.CompletedProcess(argv, 0, USB_PROFILE, b"")
        return subprocess.CompletedProcess(argv, 0, b"", b"")

    source = MacVolumeSource(volumes_dir=str(volumes_dir), runner=runner, poll_interval=0.01)
    [stick] = source.snapshot([])
    assert stick == Volume(
        str(volumes_dir / "STICK"), "/dev/disk4s1", "msdos", "0781", "5581", "4C530001", "usb", "STICK", 15_000
    )
    assert source.wait_for_change(0.05) is False
    (volumes_dir / "NEW").mkdir()
    assert source.wait_for_change(5.0) is True


def test_macos_eject_and_read_only(tmp_path: Path) -> None:
    seen: list[list[str]] = []

    def runner(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
        seen.append(argv)
        return subprocess.CompletedProcess(argv, 0, b"", b"")

    source = MacVolumeSource(volumes_dir=str(tmp_path), runner=runner)
    stick = Volume("/Volumes/STICK", "/dev/disk4s1")
    assert source.unmount(stick) == {"method": "diskutil eject"}
    assert seen[-1] == ["diskutil", "eject", "/dev/disk4"]
    assert source.remount_read_only(stick) == {"method": "diskutil mount readOnly"}
    assert seen[-1] == ["diskutil", "mount", "readOnly", "/dev/disk4s1"]

    def refusing(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
        return subprocess.CompletedProcess(argv, 1, b"", b"Volume failed to unmount: in use")

    with pytest.raises(EnforcementError, match="in use"):
        MacVolumeSource(volumes_dir=str(tmp_path), runner=refusing).unmount(stick)


def test_macos_helpers() -> None:
    assert whole_disk("/dev/disk12s3") == "/dev/disk12"
    assert is_external({"Internal": False})
    assert not is_external({"Internal": True})
    assert not is_external({"BusProtocol": "Disk Image", "Internal": False})
    assert find_usb_ids({"SPUSBDataType": []}, "disk4") == (None, None, None)
