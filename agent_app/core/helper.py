"""`deskwarden agent`: the per-session helper's core. Implements `AgentPort` for the tray over the service.

The helper runs as the desk user and holds no secret: it watches what only the session can see (clipboard,
capture shortcuts, idle time), decides and masks locally with the policy the service pushes, and hands every
event to the service, which records it durably under the user the OS names. Constructed, ticked and stopped
on the main (GUI) thread; push callbacks arrive on the client's reader thread.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from agent_app.core.collector_set import default_collectors
from agent_app.core.ipc.client import ServiceClient, ServiceRefused, ServiceUnavailable
from agent_app.core.ipc.protocol import (
    MAX_EVENTS_PER_RECORD,
    Attention,
    HistoryRequest,
    QuitRequest,
    Record,
)
from agent_app.core.main_calls import MainCall, MainCalls
from agent_app.core.memory import drop_source_cache
from agent_app.core.paths import assets_dir, login_name
from agent_app.core.pipeline import Notice, Pipeline
from agent_app.core.status import AgentStatus
from agent_app.core.supervisor import CollectorSupervisor
from collectors.base import Collector, CollectorContext, Decision
from policy_client.schema import Action, EventDraft, PolicyDocument, Severity, utc_now

log = logging.getLogger(__name__)

SERVICE_DOWN = "The DeskWarden service is not running; events wait here until it is back"


def status_from_json(body: dict[str, Any]) -> AgentStatus:
    def when(value: Any) -> datetime | None:
        return datetime.fromisoformat(value) if isinstance(value, str) else None

    return AgentStatus(
        device_id=body.get("device_id"),
        policy_version=int(body.get("policy_version", 0)),
        queue_depth=int(body.get("queue_depth", 0)),
        last_upload=when(body.get("last_upload")),
        collectors={str(k): str(v) for k, v in dict(body.get("collectors", {})).items()},
        connection=str(body.get("connection", "offline")),
        attention=tuple(str(a) for a in body.get("attention", ())),
        server_url=body.get("server_url"),
        pid=body.get("pid"),
        updated_at=when(body.get("updated_at")),
        mode=str(body.get("mode", "unprotected")),
        state_dir=body.get("state_dir"),
    )


def notice_from_json(body: dict[str, Any]) -> Notice:
    decision = dict(body["decision"])
    decision["severity"] = Severity(decision["severity"])
    return Notice(
        seq=int(body["seq"]),
        kind=str(body["kind"]),
        control=str(body["control"]),
        decision=Decision(**decision),
        outcome=Action(body["outcome"]),
        summary=dict(body.get("summary", {})),
        user=str(body.get("user", "")),
    )


class ServiceOutbox:
    """The helper pipeline's "outbox": the service. `append` returns once the service has committed the events;
    ConnectionError while it is unreachable, so the pipeline keeps them and retries (nothing is dropped)."""

    def __init__(self, client: ServiceClient) -> None:
        self._client = client

    def append(self, drafts: Sequence[EventDraft]) -> list[int]:
        seqs: list[int] = []
        for start in range(0, len(drafts), MAX_EVENTS_PER_RECORD):
            chunk = list(drafts[start : start + MAX_EVENTS_PER_RECORD])
            try:
                result = self._client.request(lambda i, chunk=chunk: Record(id=i, events=chunk))  # type: ignore[misc]
            except ServiceRefused as exc:
                if exc.code in ("rate_limited", "unavailable"):
                    raise ServiceUnavailable(str(exc)) from None
                log.error("the service refused %d events: %s", len(chunk), exc.code)
                continue
            seqs.extend(int(seq) for seq in result.get("seqs", []))
        return seqs

    def set_quota(self, quota_bytes: int) -> None:
        """The service enforces the quota."""

    def close(self) -> None:
        """The client is closed by the runtime."""


class HelperRuntime:
    """Implements `agent_app.core.ports.AgentPort` for a helper connected to the service at `socket_path`."""

    def __init__(
        self,
        socket_path: Path,
        *,
        collectors: dict[str, Collector] | None = None,
        last_input: Callable[[], datetime | None] | None = None,
        clock: Callable[[], datetime] = utc_now,
        client_factory: Callable[..., ServiceClient] = ServiceClient,
    ) -> None:
        self._clock = clock
        self._last_input = last_input
        self._user = login_name()
        self._policy = _default_policy()
        self._status = AgentStatus(
            device_id=None, policy_version=0, queue_depth=0, last_upload=None, collectors={}, connection="offline"
        )
        self._attention: tuple[str, ...] = ()
        self._main_calls = MainCalls()
        self._post: Callable[[MainCall], None] = self._main_calls.post
        self._notice_listeners: list[Callable[[Notice], None]] = []
        self._status_listeners: list[Callable[[AgentStatus], None]] = []
        self._policy_listeners: list[Callable[[PolicyDocument], None]] = []
        self._stopped = False
        self.client = client_factory(
            socket_path,
            on_push=self._on_push,
            on_connected=self._on_connected,
            on_disconnected=self._on_disconnected,
        )
        if collectors is None:
            # A per-process key: the helper holds no device secret, so repeats correlate within this session.
            collectors = default_collectors(CollectorContext(role="helper", hash_key=secrets.token_bytes(32)))
        self._pipeline = Pipeline(
            outbox_factory=lambda: ServiceOutbox(self.client),
            policy=lambda: self._policy,
            collector=lambda name: self._supervisor.get(name),
            user=self._user,
            device_id=lambda: self._status.device_id or "",
            on_notice=self._on_notice,
        )
        self._supervisor = CollectorSupervisor(collectors, sink=self._pipeline, record=self.record, clock=clock)

    # --- AgentPort ----------------------------------------------------------------------------------------

    @property
    def policy(self) -> PolicyDocument:
        return self._policy

    @property
    def user(self) -> str:
        return self._user

    @property
    def device_id(self) -> str | None:
        return self._status.device_id

    def status(self) -> AgentStatus:
        return self._status

    def record(self, draft: EventDraft) -> None:
        self._pipeline.record(draft)

    def history(self, *, limit: int = 200) -> list[dict[str, Any]]:
        try:
            events = self.client.request(lambda i: HistoryRequest(id=i, limit=min(limit, 500))).get("events", [])
        except (ServiceUnavailable, ServiceRefused):
            return []
        return [event for event in events if isinstance(event, dict)]

    def last_input(self) -> datetime | None:
        return self._last_input() if self._last_input else None

    def may_quit(self, unlock_code: str | None = None) -> bool:
        """Asks the service: policy allows quitting, or the unlock token is valid (the service records its use)."""
        token = "".join(unlock_code.split()) if unlock_code else None
        try:
            answer = self.client.request(lambda i: QuitRequest(id=i, token=token))
        except (ServiceUnavailable, ServiceRefused):
            return False
        return bool(answer.get("allowed"))

    def set_attention(self, reasons: tuple[str, ...]) -> None:
        if reasons == self._attention:
            return
        self._attention = reasons
        try:
            self.client.request(lambda i: Attention(id=i, reasons=list(reasons)[:10]))
        except (ServiceUnavailable, ServiceRefused):
            log.info("attention not delivered; sent again on reconnect")

    def add_notice_listener(self, callback: Callable[[Notice], None]) -> None:
        self._notice_listeners.append(callback)

    def add_status_listener(self, callback: Callable[[AgentStatus], None]) -> None:
        self._status_listeners.append(callback)

    def add_policy_listener(self, callback: Callable[[PolicyDocument], None]) -> None:
        self._policy_listeners.append(callback)

    def set_dispatcher(self, post: Callable[[MainCall], None]) -> None:
        self._post = post

    # --- life cycle (main thread) -------------------------------------------------------------------------

    def start(self, *, connect_timeout: float = 5.0) -> bool:
        """Connect and start the session's collectors; False when the service did not answer in time (the
        helper keeps trying in the background and runs on the default policy meanwhile)."""
        self._pipeline.start()
        self.client.start()
        connected = self.client.wait_connected(connect_timeout)
        self.process_main_calls()
        self._supervisor.apply(self._policy)
        return connected

    def tick(self) -> None:
        self._supervisor.check()
        self._publish_status(self._status)
        drop_source_cache()  # a dialog opened since the last tick imported modules PySide6 read the source of

    def process_main_calls(self, timeout: float | None = None) -> None:
        """Run queued main-thread work; blocks up to `timeout` for the first item."""
        self._main_calls.run_pending(timeout)

    def run_headless(self, should_stop: Callable[[], bool], *, tick_seconds: float = 5.0) -> None:
        next_tick = 0.0
        while not should_stop() and not self._stopped:
            if time.monotonic() >= next_tick:
                self.tick()
                next_tick = time.monotonic() + tick_seconds
            self.process_main_calls(timeout=0.5)

    def stop(self, *, reason: str) -> None:
        if self._stopped:
            return
        self._stopped = True
        log.info("helper stopping (%s)", reason)
        self._supervisor.stop_all()
        self._pipeline.flush(2.0)
        self._pipeline.stop()
        self.client.stop()

    def flush(self, timeout: float = 5.0) -> bool:
        return self._pipeline.flush(timeout)

    # --- from the service (reader thread) -----------------------------------------------------------------

    def _on_connected(self, welcome: dict[str, Any]) -> None:
        self._user = str(welcome.get("user") or self._user)
        policy = welcome.get("policy")
        if isinstance(policy, dict):
            self._set_policy(policy)
        status = welcome.get("status")
        if isinstance(status, dict):
            self._set_status(status)
        if self._attention:
            reasons = self._attention
            self._attention = ()
            self._post(lambda: self.set_attention(reasons))

    def _on_disconnected(self) -> None:
        down = AgentStatus(
            device_id=self._status.device_id,
            policy_version=self._status.policy_version,
            queue_depth=self._status.queue_depth,
            last_upload=self._status.last_upload,
            collectors=self._status.collectors,
            connection="offline",
            attention=(*self._status.attention, SERVICE_DOWN),
            mode=self._status.mode,
        )
        self._status = down
        self._post(lambda: self._publish_status(down))

    def _on_push(self, topic: str, body: dict[str, Any]) -> None:
        if topic == "status":
            self._set_status(body)
        elif topic == "policy":
            self._set_policy(body)
        elif topic == "notice":
            try:
                notice = notice_from_json(body)
            except (KeyError, TypeError, ValueError):
                log.warning("ignoring a malformed notice from the service")
                return
            self._on_notice(notice)

    def _set_status(self, body: dict[str, Any]) -> None:
        try:
            status = status_from_json(body)
        except (TypeError, ValueError):
            log.warning("ignoring a malformed status from the service")
            return
        self._status = status
        self._post(lambda: self._publish_status(status))

    def _set_policy(self, body: dict[str, Any]) -> None:
        try:
            policy = PolicyDocument.model_validate(body)
        except ValueError:
            log.warning("ignoring a malformed policy from the service")
            return
        if policy == self._policy:
            return
        self._policy = policy
        self._post(self._apply_policy)

    def _apply_policy(self) -> None:
        policy = self._policy
        self._supervisor.apply(policy)
        for listener in self._policy_listeners:
            listener(policy)

    def _publish_status(self, status: AgentStatus) -> None:
        merged = status
        local = self._supervisor.states()
        if local:
            merged = AgentStatus(**{**_fields(status), "collectors": {**status.collectors, **local}})
        for listener in self._status_listeners:
            listener(merged)

    def _on_notice(self, notice: Notice) -> None:
        for listener in self._notice_listeners:
            try:
                listener(notice)
            except Exception:
                log.exception("notice listener failed")


def _default_policy() -> PolicyDocument:
    """The bundled default (audit everything) until the service sends the policy in force."""
    try:
        return PolicyDocument.model_validate_json((assets_dir() / "policy" / "default.json").read_bytes())
    except (OSError, ValueError):
        return PolicyDocument(version=0)


def _fields(status: AgentStatus) -> dict[str, Any]:
    return {name: getattr(status, name) for name in AgentStatus.__dataclass_fields__}
