"""Whether the agent may stop: policy `agent.allow_quit` or an admin unlock code issued by the endpoint.

Pure functions; called on the main thread by the tray's quit action and by `deskwarden uninstall`.
"""

from __future__ import annotations

import hmac
from datetime import datetime, timedelta

from policy_client.schema import PolicyDocument, unlock_code


def check_unlock_code(chain_key: bytes | None, code: str, *, now: datetime) -> bool:
    """True when `code` is today's or yesterday's code (UTC) for this device; never true when not enrolled."""
    if not chain_key:
        return False
    given = code.strip().lower()
    today = now.date()
    return any(hmac.compare_digest(unlock_code(chain_key, day), given) for day in (today, today - timedelta(days=1)))


def may_stop(policy: PolicyDocument, chain_key: bytes | None, unlock_code: str | None, *, now: datetime) -> bool:
    """Policy allows quitting, or a valid unlock code was given (`chain_key` is None when not enrolled)."""
    if policy.controls.agent.allow_quit:
        return True
    return unlock_code is not None and check_unlock_code(chain_key, unlock_code, now=now)
