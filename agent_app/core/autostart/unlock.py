"""Whether the agent may stop: policy `agent.allow_quit` or an admin unlock code issued by the endpoint.

Pure functions; called on the main thread by the tray's quit action and by `deskwarden uninstall`.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import date, datetime, timedelta

from policy_client.schema import PolicyDocument

CODE_LENGTH = 8


def expected_unlock_code(credential: str, day: date) -> str:
    """The code the endpoint issues for one UTC day: HMAC-SHA256(device credential, "unlock:" + date), 8 hex."""
    digest = hmac.new(credential.encode(), f"unlock:{day.isoformat()}".encode(), hashlib.sha256).hexdigest()
    return digest[:CODE_LENGTH]


def check_unlock_code(credential: str | None, code: str, *, now: datetime) -> bool:
    """True when `code` is today's or yesterday's code (UTC) for this device; never true when not enrolled."""
    if not credential:
        return False
    given = code.strip().lower()
    today = now.date()
    return any(
        hmac.compare_digest(expected_unlock_code(credential, day), given) for day in (today, today - timedelta(days=1))
    )


def may_stop(policy: PolicyDocument, credential: str | None, unlock_code: str | None, *, now: datetime) -> bool:
    """Policy allows quitting, or a valid unlock code was given."""
    if policy.controls.agent.allow_quit:
        return True
    return unlock_code is not None and check_unlock_code(credential, unlock_code, now=now)
