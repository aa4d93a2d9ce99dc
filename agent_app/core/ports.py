"""What the UI may ask of the running agent (implemented by `agent_app.core.runtime.AgentRuntime`).

Methods are called on the GUI thread and return quickly; listener callbacks may fire on any thread,
so the UI re-emits them as queued Qt signals before touching widgets.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from agent_app.core.pipeline import Notice
from agent_app.core.status import AgentStatus
from policy_client.schema import EventDraft, PolicyDocument


class AgentPort(Protocol):
    @property
    def policy(self) -> PolicyDocument:
        """The policy snapshot in force (immutable; replaced whole on update)."""
        ...

    @property
    def user(self) -> str: ...

    def status(self) -> AgentStatus: ...

    def record(self, draft: EventDraft) -> None:
        """Durably record an event raised by the person's answer (acknowledgement, justification...)."""
        ...

    def history(self, *, limit: int = 200) -> list[dict[str, Any]]:
        """This device's recent events as they left (or will leave) the machine, newest first."""
        ...

    def last_input(self) -> datetime | None:
        """When the person last used keyboard or mouse (None when idle detection is unavailable)."""
        ...

    def may_quit(self, unlock_code: str | None = None) -> bool:
        """True when policy allows quitting, or the admin unlock code is valid."""
        ...

    def set_attention(self, reasons: tuple[str, ...]) -> None:
        """Tell the endpoint what the person must act on (sent with the next heartbeat)."""
        ...

    def stop(self, *, reason: str) -> None: ...

    def add_notice_listener(self, callback: Callable[[Notice], None]) -> None: ...

    def add_status_listener(self, callback: Callable[[AgentStatus], None]) -> None: ...

    def add_policy_listener(self, callback: Callable[[PolicyDocument], None]) -> None: ...
