"""Values and ports shared by the per-OS autostart adapters.

Used on the main thread by `deskwarden install` / `uninstall`.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

APP_ID = "deskwarden"
"""File stem of the .desktop entry and the systemd unit."""
LAUNCHD_LABEL = "org.deskwarden.agent"
TASK_NAME = "DeskWarden Agent"


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """How autostart launches the agent: the command line and the environment it needs."""

    argv: tuple[str, ...]
    version: str
    all_users: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    """Extra environment (DESKWARDEN_HOME when the installer ran with one)."""


@dataclass(frozen=True, slots=True)
class CommandResult:
    returncode: int
    output: str = ""


class CommandRunner(Protocol):
    """Runs an OS tool (systemctl, launchctl, schtasks); tests pass a recording fake."""

    def __call__(self, argv: Sequence[str]) -> CommandResult: ...


def run_command(argv: Sequence[str]) -> CommandResult:
    """The real runner: no shell, 30 s limit, output captured for the log."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return CommandResult(127, f"{type(exc).__name__}: {exc}")
    return CommandResult(done.returncode, (done.stdout + done.stderr).strip())


class AutostartAdapter(Protocol):
    """Registers and removes the agent's autostart (and its watchdog) on one OS."""

    name: str

    def register(self, spec: LaunchSpec) -> list[str]:
        """Write the autostart entries; returns what was written or registered, for the installer's output."""
        ...

    def unregister(self, spec: LaunchSpec) -> list[str]:
        """Remove every entry `register` could have made (missing ones are fine); returns what was removed."""
        ...


def agent_argv() -> tuple[str, ...]:
    """The command line that runs this agent: the bundle's executable, or this interpreter with `-m agent_app`."""
    if getattr(sys, "frozen", False):
        return (sys.executable, "agent")
    return (sys.executable, "-m", "agent_app", "agent")


def launch_env() -> dict[str, str]:
    """Environment autostart must carry over: a moved agent home."""
    home = os.environ.get("DESKWARDEN_HOME")
    return {"DESKWARDEN_HOME": str(Path(home).expanduser().resolve())} if home else {}
