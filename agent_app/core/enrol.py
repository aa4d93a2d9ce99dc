"""`deskwarden enroll`: trade an enrolment token for a device identity. Runs on the main thread."""

from __future__ import annotations

from pathlib import Path

from agent_app.core import paths
from agent_app.core.privilege import privileged
from policy_client.enrollment import enroll
from policy_client.secrets import SecretStore, load_or_create_keys


def enrol_here(
    server_url: str, token: str, *, ca_bundle: str | None = None, home: Path | None = None, machine: bool = False
) -> str:
    """Enrol the service whose state lives in `home` (default: the machine-wide state directory when run as
    root, else DESKWARDEN_HOME or the user data dir). `machine`: secrets in the machine scope (the service)."""
    if home is None:
        home = paths.service_state_dir() if machine and privileged() else paths.state_dir()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = SecretStore(home, machine=machine, backend=_machine_backend() if machine and privileged() else None)
    keys = load_or_create_keys(store)
    config = enroll(
        server_url,
        token,
        home=home,
        store=store,
        chain_key=keys.chain_key,
        ca_bundle=ca_bundle,
        config_file=paths.config_path(home),
    )
    return config.device_id


def _machine_backend() -> object | None:
    from agent_app.core.machine_secrets import machine_backend

    return machine_backend()
