"""Where agent state lives. Honours DESKWARDEN_HOME so tests and several agents never share state.

Pure functions; safe from any thread.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

import platformdirs

from policy_client import resources

ENV_HOME = "DESKWARDEN_HOME"


def state_dir() -> Path:
    """The agent's private state directory, created with mode 0700 if missing."""
    override = os.environ.get(ENV_HOME)
    path = Path(override).expanduser() if override else Path(platformdirs.user_data_dir("DeskWarden", "DeskWarden"))
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def outbox_path(home: Path) -> Path:
    return home / "outbox.db"


def policy_dir(home: Path) -> Path:
    return home / "policy"


def quarantine_dir(home: Path) -> Path:
    return home / "quarantine"


def config_path(home: Path) -> Path:
    return home / "agent.json"


def log_dir(home: Path) -> Path:
    return home / "logs"


def status_path(home: Path) -> Path:
    """Snapshot the running agent writes for `deskwarden status`."""
    return home / "status.json"


def service_state_dir() -> Path:
    """The privileged service's machine-wide state directory (only root/SYSTEM may read it)."""
    platform: str = sys.platform  # a plain str, so mypy --platform checks every branch
    if platform == "win32":
        from agent_app.core.win32api import program_data_dir

        return program_data_dir() / "DeskWarden"
    if platform == "darwin":
        return Path("/Library/Application Support/DeskWarden")
    return Path("/var/lib/deskwarden")


def assets_dir() -> Path:
    """Bundled assets (default policy, icons): DESKWARDEN_ASSETS, the PyInstaller bundle, the source tree's assets/,
    or a wheel's installed data files (see `policy_client.resources`)."""
    return resources.assets_dir()


def login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"
