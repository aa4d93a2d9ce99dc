"""USB storage collector: reports removable volumes as they mount and unmounts them on a block.

`UsbCollector` is started and stopped from the agent's main thread; its watcher thread calls
`sink.emit`; the pipeline thread calls `enforce`. The per-OS `VolumeSource` is chosen here.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

from collectors.base import Collector, Decision, Outcome, Probe
from collectors.usb.model import EnforcementError, Volume, VolumeSource
from policy_client.schema import Action, EventDraft, EventKind, Severity

__all__ = [
    "EnforcementError",
    "UsbCollector",
    "Volume",
    "VolumeSource",
    "default_volume_source",
]

log = logging.getLogger(__name__)


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
    device or a system mount.
    """

    id = "usb"

    def __init__(
        self,
        *,
        volumes: VolumeSource | None = None,
        media_roots: list[str] | None = None,
        rescan_seconds: float = 5.0,
    ) -> None:
        super().__init__()
        self._volumes = volumes if volumes is not None else default_volume_source()
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
        log.info("%s %s on %s", kind.value, volume.device, volume.mount_point)
        self._emit(EventDraft(kind=kind, severity=severity, data=data), target=volume)

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
