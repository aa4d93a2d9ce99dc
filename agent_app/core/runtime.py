"""The running agent: wires secrets, policy, collectors, pipeline and uploader together.

Constructed, started, ticked and stopped on the main thread (the GUI thread in tray mode). Listener
callbacks fire on the pipeline or uploader thread; `post` moves work back to the main thread.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from agent_app import __version__
from agent_app.core import paths
from agent_app.core.collector_set import default_collectors
from agent_app.core.main_calls import MainCall, MainCalls
from agent_app.core.outbox import Outbox
from agent_app.core.paths import assets_dir, login_name
from agent_app.core.pipeline import Notice, Pipeline
from agent_app.core.quarantine_commands import QuarantineCommands
from agent_app.core.status import TICK_SECONDS, AgentStatus, write_status
from agent_app.core.supervisor import CollectorSupervisor
from agent_app.core.unlock import UnlockGrant, check_unlock_token
from agent_app.core.uploader import Uploader
from collectors.base import Collector, CollectorContext, CollectorRole, UserHome
from policy_client.agent_config import AgentConfig, load_config
from policy_client.policy_store import PolicyStore
from policy_client.schema import AgentMode, EventDraft, EventKind, PolicyDocument, Severity, utc_now
from policy_client.secrets import OutboxKeys, SecretStore, load_or_create_keys
from policy_client.transport import Transport

log = logging.getLogger(__name__)

PURGE_EVERY = timedelta(hours=1)
COMMAND_POLL_HEARTBEATS = 5
"""The service asks for admins' commands once every this many heartbeat intervals ..."""
COMMAND_POLL_MAX_S = 300.0
"""... and at least every five minutes."""


def pii_hash_key(keys: OutboxKeys) -> bytes:
    """The per-device key for keyed hashes of detected values. Derived from the data key, which never leaves
    the device (the chain key is shared with the endpoint, which could otherwise brute-force short values)."""
    return hmac.new(keys.data_key, b"deskwarden/pii-hash/v1", hashlib.sha256).digest()


class AgentRuntime:
    """Implements `agent_app.core.ports.AgentPort`."""

    def __init__(
        self,
        home: Path,
        *,
        collectors: Mapping[str, Collector] | None = None,
        secret_backend: Any = None,
        user: str | None = None,
        clock: Callable[[], datetime] = utc_now,
        last_input: Callable[[], datetime | None] | None = None,
        uploader_options: Mapping[str, Any] | None = None,
        role: CollectorRole = "service",
        mode: AgentMode = "unprotected",
        monitored_homes: Callable[[], list[UserHome]] | None = None,
        machine_secrets: bool = False,
        command_poll_seconds: float | None = None,
    ) -> None:
        self.home = home
        self._clock = clock
        self._mode: AgentMode = mode
        self._user = user if user is not None else login_name()
        self._secrets = SecretStore(home, backend=secret_backend, machine=machine_secrets)
        self._keys = load_or_create_keys(self._secrets)
        self._config: AgentConfig | None = load_config(paths.config_path(home))
        trusted = self._config.trusted_keys() if self._config else {}
        self._policy_store = PolicyStore(
            paths.policy_dir(home), trusted_keys=trusted, default_path=assets_dir() / "policy" / "default.json"
        )
        self._policy = self._policy_store.current()
        self._main_calls = MainCalls()
        self._post: Callable[[MainCall], None] = self._main_calls.post
        self._notice_listeners: list[Callable[[Notice], None]] = []
        self._status_listeners: list[Callable[[AgentStatus], None]] = []
        self._policy_listeners: list[Callable[[PolicyDocument], None]] = []
        self._last_input = last_input
        self._outbox_file = paths.outbox_path(home)
        self._reader: Outbox | None = None
        self._last_purge: datetime | None = None
        self._stopped = False
        self._attention: tuple[str, ...] = ()
        self._desk_users: tuple[str, ...] = ()
        if collectors is None:
            context = CollectorContext(
                role=role,
                hash_key=pii_hash_key(self._keys),
                quarantine_dir=str(paths.quarantine_dir(home)),
                monitored_homes=monitored_homes,
            )
            collectors = default_collectors(context)
        self._pipeline = Pipeline(
            outbox_factory=self._open_outbox,
            policy=lambda: self._policy,
            collector=lambda name: self._supervisor.get(name),
            user=self._user,
            device_id=lambda: self._config.device_id if self._config else "",
            on_written=self._on_written,
            on_notice=self._on_notice,
        )
        self._supervisor = CollectorSupervisor(collectors, sink=self._pipeline, record=self.record, clock=clock)
        self._uploader_options = dict(uploader_options or {})
        self._uploader: Uploader | None = self._make_uploader(self._config) if self._config else None
        self._command_poll_seconds = command_poll_seconds
        self._commands: QuarantineCommands | None = self._make_commands(self._config) if self._config else None

    # --- AgentPort -----------------------------------------------------------------------------

    @property
    def policy(self) -> PolicyDocument:
        return self._policy

    @property
    def user(self) -> str:
        return self._user

    @property
    def device_id(self) -> str | None:
        return self._config.device_id if self._config else None

    def record(self, draft: EventDraft) -> None:
        self._pipeline.record(draft)

    def history(self, *, limit: int = 200) -> list[dict[str, Any]]:
        return self._outbox_reader().history(limit=limit)

    def last_input(self) -> datetime | None:
        return self._last_input() if self._last_input else None

    @property
    def ca_bundle(self) -> str | None:
        """The CA bundle the endpoint's certificate is verified against (from enrolment), or None."""
        return self._config.ca_bundle if self._config else None

    @property
    def mode(self) -> AgentMode:
        return self._mode

    def may_quit(self, unlock_code: str | None = None, *, user: str = "") -> bool:
        """True when policy allows quitting, or `unlock_code` is an unlock token the endpoint signed for this
        device (scope `quit`); an accepted token is recorded as `agent.unlock_used`."""
        if self._policy.controls.agent.allow_quit:
            return True
        return unlock_code is not None and self.accept_unlock(unlock_code, scope="quit", user=user) is not None

    def accept_unlock(self, token: str, *, scope: str, user: str = "") -> UnlockGrant | None:
        """Verify an unlock token offline against the pinned endpoint key; record its use; None when refused."""
        grant = check_unlock_token(self._config, token, scope=scope, now=self._clock(), state_dir=self.home)
        if grant is None:
            self.record(
                EventDraft(
                    kind=EventKind.agent_tamper,
                    severity=Severity.medium,
                    user=user,
                    data={"reason": "unlock_refused", "scope": scope},
                )
            )
            return None
        self.record(
            EventDraft(
                kind=EventKind.agent_unlock_used,
                severity=Severity.medium,
                user=user,
                data={"token_id": grant.token_id, "scope": grant.scope, "minutes": grant.minutes},
            )
        )
        self.flush()
        return grant

    def user_session_started(self) -> None:
        """A desk user's helper connected: re-read the desk users now, so a first login's downloads are watched
        at once rather than at the next periodic re-read."""
        rescan = getattr(self._supervisor.get("downloads"), "rescan", None)
        if callable(rescan):
            rescan()

    def record_batch(self, drafts: Sequence[EventDraft], timeout: float = 5.0) -> list[int] | None:
        """Record and wait until durable; the seqs (see `Pipeline.record_batch`)."""
        return self._pipeline.record_batch(drafts, timeout)

    def set_desk_users(self, users: tuple[str, ...]) -> None:
        """The desk users whose helpers are connected, as the OS named them (the service's IPC peers)."""
        if users != self._desk_users:
            self._desk_users = users
            if self._uploader is not None:
                self._uploader.heartbeat_soon()

    def _heartbeat_user(self) -> str:
        """Who works at this desk, for the console and shared-login alerts: the OS users of the connected helpers
        under a protected service (never the service's own root/SYSTEM login); the agent's own user otherwise."""
        if self._mode == "protected":
            return ",".join(sorted(self._desk_users))
        return self._user

    def set_attention(self, reasons: tuple[str, ...]) -> None:
        """What the person must act on (overdue acknowledgement, missed clean desk), reported with heartbeats."""
        if reasons != self._attention:
            self._attention = reasons
            if self._uploader is not None:
                self._uploader.heartbeat_soon()

    def status(self) -> AgentStatus:
        uploader = self._uploader
        reader = self._outbox_reader()
        return AgentStatus(
            device_id=self.device_id,
            policy_version=self._policy.version,
            queue_depth=reader.depth(),
            last_upload=uploader.last_upload if uploader else None,
            collectors=self._supervisor.states(),
            connection=uploader.state if uploader else "not_enrolled",
            attention=self._attention,
            server_url=self._config.server_url if self._config else None,
            pid=os.getpid(),
            updated_at=self._clock(),
            mode=self._mode,
            state_dir=str(self.home),
        )

    def add_notice_listener(self, callback: Callable[[Notice], None]) -> None:
        self._notice_listeners.append(callback)

    def add_status_listener(self, callback: Callable[[AgentStatus], None]) -> None:
        self._status_listeners.append(callback)

    def add_policy_listener(self, callback: Callable[[PolicyDocument], None]) -> None:
        self._policy_listeners.append(callback)

    def set_dispatcher(self, post: Callable[[MainCall], None]) -> None:
        """Let the UI run main-thread work on its event loop instead of `run_headless`'s queue."""
        self._post = post

    # --- life cycle (main thread) --------------------------------------------------------------

    def start(self) -> None:
        marker = self.home / "running.pid"
        unclean = marker.exists()
        marker.write_text(str(os.getpid()), encoding="utf-8")
        self._pipeline.start()
        if unclean:
            self.record(
                EventDraft(kind=EventKind.agent_tamper, severity=Severity.high, data={"reason": "unclean_stop"})
            )
        if self._secrets.fallback_reason:
            # Recorded for the record, at low severity: the endpoint raises no alert for it (it is expected
            # wherever no keyring runs), so it cannot bury a real tamper alert.
            self.record(
                EventDraft(
                    kind=EventKind.agent_tamper,
                    severity=Severity.low,
                    data={"reason": "keyring_unavailable", "detail": self._secrets.fallback_reason[:200]},
                )
            )
        for draft in self._policy_store.take_startup_events():
            self.record(draft)
        self.record(
            EventDraft(
                kind=EventKind.agent_started,
                data={"version": __version__, "unclean_previous_stop": unclean, "pid": os.getpid()},
            )
        )
        self._supervisor.apply(self._policy)
        if self._uploader is not None:
            self._uploader.start()
        if self._commands is not None:
            self._commands.start()
        self.tick()

    def tick(self) -> None:
        """Housekeeping every few seconds on the main thread: collector health, status file, history purge."""
        self._supervisor.check()
        now = self._clock()
        if self._last_purge is None or now - self._last_purge > PURGE_EVERY:
            self._last_purge = now
            retention = timedelta(days=self._policy.controls.reporting.retention_days)
            purged = self._outbox_reader().purge_history(now - retention)
            if purged:
                log.info("purged %d reported events older than %s", purged, retention)
        status = self.status()
        write_status(self.home, status)
        for listener in self._status_listeners:
            listener(status)

    def process_main_calls(self, timeout: float | None = None) -> None:
        """Run queued main-thread work; blocks up to `timeout` for the first item."""
        self._main_calls.run_pending(timeout)

    def run_headless(self, should_stop: Callable[[], bool]) -> None:
        """Main loop without a GUI: main-thread calls as they come, a tick every few seconds."""
        next_tick = self._clock() + timedelta(seconds=TICK_SECONDS)
        while not should_stop() and not self._stopped:
            wait = max(0.0, (next_tick - self._clock()).total_seconds())
            self.process_main_calls(timeout=min(wait, 1.0) or 0.01)
            if self._clock() >= next_tick:
                self.tick()
                next_tick = self._clock() + timedelta(seconds=TICK_SECONDS)

    def stop(self, *, reason: str) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.record(EventDraft(kind=EventKind.agent_stopped, severity=Severity.medium, data={"reason": reason}))
        self._supervisor.stop_all()
        self._pipeline.stop()
        if self._uploader is not None:
            self._uploader.stop()
        if self._commands is not None:
            self._commands.stop()
        write_status(self.home, self.status())
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        (self.home / "running.pid").unlink(missing_ok=True)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything recorded so far is durable (tests, shutdown)."""
        return self._pipeline.flush(timeout)

    def upload_now(self) -> None:
        if self._uploader is not None:
            self._uploader.notify()

    # --- internals ----------------------------------------------------------------------------

    def _open_outbox(self, *, check: bool = True) -> Outbox:
        quota = self._policy.controls.reporting.queue_quota_mb * 2**20
        return Outbox(self._outbox_file, keys=self._keys, quota_bytes=quota, check=check)

    def _open_outbox_unchecked(self) -> Outbox:
        """For the uploader and the reader: the pipeline's instance already checked the file at start."""
        return self._open_outbox(check=False)

    def _outbox_reader(self) -> Outbox:
        if self._reader is None:
            self._reader = self._open_outbox_unchecked()
        return self._reader

    def _make_uploader(self, config: AgentConfig) -> Uploader:
        transport = Transport(
            config.server_url, ca_bundle=config.ca_bundle, credential=self._secrets.get("device_credential")
        )
        return Uploader(
            transport=transport,
            outbox_factory=self._open_outbox_unchecked,
            device_id=config.device_id,
            record=self.record,
            on_policy=self._on_policy_bytes,
            policy_version=lambda: self._policy.version,
            heartbeat_seconds=lambda: self._policy.controls.reporting.heartbeat_seconds,
            collector_states=self._supervisor.states,
            attention=lambda: self._attention,
            user=self._heartbeat_user,
            mode=self._mode,
            **self._uploader_options,
        )

    def _make_commands(self, config: AgentConfig) -> QuarantineCommands:
        """Admins' decisions about quarantined downloads, fetched on their own connection every few heartbeats
        (they are rare and not urgent; `command_poll_seconds` overrides the interval)."""
        transport = Transport(
            config.server_url, ca_bundle=config.ca_bundle, credential=self._secrets.get("device_credential")
        )
        poll = self._command_poll_seconds
        return QuarantineCommands(
            transport=transport,
            device_id=config.device_id,
            public_key=config.public_key_bytes(),
            quarantine_dir=paths.quarantine_dir(self.home),
            state_dir=self.home,
            record=self.record,
            uploaded=self.upload_now,
            interval=(lambda: poll) if poll is not None else self._command_interval,
            clock=self._clock,
        )

    def _command_interval(self) -> float:
        return float(
            min(COMMAND_POLL_MAX_S, COMMAND_POLL_HEARTBEATS * self._policy.controls.reporting.heartbeat_seconds)
        )

    def _on_written(self, seqs: Sequence[int]) -> None:
        if self._uploader is not None:
            self._uploader.notify()

    def _on_notice(self, notice: Notice) -> None:
        for listener in self._notice_listeners:
            listener(notice)

    def _on_policy_bytes(self, envelope: bytes) -> None:
        """Uploader thread: verify, keep last-known-good, swap the snapshot, reconfigure on the main thread."""
        verdict = self._policy_store.accept(envelope)
        for draft in verdict.events:
            self.record(draft)
        if verdict.status != "updated":
            return
        self._policy = verdict.policy
        self._post(self._apply_policy)
        if self._uploader is not None:
            self._uploader.heartbeat_soon()  # the console shows the version in force without waiting a minute

    def _apply_policy(self) -> None:
        policy = self._policy
        self._supervisor.apply(policy)
        for listener in self._policy_listeners:
            listener(policy)
