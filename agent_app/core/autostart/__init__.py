"""`deskwarden install` / `uninstall`: enrol, register autostart and its watchdog per OS, and remove them again.

Runs on the main thread of the CLI process. The per-OS adapter is chosen in `default_adapter` (lazy imports).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from agent_app import __version__
from agent_app.core import paths
from agent_app.core.autostart.model import AutostartAdapter, LaunchSpec, agent_argv, launch_env
from policy_client.schema import EventDraft, EventKind, PolicyDocument, Severity, utc_now

__all__ = [
    "AutostartAdapter",
    "LaunchSpec",
    "default_adapter",
    "install",
    "launch_spec",
    "uninstall",
]

log = logging.getLogger(__name__)

EXIT_REFUSED = 3
DELIVER_TIMEOUT_S = 5.0


def default_adapter() -> AutostartAdapter:
    """The adapter for this OS (the one place that chooses)."""
    platform: str = sys.platform  # a plain str: mypy --platform checks every branch
    if platform == "win32":
        from agent_app.core.autostart.windows import WindowsAutostart

        return WindowsAutostart()
    if platform == "darwin":
        from agent_app.core.autostart.macos import MacAutostart

        return MacAutostart()
    from agent_app.core.autostart.linux import LinuxAutostart

    return LinuxAutostart()


def launch_spec(*, all_users: bool) -> LaunchSpec:
    """The per-user (unprotected) registration: the helper with this user's own service as its child. The machine
    layout registers the helper alone (`agent_app.core.service_install`)."""
    return LaunchSpec(
        argv=(*agent_argv(), "--with-service"), version=__version__, all_users=all_users, env=launch_env()
    )


def install(
    *,
    server: str | None,
    token: str | None,
    ca: str | None,
    all_users: bool,
    home: Path | None = None,
    adapter: AutostartAdapter | None = None,
    spec: LaunchSpec | None = None,
) -> int:
    """Enrol when `server` and `token` are given, then register autostart. Prints what it did."""
    if (server is None) != (token is None):
        raise ValueError("--server and --token go together (enrolment needs both)")
    home = home or paths.state_dir()
    if server is not None and token is not None:
        from agent_app.core.enrol import enrol_here

        device_id = enrol_here(server, token, ca_bundle=ca, home=home)
        print(f"enrolled as device {device_id}")
    adapter = adapter or default_adapter()
    for item in adapter.register(spec or launch_spec(all_users=all_users)):
        print(f"registered: {item}")
    return 0


def uninstall(
    *,
    unlock_token: str | None,
    all_users: bool = False,
    home: Path | None = None,
    adapter: AutostartAdapter | None = None,
    spec: LaunchSpec | None = None,
    secret_backend: Any = None,
    now: Callable[[], datetime] = utc_now,
    deliver_timeout: float = DELIVER_TIMEOUT_S,
) -> int:
    """Remove autostart when policy allows quitting or `unlock_token` is a valid uninstall token signed by the
    endpoint for this device; report the uninstall either way."""
    from policy_client.secrets import SecretStore

    home = home or paths.state_dir()

    def remove() -> list[str]:
        return (adapter or default_adapter()).unregister(spec or launch_spec(all_users=all_users))

    secrets = SecretStore(home, backend=secret_backend)
    return gated_uninstall(home, secrets, unlock_token, remove, now=now, deliver_timeout=deliver_timeout)


def gated_uninstall(
    home: Path,
    secrets: Any,
    unlock_token: str | None,
    remove: Callable[[], list[str]],
    *,
    now: Callable[[], datetime] = utc_now,
    deliver_timeout: float = DELIVER_TIMEOUT_S,
) -> int:
    """The uninstall gate shared by the per-user agent and the machine service: policy allows it or an uninstall
    token checks out; then `remove()` runs, and the token's use and the stop are recorded and uploaded. A refusal
    is recorded too. Exit code 0 or EXIT_REFUSED."""
    from agent_app.core.unlock import check_unlock_token
    from policy_client.agent_config import load_config

    allowed = current_policy(home).controls.agent.allow_quit
    grant = None
    if unlock_token and not allowed:
        config = load_config(paths.config_path(home))
        grant = check_unlock_token(config, unlock_token, scope="uninstall", now=now(), state_dir=home)
    if not allowed and grant is None:
        reason = "invalid unlock token" if unlock_token else "no unlock token"
        record_offline(
            home,
            secrets,
            EventDraft(kind=EventKind.agent_tamper, severity=Severity.high, data={"reason": "uninstall_refused"}),
        )
        print(
            f"deskwarden: uninstall refused ({reason}): policy does not allow stopping the agent; "
            "ask an administrator for an uninstall token and pass --unlock-token",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    removed = remove()
    for item in removed:
        print(f"removed: {item}")
    if grant is not None:
        record_offline(
            home,
            secrets,
            EventDraft(
                kind=EventKind.agent_unlock_used,
                severity=Severity.medium,
                data={"token_id": grant.token_id, "scope": grant.scope, "minutes": grant.minutes},
            ),
        )
    record_offline(
        home,
        secrets,
        EventDraft(
            kind=EventKind.agent_stopped,
            severity=Severity.medium,
            data={"reason": "uninstall", "unlock_token_used": grant is not None, "removed": len(removed)},
        ),
    )
    if secrets.get("device_credential"):
        deliver_queued(home, secrets, timeout=deliver_timeout)
    return 0


def current_policy(home: Path) -> PolicyDocument:
    """The agent's last-known-good policy, or the bundled default."""
    from agent_app.core.paths import assets_dir
    from policy_client.agent_config import load_config
    from policy_client.policy_store import PolicyStore

    config = load_config(paths.config_path(home))
    trusted = config.trusted_keys() if config else {}
    store = PolicyStore(
        paths.policy_dir(home), trusted_keys=trusted, default_path=assets_dir() / "policy" / "default.json"
    )
    return store.current()


def record_offline(home: Path, secrets: Any, draft: EventDraft) -> None:
    """Append one event through the outbox (it is durable when this returns)."""
    from agent_app.core.outbox import Outbox
    from policy_client.secrets import load_or_create_keys

    outbox = Outbox(paths.outbox_path(home), keys=load_or_create_keys(secrets))
    try:
        outbox.append([draft])
    finally:
        outbox.close()


def deliver_queued(home: Path, secrets: Any, *, timeout: float) -> None:
    """Best effort: upload what is queued (the uninstall event included) before the agent is gone."""
    from agent_app.core.outbox import Outbox
    from agent_app.core.uploader import Uploader
    from policy_client.agent_config import load_config
    from policy_client.secrets import load_or_create_keys
    from policy_client.transport import Transport

    config = load_config(paths.config_path(home))
    if config is None:
        return
    keys = load_or_create_keys(secrets)
    transport = Transport(config.server_url, ca_bundle=config.ca_bundle, credential=secrets.get("device_credential"))
    uploader = Uploader(
        outbox_factory=lambda: Outbox(paths.outbox_path(home), keys=keys, check=False),
        transport=transport,
        device_id=config.device_id,
        record=lambda draft: record_offline(home, secrets, draft),
    )
    probe = Outbox(paths.outbox_path(home), keys=keys, check=False)
    waiter = threading.Event()
    try:
        uploader.start()
        deadline = time.monotonic() + timeout
        while probe.depth() > 0 and time.monotonic() < deadline:
            waiter.wait(0.1)
    finally:
        uploader.stop()
        depth = probe.depth()
        probe.close()
    if depth:
        print(f"{depth} events stay queued (endpoint not reachable); they upload if the agent is installed again")
    else:
        print("uninstall reported to the endpoint")
