"""Linux autostart: an XDG autostart .desktop entry plus, where systemd runs the session, a systemd --user unit
that restarts the agent (the companion watchdog). Called on the main thread by install/uninstall.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from agent_app.core.autostart.model import APP_ID, CommandRunner, LaunchSpec, run_command
from agent_app.core.autostart.templates import render

log = logging.getLogger(__name__)

UNIT = f"{APP_ID}.service"


def desktop_quote(arg: str) -> str:
    """Quote one argument for a .desktop Exec key (Desktop Entry spec: quoting, then string escapes)."""
    arg = arg.replace("%", "%%")
    if arg and not any(c in arg for c in " \t\n\"'\\><~|&;$*?#()`="):
        return arg
    inner = arg
    for c in ("\\", '"', "`", "$"):
        inner = inner.replace(c, "\\" + c)
    # The Exec value is itself a "string" value, where a backslash is written as two.
    return '"' + inner.replace("\\", "\\\\") + '"'


def systemd_quote(arg: str) -> str:
    """Quote one argument for ExecStart=/Environment= (no specifier or variable expansion)."""
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    if escaped == arg and arg and not any(c.isspace() or c in "'\"" for c in arg):
        return arg
    return f'"{escaped}"'


class LinuxAutostart:
    """XDG autostart entry and systemd --user unit, per user (XDG_CONFIG_HOME) or for all users (/etc)."""

    name = "linux"

    def __init__(
        self,
        *,
        config_home: Path | None = None,
        system_config: Path = Path("/etc"),
        run: CommandRunner = run_command,
        systemd: bool | None = None,
    ) -> None:
        self._config_home = config_home
        self._system_config = system_config
        self._run = run
        self._systemd = systemd

    # --- paths ---------------------------------------------------------------------------------

    def user_config_home(self) -> Path:
        if self._config_home is not None:
            return self._config_home
        env = os.environ.get("XDG_CONFIG_HOME")
        return Path(env) if env else Path.home() / ".config"

    def desktop_path(self, *, all_users: bool) -> Path:
        base = self._system_config / "xdg" if all_users else self.user_config_home()
        return base / "autostart" / f"{APP_ID}.desktop"

    def unit_path(self, *, all_users: bool) -> Path:
        base = self._system_config / "systemd" if all_users else self.user_config_home() / "systemd"
        return base / "user" / UNIT

    def _systemctl(self, all_users: bool) -> list[str]:
        return ["systemctl", "--global"] if all_users else ["systemctl", "--user"]

    def uses_systemd(self, *, all_users: bool) -> bool:
        """systemd is used when asked, or when systemctl exists and (per user) the user manager answers."""
        if self._systemd is not None:
            return self._systemd
        if shutil.which("systemctl") is None:
            return False
        if all_users:
            return True
        return self._run(["systemctl", "--user", "show-environment"]).returncode == 0

    # --- AutostartAdapter ----------------------------------------------------------------------

    def register(self, spec: LaunchSpec) -> list[str]:
        done: list[str] = []
        all_users = spec.all_users
        exec_line: str | None = None
        if self.uses_systemd(all_users=all_users):
            exec_line = self._register_unit(spec, done)
        if exec_line is None:
            env_words = [desktop_quote(f"{k}={v}") for k, v in sorted(spec.env.items())]
            exec_line = " ".join([*(["env", *env_words] if env_words else []), *(desktop_quote(a) for a in spec.argv)])
        desktop = self.desktop_path(all_users=all_users)
        _write(desktop, render("linux/deskwarden.desktop", {"exec": exec_line, "version": spec.version}))
        done.insert(0, str(desktop))
        return done

    def _register_unit(self, spec: LaunchSpec, done: list[str]) -> str | None:
        """Write and enable the unit; the .desktop Exec line that starts it, or None to start the agent directly."""
        all_users = spec.all_users
        unit = self.unit_path(all_users=all_users)
        environment = "\n".join(f"Environment={systemd_quote(f'{k}={v}')}" for k, v in sorted(spec.env.items()))
        values = {
            "exec": " ".join(systemd_quote(a) for a in spec.argv),
            "environment": environment,
            "version": spec.version,
        }
        _write(unit, render("linux/deskwarden.service", values))
        if not all_users:  # `--global` has no daemon-reload: each user manager reads /etc/systemd/user at login
            self._call(["systemctl", "--user", "daemon-reload"])
        if not self._call([*self._systemctl(all_users), "enable", UNIT]):
            log.warning("systemd unit could not be enabled; the autostart entry starts the agent without a watchdog")
            unit.unlink()
            return None
        done.extend([str(unit), f"systemd unit {UNIT} enabled"])
        # The session may not reach graphical-session.target (desktops without systemd integration):
        # the autostart entry starts the unit, which is a no-op when it already runs.
        return " ".join(desktop_quote(a) for a in ["systemctl", "--user", "start", UNIT])

    def unregister(self, spec: LaunchSpec) -> list[str]:
        removed: list[str] = []
        all_users = spec.all_users
        unit = self.unit_path(all_users=all_users)
        if unit.exists():
            if all_users:
                self._call([*self._systemctl(True), "disable", UNIT])
            else:
                self._call(["systemctl", "--user", "disable", "--now", UNIT])
            unit.unlink()
            removed.append(str(unit))
            if not all_users:
                self._call(["systemctl", "--user", "daemon-reload"])
        desktop = self.desktop_path(all_users=all_users)
        if desktop.exists():
            desktop.unlink()
            removed.append(str(desktop))
        return removed

    def _call(self, argv: Sequence[str]) -> bool:
        result = self._run(argv)
        if result.returncode != 0:
            log.warning("%s failed (%s): %s", " ".join(argv), result.returncode, result.output[:300])
        return result.returncode == 0


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(0o644)
    tmp.replace(path)
    log.info("wrote %s", path)
