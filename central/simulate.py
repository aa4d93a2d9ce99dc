"""Simulated agents: chained event batches exactly as a real agent builds them, for benchmarks and tests.

Not used by the server itself. A `SimulatedAgent` belongs to one thread.
"""

from __future__ import annotations

import base64
import gzip
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from policy_client.schema import (
    GENESIS_MAC,
    Event,
    EventBatch,
    EventKind,
    RuleRef,
    Severity,
    chain_link,
    event_digest,
)

_BASE_TS = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@dataclass
class SimulatedAgent:
    """Raises gap-free, HMAC-chained events for one device."""

    device_id: str = ""
    chain_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    user: str = "agent01"
    seq: int = 0
    mac: str = GENESIS_MAC

    @property
    def chain_key_b64(self) -> str:
        return base64.b64encode(self.chain_key).decode("ascii")

    def next_event(
        self,
        *,
        kind: EventKind = EventKind.clipboard_sensitive,
        severity: Severity = Severity.medium,
        data: dict[str, Any] | None = None,
        ts: datetime | None = None,
        action: str = "masked",
    ) -> Event:
        self.seq += 1
        when = ts if ts is not None else _BASE_TS + timedelta(milliseconds=self.seq)
        body: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "device_id": self.device_id,
            "seq": self.seq,
            "ts": when.isoformat().replace("+00:00", "Z"),
            "kind": kind.value,
            "severity": severity.value,
            "user": self.user,
            "action": action,
            "rule": RuleRef(id="clipboard.mask", policy_version=1).model_dump(mode="json"),
            "data": data if data is not None else {"detector": "card", "count": 1, "sample": "XXXX XXXX XXXX 1111"},
        }
        self.mac = chain_link(self.chain_key, self.mac, self.seq, event_digest(body))
        return Event.model_validate(body | {"mac": self.mac})

    def events(self, count: int, **kwargs: Any) -> list[Event]:
        return [self.next_event(**kwargs) for _ in range(count)]

    def batch(self, events: list[Event]) -> EventBatch:
        return EventBatch(device_id=self.device_id, events=events)


def batch_json(batch: EventBatch) -> bytes:
    return batch.model_dump_json().encode("utf-8")


def gzip_json(batch: EventBatch) -> bytes:
    return gzip.compress(batch_json(batch), compresslevel=1)
