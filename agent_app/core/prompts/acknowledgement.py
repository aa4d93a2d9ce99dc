"""When the person must acknowledge the policy, and the small JSON file remembering that they did.

Called on the GUI thread (tray start-up, policy updates, the coarse prompt timer). Pure logic plus one file.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path

from policy_client.schema import PolicyDocument, utc_now

log = logging.getLogger(__name__)

STATE_FILE = "acknowledgement.json"
OVERDUE_AFTER = timedelta(hours=24)
"""An acknowledgement that stays due this long after it was first asked for is overdue (tray: attention)."""

Clock = Callable[[], datetime]


class AckReason(StrEnum):
    first_run = "first_run"
    new_text = "new_text"
    reack = "reack"


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class AckState:
    """What was last acknowledged, and since when an acknowledgement has been pending (if it is)."""

    version: int | None = None
    text_sha256: str | None = None
    acknowledged_at: datetime | None = None
    due_since: datetime | None = None
    due_sha256: str | None = None

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        for key in ("acknowledged_at", "due_since"):
            value = data[key]
            data[key] = value.isoformat() if value is not None else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, object]) -> AckState:
        def when(key: str) -> datetime | None:
            value = data.get(key)
            return datetime.fromisoformat(value) if isinstance(value, str) else None

        version = data.get("version")
        digest = data.get("text_sha256")
        due_digest = data.get("due_sha256")
        return cls(
            version=version if isinstance(version, int) else None,
            text_sha256=digest if isinstance(digest, str) else None,
            acknowledged_at=when("acknowledged_at"),
            due_since=when("due_since"),
            due_sha256=due_digest if isinstance(due_digest, str) else None,
        )


class AckStore:
    """Reads and atomically writes the acknowledgement state under the agent home."""

    def __init__(self, home: Path) -> None:
        self.path = home / STATE_FILE

    def load(self) -> AckState:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise TypeError("not an object")
            return AckState.from_json(data)
        except FileNotFoundError:
            return AckState()
        except (OSError, ValueError, TypeError):
            log.warning("acknowledgement state at %s is unreadable; asking again", self.path)
            return AckState()

    def save(self, state: AckState) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state.to_json(), indent=2), encoding="utf-8")
        tmp.replace(self.path)


def ack_due(policy: PolicyDocument, state: AckState, now: datetime) -> AckReason | None:
    """Why an acknowledgement is due now, or None. A new version with unchanged text needs none."""
    control = policy.controls.acknowledgement
    if not control.required:
        return None
    if state.text_sha256 is None or state.acknowledged_at is None:
        return AckReason.first_run
    if state.text_sha256 != text_sha256(control.text_markdown):
        return AckReason.new_text
    if now - state.acknowledged_at >= timedelta(days=control.reack_days):
        return AckReason.reack
    return None


class AcknowledgementTracker:
    """Decides when to show the acknowledgement dialog, remembers answers, and detects overdue ones."""

    def __init__(self, home: Path, *, clock: Clock = utc_now, overdue_after: timedelta = OVERDUE_AFTER) -> None:
        self._store = AckStore(home)
        self._clock = clock
        self._overdue_after = overdue_after
        self._state = self._store.load()

    @property
    def state(self) -> AckState:
        return self._state

    def due(self, policy: PolicyDocument) -> AckReason | None:
        return ack_due(policy, self._state, self._clock())

    def mark_asked(self, policy: PolicyDocument) -> None:
        """Remember when this text was first asked for, so overdue survives restarts."""
        digest = text_sha256(policy.controls.acknowledgement.text_markdown)
        if self._state.due_sha256 == digest and self._state.due_since is not None:
            return
        self._update(replace(self._state, due_since=self._clock(), due_sha256=digest))

    def overdue(self, policy: PolicyDocument) -> bool:
        if self.due(policy) is None or self._state.due_since is None:
            return False
        if self._state.due_sha256 != text_sha256(policy.controls.acknowledgement.text_markdown):
            return False
        return self._clock() - self._state.due_since >= self._overdue_after

    def acknowledged(self, policy: PolicyDocument) -> AckState:
        text = policy.controls.acknowledgement.text_markdown
        self._update(AckState(version=policy.version, text_sha256=text_sha256(text), acknowledged_at=self._clock()))
        return self._state

    def _update(self, state: AckState) -> None:
        self._state = state
        try:
            self._store.save(state)
        except OSError:
            log.exception("could not save acknowledgement state to %s", self._store.path)
