"""Admission control for the agent API: a deadline on request bodies and a bound on batches per device.

`POST /v1/events` authenticates from the header first, then takes one of its device's slots, reads the body
within the deadline, and only then takes a shared `IngestLimiter` slot for parsing and storing: a socket that
trickles a body, or sends none with a bad credential, holds nothing the real agents need.
Used by the handlers on the event loop; the counters are guarded by a lock (tests run several loops).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from fastapi import Request

from central.http.bodies import read_raw
from central.http.errors import ApiError
from central.settings import ServerSettings


@dataclass(frozen=True)
class AgentLimits:
    body_timeout_s: float = 30.0
    """A 1 MB batch needs 35 KB/s to arrive in time; an agent refused with 408 retries later."""
    per_device: int = 2
    """An agent sends one batch at a time; the second slot covers a retry racing a request the server still holds."""

    @classmethod
    def of(cls, settings: ServerSettings) -> AgentLimits:
        """The limits the server settings give (`agent_body_timeout_s`, `ingest_per_device`)."""
        return cls(body_timeout_s=settings.agent_body_timeout_s, per_device=settings.ingest_per_device)


class DeviceSlots:
    """Batches in flight per device; `try_acquire` refuses beyond the bound instead of queueing."""

    def __init__(self, per_device: int) -> None:
        if per_device < 1:
            raise ValueError("per_device must be at least 1")
        self.per_device = per_device
        self._busy: dict[str, int] = {}
        self._lock = threading.Lock()

    def try_acquire(self, device_id: str) -> bool:
        with self._lock:
            busy = self._busy.get(device_id, 0)
            if busy >= self.per_device:
                return False
            self._busy[device_id] = busy + 1
            return True

    def release(self, device_id: str) -> None:
        with self._lock:
            busy = self._busy.get(device_id, 0) - 1
            if busy > 0:
                self._busy[device_id] = busy
            else:
                self._busy.pop(device_id, None)

    def busy(self, device_id: str) -> int:
        with self._lock:
            return self._busy.get(device_id, 0)


class IngestGate:
    """One per app: the limits and the per-device slots of its `/v1/events` handler."""

    def __init__(self, limits: AgentLimits) -> None:
        self.limits = limits
        self.devices = DeviceSlots(limits.per_device)

    @contextlib.contextmanager
    def device_slot(self, device_id: str, *, retry_after_s: int) -> Iterator[None]:
        if not self.devices.try_acquire(device_id):
            raise ApiError(
                429,
                "this device already has a batch in flight; retry later",
                headers={"Retry-After": str(retry_after_s)},
            )
        try:
            yield
        finally:
            self.devices.release(device_id)

    async def read_body(self, request: Request, *, max_bytes: int) -> bytes:
        """`read_raw` within the body deadline; 408 (and the connection closed) when the body is too slow."""
        try:
            async with asyncio.timeout(self.limits.body_timeout_s):
                return await read_raw(request, max_bytes=max_bytes)
        except TimeoutError:
            raise ApiError(
                408,
                f"request body did not arrive within {self.limits.body_timeout_s:g} s",
                headers={"Connection": "close"},
            ) from None


_CREATE_LOCK = threading.Lock()


def ingest_gate(request: Request) -> IngestGate:
    """The app's gate, made on first use from the app's server settings."""
    state = request.app.state
    gate: IngestGate | None = getattr(state, "ingest_gate", None)
    if gate is None:
        with _CREATE_LOCK:
            gate = getattr(state, "ingest_gate", None)
            if gate is None:
                gate = IngestGate(AgentLimits.of(request.app.state.runtime.settings))
                state.ingest_gate = gate
    return gate
