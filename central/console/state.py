"""What the console shares between requests of one process: the alert bus, the alerting thread, the scheduler.

Built by `install_console` at app creation; stored on `app.state.console`; immutable afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from central.alerting.bus import AlertBus
from central.alerting.service import AlertingService
from central.auth.passwords import HashGate
from central.retention import RetentionScheduler
from central.runtime import Runtime


@dataclass(frozen=True)
class ConsoleState:
    runtime: Runtime
    bus: AlertBus
    alerting: AlertingService
    retention: RetentionScheduler
    hash_gate: HashGate
    """Bounds concurrent password hashing (login, password changes, new users) in this process."""
    stream_recheck_s: float = 5.0
    """How often an open alert stream re-checks its caller (logged out, disabled, token revoked or expired)."""
    secure_cookies: bool | None = None
    """None: mark cookies Secure when the request came over HTTPS (directly or per X-Forwarded-Proto)."""


def console_of(request: Request) -> ConsoleState:
    state: ConsoleState = request.app.state.console
    return state
