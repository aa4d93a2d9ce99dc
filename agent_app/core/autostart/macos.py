"""macOS autostart: a LaunchAgent plist with KeepAlive (the companion watchdog), loaded through launchctl.

Called on the main thread by install/uninstall.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from xml.sax.saxutils import escape

from agent_app.core.autostart.model import LAUNCHD_LABEL, CommandRunner, LaunchSpec, run_command
from agent_app.core.autostart.templates import render

log = logging.getLogger(__name__)


def plist_text(spec: LaunchSpec) -> str:
    arguments = "\n".join(f"    <string>{escape(arg)}</string>" for arg in spec.argv)
    environment = "\n".join(
        f"    <key>{escape(key)}</key>\n    <string>{escape(value)}</string>" for key, value in sorted(spec.env.items())
    )
    values = {
        "label": LAUNCHD_LABEL,
        "program_arguments": arguments,
        "environment": environment,
        "version": escape(spec.version),
    }
    return render("macos/org.deskwarden.agent.plist", values)


class MacAutostart:
    """~/Library/LaunchAgents for one user, /Library/LaunchAgents for all users (loaded at each login)."""

    name = "macos"

    def __init__(
        self,
        *,
        user_home: Path | None = None,
        system_root: Path = Path("/"),
        run: CommandRunner = run_command,
        uid: int | None = None,
    ) -> None:
        self._user_home = user_home
        self._system_root = system_root
        self._run = run
        self._uid = uid

    def plist_path(self, *, all_users: bool) -> Path:
        base = self._system_root / "Library" if all_users else (self._user_home or Path.home()) / "Library"
        return base / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"

    def _domain(self) -> str:
        uid = self._uid if self._uid is not None else (os.getuid() if hasattr(os, "getuid") else 0)
        return f"gui/{uid}"

    def register(self, spec: LaunchSpec) -> list[str]:
        path = self.plist_path(all_users=spec.all_users)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(plist_text(spec), encoding="utf-8")
        tmp.chmod(0o644)  # launchd ignores group/world-writable plists
        tmp.replace(path)
        done = [str(path)]
        if not spec.all_users:
            # Load now so the agent runs without a logout; a plist already loaded is booted out first.
            self._run(["launchctl", "bootout", self._domain(), str(path)])
            result = self._run(["launchctl", "bootstrap", self._domain(), str(path)])
            if result.returncode == 0:
                done.append(f"launchd job {LAUNCHD_LABEL} loaded")
            else:
                log.warning(
                    "launchctl bootstrap failed (%s): %s; it loads at next login", result.returncode, result.output
                )
        return done

    def unregister(self, spec: LaunchSpec) -> list[str]:
        path = self.plist_path(all_users=spec.all_users)
        if not path.exists():
            return []
        if not spec.all_users:
            self._run(["launchctl", "bootout", self._domain(), str(path)])
        path.unlink()
        return [str(path)]
