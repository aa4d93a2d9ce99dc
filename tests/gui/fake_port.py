"""An in-memory AgentPort for GUI tests and scripts/screenshots.py: records drafts in a list.

Listener callbacks can be fired from any thread, like the real runtime does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from agent_app.core.pipeline import Notice
from agent_app.core.status import AgentStatus
from policy_client.schema import EventDraft, PolicyDocument

UNLOCK_TOKEN = "DW1-" + "-".join((("7QKXM", "R2D9F", "HV4TB", "N8WCJ", "P3LZE", "K6YAS", "G5UQD", "X2MRV") * 3)[:20])
"""Shaped like the endpoint's unlock tokens: long, dash-separated, usually pasted."""


def default_status(**changes: Any) -> AgentStatus:
    values: dict[str, Any] = {
        "device_id": "dev-7f3a",
        "policy_version": 7,
        "queue_depth": 0,
        "last_upload": datetime(2025, 3, 3, 9, 15, tzinfo=UTC),
        "collectors": {"usb": "running", "downloads": "running", "clipboard": "running", "screen_capture": "running"},
        "connection": "online",
        "server_url": "https://deskwarden.example.com",
        "mode": "protected",
    }
    values.update(changes)
    return AgentStatus(**values)


class FakePort:
    def __init__(
        self,
        *,
        policy: PolicyDocument | None = None,
        status: AgentStatus | None = None,
        allow_quit: bool = False,
        history: list[dict[str, Any]] | None = None,
        last_input: datetime | None = None,
    ) -> None:
        self._policy = policy or PolicyDocument(version=7, org="Acme CX")
        self._status = status or default_status()
        self.allow_quit = allow_quit
        self.drafts: list[EventDraft] = []
        self.rows = history or []
        self.input_at = last_input
        self.stops: list[str] = []
        self.attention_reported: list[tuple[str, ...]] = []
        self.unlock_attempts: list[str | None] = []
        self.stopped = threading.Event()
        self.notice_listeners: list[Callable[[Notice], None]] = []
        self.status_listeners: list[Callable[[AgentStatus], None]] = []
        self.policy_listeners: list[Callable[[PolicyDocument], None]] = []

    # --- AgentPort --------------------------------------------------------------------------------

    @property
    def policy(self) -> PolicyDocument:
        return self._policy

    @property
    def user(self) -> str:
        return "priya.n"

    def status(self) -> AgentStatus:
        return self._status

    def record(self, draft: EventDraft) -> None:
        self.drafts.append(draft)

    def history(self, *, limit: int = 200) -> list[dict[str, Any]]:
        return self.rows[:limit]

    def last_input(self) -> datetime | None:
        return self.input_at

    def may_quit(self, unlock_code: str | None = None) -> bool:
        self.unlock_attempts.append(unlock_code)
        return self.allow_quit or unlock_code == UNLOCK_TOKEN

    def set_attention(self, reasons: tuple[str, ...]) -> None:
        self.attention_reported.append(reasons)

    def stop(self, *, reason: str) -> None:
        self.stops.append(reason)
        self.stopped.set()

    def add_notice_listener(self, callback: Callable[[Notice], None]) -> None:
        self.notice_listeners.append(callback)

    def add_status_listener(self, callback: Callable[[AgentStatus], None]) -> None:
        self.status_listeners.append(callback)

    def add_policy_listener(self, callback: Callable[[PolicyDocument], None]) -> None:
        self.policy_listeners.append(callback)

    # --- test helpers -----------------------------------------------------------------------------

    def push_notice(self, notice: Notice) -> None:
        for callback in self.notice_listeners:
            callback(notice)

    def push_status(self, status: AgentStatus) -> None:
        self._status = status
        for callback in self.status_listeners:
            callback(status)

    def push_policy(self, policy: PolicyDocument) -> None:
        self._policy = policy
        for callback in self.policy_listeners:
            callback(policy)

    def kinds(self) -> list[str]:
        return [draft.kind.value for draft in self.drafts]
