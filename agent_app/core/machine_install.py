"""`deskwarden install` / `uninstall` run as root or Administrator: the protected layout of ARCHITECTURE.md section 6.

Install moves a per-user agent's enrolment and queue into the service (upgrade) or enrols the service, registers
the service and the helper with the OS, and retires the per-user autostart so no second helper starts. Uninstall
needs an uninstall token unless policy allows stopping, stops the service, then reports it. Main thread of the CLI.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from agent_app.core import paths
from agent_app.core.autostart.model import CommandRunner, run_command
from collectors.base import UserHome
from policy_client.schema import utc_now


def install_machine(
    *,
    server: str | None,
    token: str | None,
    ca: str | None,
    state_dir: Path | None = None,
    users: Callable[[], list[UserHome]] | None = None,
    runner: CommandRunner = run_command,
    root: Path = Path("/"),
    exe_argv: list[str] | None = None,
) -> int:
    from agent_app.core import service_install
    from agent_app.core.autostart import default_adapter, launch_spec
    from agent_app.core.desk_users import desk_users
    from agent_app.core.enrol import enrol_here
    from agent_app.core.upgrade import UpgradeError, find_per_user_states, migrate

    if (server is None) != (token is None):
        raise ValueError("--server and --token go together (enrolment needs both)")
    home = state_dir or paths.service_state_dir()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    enrolled = (home / "agent.json").exists()
    if not enrolled:
        for old in find_per_user_states((users or desk_users)()):
            try:
                moved = migrate(old, home)
            except UpgradeError as exc:
                print(f"not moved: {exc}", file=sys.stderr)
                continue
            print(f"moved {old.user}'s enrolment and queued events into the service ({len(moved)} items)")
            enrolled = True
            break
    if not enrolled and server is not None and token is not None:
        device_id = enrol_here(server, token, ca_bundle=ca, home=home, machine=True)
        print(f"enrolled the service as device {device_id}")
    elif server is not None and enrolled:
        print("the service is already enrolled; keeping its identity (revoke it in the console to re-enrol)")
    if root == Path("/"):
        # First: the per-user agent's autostart would start a second helper, and on Windows and macOS its entry has
        # the same name as the machine layout's, which is written next.
        adapter = default_adapter()
        for all_users in (True, False):
            for item in adapter.unregister(launch_spec(all_users=all_users)):
                print(f"retired: {item}")
    for item in service_install.install(exe_argv or service_install.default_exe_argv(), root=root, runner=runner):
        print(f"installed: {item}")
    return 0


def uninstall_machine(
    *,
    unlock_token: str | None,
    state_dir: Path | None = None,
    runner: CommandRunner = run_command,
    root: Path = Path("/"),
    now: Callable[[], datetime] = utc_now,
    deliver_timeout: float = 5.0,
) -> int:
    from agent_app.core import service_install
    from agent_app.core.autostart import gated_uninstall
    from agent_app.core.machine_secrets import machine_backend
    from policy_client.secrets import SecretStore

    home = state_dir or paths.service_state_dir()
    secrets = SecretStore(home, machine=True, backend=machine_backend())

    def remove() -> list[str]:
        return service_install.uninstall(root=root, runner=runner)  # stops the service: the outbox is ours now

    return gated_uninstall(home, secrets, unlock_token, remove, now=now, deliver_timeout=deliver_timeout)
