"""Unlock tokens on the agent side: may the helper quit, or the agent be uninstalled, although policy forbids it?

The endpoint signs each token with its Ed25519 key for one device, one scope and an expiry
(`policy_client.unlock_token`); the service verifies it offline against the key pinned at enrolment, in its
root-only state directory. A token works once. Called on an IPC connection thread or the CLI's main thread.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from datetime import datetime
from pathlib import Path

from policy_client.agent_config import AgentConfig
from policy_client.unlock_token import UnlockToken, UnlockTokenError, verify_unlock_token

log = logging.getLogger(__name__)

UnlockGrant = UnlockToken
SCOPES_COVERING = {"quit": ("quit", "uninstall"), "uninstall": ("uninstall",)}
"""An uninstall token also lets the helper quit (uninstalling stops it); a quit token never uninstalls."""
USED_FILE = "unlock-used.json"
MAX_REMEMBERED = 1000
_lock = threading.Lock()


def check_unlock_token(
    config: AgentConfig | None, token: str, *, scope: str, now: datetime, state_dir: Path | None = None
) -> UnlockGrant | None:
    """The token's grant when it is valid for this device and covers `scope`; None otherwise (logged without
    the token). With `state_dir`, a token already used there is refused and this use is remembered."""
    if config is None:
        return None
    try:
        grant = verify_unlock_token(token, device_id=config.device_id, public_key=config.public_key_bytes(), now=now)
    except UnlockTokenError as exc:
        log.warning("unlock token refused: %s", exc)
        return None
    if grant.scope not in SCOPES_COVERING.get(scope, ()):
        log.warning("unlock token %s is for %s, not %s", grant.token_id, grant.scope, scope)
        return None
    if state_dir is not None and not _remember(state_dir / USED_FILE, grant.token_id):
        log.warning("unlock token %s was already used", grant.token_id)
        return None
    return grant


def _remember(path: Path, token_id: str) -> bool:
    """Add `token_id` to the used list; False when it was there already."""
    with _lock:
        try:
            used = json.loads(path.read_text(encoding="utf-8"))
            used = [str(item) for item in used][-MAX_REMEMBERED:] if isinstance(used, list) else []
        except (OSError, ValueError):
            used = []
        if token_id in used:
            return False
        used.append(token_id)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(used, handle)
        tmp.replace(path)
        return True
