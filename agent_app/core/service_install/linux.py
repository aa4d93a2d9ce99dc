"""Linux: a systemd system unit for the service and an XDG autostart entry that starts the helper in every
graphical session. Runs on the installer's main thread (as root).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from agent_app import __version__
from agent_app.core.autostart.linux import desktop_quote, systemd_quote
from agent_app.core.autostart.model import CommandRunner, run_command
from agent_app.core.service_install import ServiceInstallError, check_absolute, remove_file, under, write_file

log = logging.getLogger(__name__)

UNIT_NAME = "deskwarden.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT_NAME}"
AUTOSTART_PATH = "/etc/xdg/autostart/deskwarden-agent.desktop"

WRITABLE_PATHS = ("-/home", "-/var/home", "-/tmp", "-/var/tmp", "-/run/user")
"""What stays writable under ProtectSystem=strict besides the unit's own directories (a leading - skips a path the
machine does not have). /home (and /var/home, where /home is a link to it): the service moves files out of the
desk users' download folders into quarantine. /tmp, /var/tmp and /run/user: helpers the service restarts run in
its mount namespace and need their X sockets, temporary files and XDG_RUNTIME_DIR (PrivateTmp would hide the X
server's sockets from them)."""


def unit_text(exe_argv: Sequence[str], *, version: str = __version__) -> str:
    exec_start = " ".join(systemd_quote(arg) for arg in [*exe_argv, "service"])
    return f"""\
# DeskWarden service: the privileged, per-machine half of the agent (outbox, keys, policy, USB enforcement,
# download watching). Written by `deskwarden install-service`; removed by `deskwarden uninstall-service`.
# Version {version}.
[Unit]
Description=DeskWarden desktop compliance service
Documentation=https://github.com/deskwarden/deskwarden/blob/main/docs/deploy.md
Wants=network-online.target
After=network-online.target systemd-logind.service
# Never stop restarting: a service that stays down is what the endpoint alerts on, so keep trying.
StartLimitIntervalSec=0

[Service]
Type=simple
ExecStart={exec_start}
Restart=always
RestartSec=5
TimeoutStopSec=20
# Stop or restart only the service's own process. Helpers it restarted run as the desk users in their sessions
# but are its children, so they sit in this unit's cgroup: the default (control-group) would kill them with it.
KillMode=process
# /run/deskwarden: the IPC socket. 0755 and owned by root, so only the service can create or replace the socket
# while every helper can reach it.
RuntimeDirectory=deskwarden
RuntimeDirectoryMode=0755
# /var/lib/deskwarden: outbox, keys, policy, quarantine. Root only.
StateDirectory=deskwarden
StateDirectoryMode=0700
# /etc/deskwarden: configuration an administrator deploys; read-only to the service.
ConfigurationDirectory=deskwarden
ConfigurationDirectoryMode=0755
# Hardening that leaves the service's work possible: it reads and moves users' files, kills processes, and
# starts helpers as the desk users, so no ProtectHome, PrivateUsers, PrivateTmp or capability bounding.
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths={" ".join(WRITABLE_PATHS)}
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
# Unix sockets (IPC, D-Bus to udisks and logind), netlink (udev device events), IP (the endpoint).
RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET AF_INET6

[Install]
WantedBy=multi-user.target
"""


def autostart_text(exe_argv: Sequence[str], *, version: str = __version__) -> str:
    exec_line = " ".join(desktop_quote(arg) for arg in [*exe_argv, "agent"])
    return f"""\
[Desktop Entry]
Type=Application
Name=DeskWarden
GenericName=Desktop compliance monitor
Comment=Reports removable storage, downloads, clipboard and screen-capture use to your organisation
Exec={exec_line}
Icon=deskwarden
Terminal=false
NoDisplay=true
Categories=Utility;Security;
X-GNOME-Autostart-enabled=true
X-GNOME-Autostart-Delay=2
X-DeskWarden-Version={version}
"""


def install_service(
    exe_argv: Sequence[str], *, runner: CommandRunner = run_command, root: Path = Path("/")
) -> list[str]:
    check_absolute(exe_argv)
    unit, autostart = under(root, UNIT_PATH), under(root, AUTOSTART_PATH)
    write_file(unit, unit_text(exe_argv))
    write_file(autostart, autostart_text(exe_argv))
    done = [str(unit), str(autostart)]
    if root != Path("/"):
        # An image being built: enable offline (the [Install] symlink under root); it starts at first boot.
        _call(runner, ["systemctl", f"--root={root}", "enable", UNIT_NAME])
        done.append(f"systemd unit {UNIT_NAME} enabled in {root}")
        return done
    _call(runner, ["systemctl", "daemon-reload"])
    _call(runner, ["systemctl", "enable", "--now", UNIT_NAME])
    done.append(f"systemd unit {UNIT_NAME} enabled and started")
    return done


def uninstall_service(*, runner: CommandRunner = run_command, root: Path = Path("/")) -> list[str]:
    removed: list[str] = []
    unit = under(root, UNIT_PATH)
    if unit.exists():
        if root == Path("/"):
            stop = ["systemctl", "disable", "--now", UNIT_NAME]
        else:
            stop = ["systemctl", f"--root={root}", "disable", UNIT_NAME]
        result = runner(stop)
        if result.returncode != 0:
            log.warning("%s failed (%s): %s", " ".join(stop), result.returncode, result.output[:300])
    remove_file(unit, removed)
    remove_file(under(root, AUTOSTART_PATH), removed)
    if root == Path("/") and removed:
        runner(["systemctl", "daemon-reload"])
    return removed


def _call(runner: CommandRunner, argv: list[str]) -> None:
    result = runner(argv)
    if result.returncode != 0:
        raise ServiceInstallError(f"{' '.join(argv)} failed ({result.returncode}): {result.output[:500]}")
