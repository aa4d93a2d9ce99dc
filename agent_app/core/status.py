"""The agent's health snapshot: built by the runtime on the main thread, written to status.json for
`deskwarden status`, and shown by the tray."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from agent_app.core.paths import state_dir, status_path

TICK_SECONDS = 5.0
"""How often each process refreshes its health snapshot (collector checks, status file, tray)."""


class TrayState(StrEnum):
    """What the tray icon shows, worst first."""

    needs_reenrolment = "needs_reenrolment"
    attention = "attention"
    offline = "offline"
    protected = "protected"


@dataclass(frozen=True, slots=True)
class AgentStatus:
    device_id: str | None
    policy_version: int
    queue_depth: int
    last_upload: datetime | None
    collectors: dict[str, str]
    connection: str
    """Uploader state: online / offline / needs_reenrolment / not_enrolled."""
    attention: tuple[str, ...] = field(default_factory=tuple)
    """Plain-language reasons the person must act (overdue acknowledgement, missed clean desk...)."""
    server_url: str | None = None
    pid: int | None = None
    updated_at: datetime | None = None
    mode: str = "unprotected"
    """`protected` under a privileged service; `unprotected` when service and helper run as the desk user."""
    state_dir: str | None = None

    @property
    def tray_state(self) -> TrayState:
        if self.connection == "needs_reenrolment":
            return TrayState.needs_reenrolment
        if self.attention or any(state == "failed" for state in self.collectors.values()):
            return TrayState.attention
        if self.connection != "online":
            return TrayState.offline
        return TrayState.protected

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("last_upload", "updated_at"):
            value = data[key]
            data[key] = value.isoformat() if value is not None else None
        data["attention"] = list(self.attention)
        data["tray_state"] = self.tray_state.value
        return data


def write_status(home: Path, status: AgentStatus) -> None:
    path = status_path(home)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(status.to_json(), indent=2), encoding="utf-8")
    tmp.replace(path)


def read_status(home: Path) -> dict[str, Any]:
    """The last snapshot of a running (or stopped) agent, completed from config and outbox when missing."""
    import sqlite3  # lazy: the session helper imports this module for AgentStatus alone

    from agent_app.core.outbox import read_depth
    from policy_client.agent_config import AgentConfig, load_config

    path = status_path(home)
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
    config: AgentConfig | None = None
    try:
        config = load_config(home / "agent.json")
    except Exception:  # noqa: BLE001 - status must print something even with a damaged config
        config = None
    data.setdefault("device_id", config.device_id if config else None)
    data.setdefault("policy_version", None)
    data.setdefault("last_upload", None)
    data.setdefault("collectors", {})
    try:
        data["queue_depth"] = read_depth(home / "outbox.db")
    except (sqlite3.Error, OSError) as exc:
        # A read-only or damaged state dir: say so instead of dying with a traceback.
        data["queue_depth"] = None
        data["queue_error"] = f"cannot read the outbox: {exc}"
    return data


def print_status(*, as_json: bool, state_dir: Path | None = None, socket_path: Path | None = None) -> int:
    """From the service's state directory when it is readable (root, or unprotected mode), otherwise asked of the
    running service over its socket (what a desk user may see)."""
    data = _status_data(state_dir, socket_path)
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True))
        return 0
    lines = [
        f"device id:       {data['device_id'] or 'not enrolled'}",
        f"policy version:  {data['policy_version'] if data['policy_version'] is not None else 'unknown'}",
        f"queue depth:     {data['queue_depth'] if data['queue_depth'] is not None else data.get('queue_error')}",
        f"last upload:     {data['last_upload'] or 'never'}",
        f"connection:      {data.get('connection', 'agent not running')}",
        f"mode:            {data.get('mode', 'unknown')}",
        f"state dir:       {data.get('state_dir') or 'unknown'}",
        "collectors:      "
        + (", ".join(f"{name}={state}" for name, state in sorted(data["collectors"].items())) or "none running"),
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _status_data(state_dir_arg: Path | None, socket_path: Path | None) -> dict[str, Any]:
    from agent_app.core.paths import service_state_dir

    home = state_dir_arg
    if home is None and socket_path is None and os.access(service_state_dir() / "agent.json", os.R_OK):
        home = service_state_dir()
    if home is not None:
        data = read_status(home)
        data.setdefault("mode", "unknown")
        data["state_dir"] = str(home)
        return data
    asked = _ask_service(socket_path)
    if asked is not None:
        return asked
    data = read_status(state_dir())
    data.setdefault("mode", "unprotected")
    data["state_dir"] = str(state_dir())
    return data


def _ask_service(socket_path: Path | None) -> dict[str, Any] | None:
    from agent_app.core.ipc.channel import connect, default_socket_path, read_frame
    from agent_app.core.ipc.protocol import Hello, StatusRequest, encode, parse_server_message

    try:
        channel = connect(socket_path or default_socket_path(), timeout=3.0)
    except OSError:
        return None
    try:
        channel.settimeout(5.0)
        channel.sendall(encode(Hello(id=1, role="query")))
        channel.sendall(encode(StatusRequest(id=2)))
        while True:
            message = parse_server_message(read_frame(channel))
            if getattr(message, "re", None) == 2:
                result: dict[str, Any] = dict(getattr(message, "result", {}))
                return result
    except (OSError, ValueError):
        return None
    finally:
        channel.close()
