"""USB storage collector: reports removable volumes as they mount and unmounts them on a block.

`create` builds it once on the service's main thread; `UsbCollector` is started and stopped from there; its
watcher thread calls `sink.emit`; the pipeline thread calls `enforce`. The per-OS `VolumeSource` is chosen
here, and imported only when the collector is built.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from collectors.base import Collector, CollectorContext, Decision, Outcome, Probe
from collectors.usb.model import EnforcementError, Volume, VolumeSource
from policy_client.schema import Action, EventDraft, EventKind, Severity

__all__ = [
    "EnforcementError",
    "UsbCollector",
    "Volume",
    "VolumeSource",
    "create",
    "default_volume_source",
    "mount_user",
]

log = logging.getLogger(__name__)


def create(
    ctx: CollectorContext,
    *,
    volumes: VolumeSource | None = None,
    media_roots: list[str] | None = None,
    is_user: Callable[[str], bool] | None = None,
) -> Collector | None:
    """The USB storage collector of the service (it needs root to unmount); None in the session helper."""
    if ctx.role != "service":
        return None
    return UsbCollector(volumes=volumes, media_roots=media_roots, is_user=is_user or account_exists)


def account_exists(login: str) -> bool:
    """True when `login` is an account on this machine (POSIX password database; False elsewhere)."""
    if sys.platform == "win32":
        return False
    else:
        import pwd

        try:
            pwd.getpwnam(login)
        except KeyError:
            return False
        return True


def mount_user(mount_point: str, media_roots: list[str], *, is_user: Callable[[str], bool] = account_exists) -> str:
    """The desk user a removable volume was mounted for, from where udisks put it: `/media/<user>/<label>`
    (Debian, Ubuntu) or `/run/media/<user>/<label>` (Fedora, Arch). Empty when the mount point does not say."""
    for root in media_roots:
        base = os.path.realpath(root).rstrip("/") + "/"
        if not mount_point.startswith(base):
            continue
        parts = mount_point[len(base) :].split("/")
        if len(parts) >= 2 and parts[0] and parts[1] and is_user(parts[0]):
            return parts[0]
    return ""


def default_volume_source() -> VolumeSource | None:
    """The backend for this OS, or None (logged) when there is none."""
    platform: str = sys.platform  # a plain str, so mypy --platform checks every branch
    try:
        if platform.startswith("linux"):
            from collectors.usb.linux import LinuxVolumeSource

            return LinuxVolumeSource()
        if platform == "win32":
            from collectors.usb.windows import WindowsVolumeSource

            return WindowsVolumeSource()
        if platform == "darwin":
            from collectors.usb.macos import MacVolumeSource

            return MacVolumeSource()
    except Exception:
        log.exception("USB backend for %s failed to load", platform)
        return None
    log.warning("no USB storage backend for %s", platform)
    return None


class UsbCollector(Collector):
    """Reports removable volumes as they mount (`usb.mounted`) and go away (`usb.removed`).

    Started and stopped from the agent's main thread; the watcher thread it owns calls `sink.emit`.
    Only volumes this collector reported are ever enforced on, so a block can never reach an input
    device or a system mount. An event names the desk user when the mount point does (`mount_user`).
    """

    id = "usb"

    def __init__(
        self,
        *,
        volumes: VolumeSource | None = None,
        media_roots: list[str] | None = None,
        rescan_seconds: float = 5.0,
        is_user: Callable[[str], bool] = account_exists,
    ) -> None:
        super().__init__()
        self._volumes = volumes if volumes is not None else default_volume_source()
        self._is_user = is_user
        self._media_roots = list(media_roots) if media_roots is not None else None
        self._rescan_seconds = rescan_seconds
        self._known: dict[tuple[str, str], Volume] = {}
        self._known_lock = threading.Lock()
        self._ready = threading.Event()

    # --- contract -------------------------------------------------------------------------------

    def probe(self) -> Probe:
        if self._volumes is None:
            return Probe(False, f"no USB storage backend for {sys.platform}")
        return Probe(True)

    @property
    def media_roots(self) -> list[str]:
        if self._media_roots is not None:
            return self._media_roots
        if self._policy is not None:
            return list(self._policy.controls.usb.media_roots)
        return ["/media", "/run/media"]

    def wait_ready(self, timeout: float) -> bool:
        """True once the watcher has taken its first snapshot (tests and benchmarks wait on this)."""
        return self._ready.wait(timeout)

    def known_volumes(self) -> list[Volume]:
        with self._known_lock:
            return list(self._known.values())

    def _wake(self) -> None:
        if self._volumes is not None:
            self._volumes.wake()

    def _run(self) -> None:
        source = self._volumes
        if source is None:
            raise RuntimeError(f"no USB storage backend for {sys.platform}")
        self._ready.clear()
        try:
            current = {v.key: v for v in source.snapshot(self.media_roots)}
            with self._known_lock:
                self._known = dict(current)
            self._ready.set()
            for volume in current.values():
                self._report(EventKind.usb_mounted, volume, present_at_start=True)
            while not self._stopping.is_set():
                changed = source.wait_for_change(self._rescan_seconds)
                if self._stopping.is_set():
                    break
                if not changed:
                    continue
                fresh = {v.key: v for v in source.snapshot(self.media_roots)}
                with self._known_lock:
                    self._known = dict(fresh)
                for key, volume in fresh.items():
                    if key not in current:
                        self._report(EventKind.usb_mounted, volume)
                for key, volume in current.items():
                    if key not in fresh:
                        self._report(EventKind.usb_removed, volume)
                current = fresh
        finally:
            source.close()

    def _report(self, kind: EventKind, volume: Volume, *, present_at_start: bool = False) -> None:
        if self._policy is not None and self._policy.controls.usb.mode == "off":
            return
        data = volume.event_data()
        if present_at_start:
            data["present_at_start"] = True
        severity = Severity.medium if kind is EventKind.usb_mounted else Severity.info
        # In the service the runtime's user is root: name the desk user when the mount point does.
        user = mount_user(volume.mount_point, self.media_roots, is_user=self._is_user)
        log.info("%s %s on %s", kind.value, volume.device, volume.mount_point)
        self._emit(EventDraft(kind=kind, severity=severity, user=user, data=data), target=volume)

    def enforce(self, target: Any, decision: Decision) -> Outcome:
        try:
            return self._enforce(target, decision)
        except Exception as exc:
            log.exception("USB enforcement failed")
            return Outcome(Action.failed, {"error": f"{type(exc).__name__}: {exc}"[:300]})

    def _enforce(self, target: Any, decision: Decision) -> Outcome:
        action = decision.action
        if action in ("ignore", "audit"):
            return Outcome(Action.observed)
        if action == "warn":
            return Outcome(Action.warned)
        if action not in ("block", "read_only"):
            return Outcome(Action.observed, {"unsupported_action": action})
        if not isinstance(target, Volume):
            return Outcome(Action.failed, {"error": "target is not a storage volume"})
        with self._known_lock:
            known = target.key in self._known
        if not known:
            # Only volumes this collector saw mounted under a media root are ever touched.
            return Outcome(
                Action.failed, {"error": "volume is not a mounted removable volume", "mount_point": target.mount_point}
            )
        source = self._volumes
        if source is None:
            return Outcome(Action.failed, {"error": "no USB storage backend"})
        try:
            if action == "read_only":
                details = source.remount_read_only(target)
                return Outcome(Action.blocked, {"read_only": True, **details})
            details = source.unmount(target)
        except EnforcementError as exc:
            log.warning("could not %s %s: %s", action, target.mount_point, exc)
            return Outcome(Action.failed, {"error": str(exc)[:300], "attempted": action})
        return Outcome(Action.blocked, {"unmounted": True, **details})
