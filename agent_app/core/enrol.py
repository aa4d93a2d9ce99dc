"""`deskwarden enroll`: trade an enrolment token for a device identity. Runs on the main thread."""

from __future__ import annotations

from pathlib import Path

from agent_app.core import paths
from policy_client.enrollment import enroll
from policy_client.secrets import SecretStore, load_or_create_keys


def enrol_here(server_url: str, token: str, *, ca_bundle: str | None = None, home: Path | None = None) -> str:
    """Enrol the agent whose state lives in `home` (default: DESKWARDEN_HOME or the user data dir)."""
    home = home or paths.state_dir()
    store = SecretStore(home)
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
