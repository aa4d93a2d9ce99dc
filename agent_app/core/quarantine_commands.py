"""The service's side of an admin's decision about a quarantined download: fetch the endpoint's signed commands
(`GET /v1/commands`), check each against the pinned endpoint key, release the file to where it came from (with its
owner) or delete it, and report what happened as an event (`download.released` / `download.deleted`).

Owns one thread, started and stopped by `AgentRuntime` on the main thread; `poll_now` may be called from any thread.
Only the endpoint's key signs a command, for one device, with an expiry, and each command is carried out once
(remembered in the service's root-only state directory), so the desk user can neither forge nor replay one.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from collectors.downloads.quarantine import delete_quarantined, read_record, restore
from policy_client.device_commands import CommandError, CommandList, QuarantineCommand, verify_command
from policy_client.schema import Action, EventDraft, EventKind, Severity
from policy_client.transport import Transport, TransportError

log = logging.getLogger(__name__)

DONE_FILE = "commands-done.json"
MAX_REMEMBERED = 2000
MAX_ANSWER_BYTES = 256 * 1024
MIN_INTERVAL_S = 10.0


class QuarantineCommands:
    def __init__(
        self,
        *,
        transport: Transport,
        device_id: str,
        public_key: bytes,
        quarantine_dir: Path,
        state_dir: Path,
        record: Callable[[EventDraft], None],
        uploaded: Callable[[], None],
        interval: Callable[[], float],
        clock: Callable[[], datetime],
    ) -> None:
        self._transport = transport
        self._device_id = device_id
        self._public_key = public_key
        self._quarantine_dir = quarantine_dir
        self._done_path = state_dir / DONE_FILE
        self._record = record
        self._uploaded = uploaded
        self._interval = interval
        self._clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="quarantine-commands", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._transport.close()

    def poll_now(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # the thread must outlive any single bad answer
                log.exception("carrying out the endpoint's commands failed")
            self._wake.wait(max(MIN_INTERVAL_S, self._interval()))
            self._wake.clear()

    def run_once(self) -> int:
        """Fetch and carry out what the endpoint asks; how many commands were carried out (or failed)."""
        try:
            response = self._transport.get("/v1/commands")
        except TransportError as exc:
            log.info("could not fetch commands: %s", exc)
            return 0
        if response.status_code != 200:
            log.info("no commands fetched (HTTP %s)", response.status_code)
            return 0
        if len(response.content) > MAX_ANSWER_BYTES:
            log.warning("command list of %d bytes refused", len(response.content))
            return 0
        try:
            answer = CommandList.model_validate_json(response.content)
        except ValidationError:
            log.warning("the command list is not a CommandList")
            return 0
        handled = 0
        for signed in answer.commands:
            try:
                command = verify_command(
                    signed, device_id=self._device_id, public_key=self._public_key, now=self._clock()
                )
            except CommandError as exc:
                if exc.reason != "expired":
                    self._record(
                        EventDraft(
                            kind=EventKind.agent_tamper,
                            severity=Severity.high,
                            data={"reason": "command_refused", "detail": exc.reason},
                        )
                    )
                log.warning("command refused: %s", exc.reason)
                continue
            if not self._first_time(command.command_id):
                continue
            self._record(self._carry_out(command))
            handled += 1
        if handled:
            self._uploaded()
        return handled

    def _carry_out(self, command: QuarantineCommand) -> EventDraft:
        kind = EventKind.download_released if command.action == "release" else EventKind.download_deleted
        data: dict[str, Any] = {
            "command_id": command.command_id,
            "quarantine_id": command.quarantine_id,
            "issued_by": command.issued_by[:128],
        }
        user = ""
        try:
            record = read_record(command.quarantine_id, quarantine_dir=self._quarantine_dir)
            user = _owner_login(record.get("original_uid"))
            if command.action == "release":
                restored = restore(command.quarantine_id, quarantine_dir=self._quarantine_dir)
                data["renamed"] = restored.name != Path(str(record.get("original_path", ""))).name
            else:
                delete_quarantined(command.quarantine_id, quarantine_dir=self._quarantine_dir)
        except FileNotFoundError:
            data["error"] = "not in quarantine (released or deleted before)"
            return EventDraft(kind=kind, severity=Severity.medium, user=user, action=Action.failed, data=data)
        except (OSError, ValueError) as exc:
            data["error"] = f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}"[:200]
            return EventDraft(kind=kind, severity=Severity.medium, user=user, action=Action.failed, data=data)
        log.info("quarantined download %s: %s by %s", command.quarantine_id, command.action, command.issued_by)
        return EventDraft(kind=kind, severity=Severity.info, user=user, action=Action.allowed, data=data)

    def _first_time(self, command_id: str) -> bool:
        """Remember `command_id` as carried out; False when it was before (a replayed command)."""
        try:
            done = json.loads(self._done_path.read_text(encoding="utf-8"))
            done = [str(item) for item in done][-MAX_REMEMBERED:] if isinstance(done, list) else []
        except (OSError, ValueError):
            done = []
        if command_id in done:
            return False
        done.append(command_id)
        tmp = self._done_path.with_name(f"{self._done_path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(done, handle)
        tmp.replace(self._done_path)
        return True


def _owner_login(uid: object) -> str:
    """The login of the file's owner before quarantine; empty on Windows (the sidecar records no uid there)."""
    if not isinstance(uid, int):
        return ""
    if sys.platform == "win32":
        return ""
    else:
        import pwd

        try:
            return pwd.getpwuid(uid).pw_name
        except KeyError:
            return str(uid)
