"""Drains the outbox to the central endpoint, sends heartbeats and fetches new policy.

Runs on its own "uploader" thread (start()/stop()); it owns its own Outbox connection. Event batches are posted
on a short-lived "uploader-post" thread, one at a time, while the uploader thread reads the next batch. Callbacks
(`record`, `on_policy`, `on_state_change`, `collectors`, `policy_version`) are called on that thread.
Each heartbeat answer carries the endpoint's chain head; when the outbox no longer matches it (the outbox
was lost, or a batch got 409 for a seq the endpoint already holds) the queued events move past it.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

import psutil
from pydantic import ValidationError

from agent_app.core.backoff import DEFAULT_BASE_S, DEFAULT_CAP_S, Backoff, parse_retry_after
from agent_app.core.outbox_crypto import WireRow
from policy_client.schema import (
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    SEQ_RESYNC_HEADER,
    Action,
    AgentMode,
    EventDraft,
    EventKind,
    Heartbeat,
    HeartbeatResponse,
    Severity,
    utc_now,
)
from policy_client.transport import Transport, TransportError, agent_version

log = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 5.0
DEFAULT_HEARTBEAT_S = 60.0
_BATCH_OVERHEAD_PER_EVENT = 96
"""Bytes added per event by device_id and JSON punctuation; keeps a full batch under MAX_BATCH_BYTES."""
_SPLIT_STATUSES = frozenset({400, 409, 422})
"""Per-event refusals: bisect to find the refused events so the rest of the batch still goes through."""
MAX_RESYNCS_PER_CONFLICT = 3
"""409s answered by resynchronising before an accepted batch; past this (an endpoint that keeps refusing, or two
agents sharing one credential) the refused events are dead-lettered and reported instead of looping."""
_GROW_AFTER = 50
"""Consecutive accepted posts before a batch size lowered by a 413 is doubled again."""


class UploaderState(StrEnum):
    online = "online"
    offline = "offline"
    needs_reenrolment = "needs_reenrolment"
    not_enrolled = "not_enrolled"


class OutboxLike(Protocol):
    """The part of agent_app.core.outbox.Outbox the uploader uses (one instance on the uploader thread)."""

    def pending_wire(self, *, limit: int = ..., max_bytes: int = ..., after: int = ...) -> list[WireRow]: ...

    def mark_sent(self, seqs: Sequence[int]) -> Any: ...

    def dead_letter(self, seqs: Sequence[int], reason: str) -> Any: ...

    def depth(self) -> int: ...

    def oldest_unsent_ts(self) -> datetime | None: ...

    def resync(self, endpoint_seq: int, endpoint_mac: str, *, force: bool = ...) -> Any: ...

    def close(self) -> None: ...


class _Resync(Exception):
    """409: the endpoint holds another event under a seq of this batch; heartbeat now and resynchronise."""


class _Retry(Exception):
    """The endpoint is unreachable or asked us to come back later."""

    def __init__(self, why: str, *, retry_after: float | None = None) -> None:
        super().__init__(why)
        self.retry_after = retry_after


class _Unauthorised(Exception):
    """401: the device credential is no longer valid."""


def _no_collectors() -> dict[str, str]:
    return {}


def _version_zero() -> int:
    return 0


class Uploader:
    """The uploader thread. All waiting is on one threading.Event that notify(), resume() and stop() set.

    The uploader owns the transport it is given (and any given to `resume`) and closes it when it stops.
    """

    def __init__(
        self,
        *,
        outbox_factory: Callable[[], OutboxLike],
        transport: Transport | None,
        device_id: str | None,
        record: Callable[[EventDraft], None],
        on_policy: Callable[[bytes], None] | None = None,
        policy_version: Callable[[], int] = _version_zero,
        heartbeat_seconds: Callable[[], float] | float = DEFAULT_HEARTBEAT_S,
        collector_states: Callable[[], dict[str, str]] = _no_collectors,
        attention: Callable[[], Sequence[str]] = tuple,
        on_state_change: Callable[[UploaderState], None] | None = None,
        user: str | Callable[[], str] = "",
        mode: AgentMode = "unprotected",
        batch_limit: int = MAX_BATCH_EVENTS,
        max_batch_bytes: int = MAX_BATCH_BYTES,
        backoff_base: float = DEFAULT_BASE_S,
        backoff_cap: float = DEFAULT_CAP_S,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self._outbox_factory = outbox_factory
        self._transport = transport
        self._device_id = device_id
        self._record = record
        self._on_policy = on_policy
        self._policy_version = policy_version
        self._heartbeat_seconds = heartbeat_seconds
        self._collectors = collector_states
        self._attention = attention
        self._on_state_change = on_state_change
        self._user = user
        self._mode: AgentMode = mode
        self._max_limit = max(1, min(batch_limit, MAX_BATCH_EVENTS))
        self._limit = self._max_limit
        self._max_bytes = max(1, max_batch_bytes - _BATCH_OVERHEAD_PER_EVENT * self._max_limit)
        self._backoff = Backoff(base=backoff_base, cap=backoff_cap, rand=rand)
        self._clock = clock
        self._now = now

        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._state = UploaderState.offline if transport and device_id else UploaderState.not_enrolled
        self._pending_resume: tuple[Transport | None, str | None, str | None] | None = None
        self._last_upload: datetime | None = None
        self._last_error: str | None = None
        self._queue_depth = 0
        self._sent_total = 0
        self._dead_total = 0
        self._retry_at = 0.0
        self._next_heartbeat = 0.0
        self._policy_due = True
        self._policy_etag: str | None = None
        self._successes = 0
        self._process = psutil.Process()
        self._conflicts = 0
        """409s answered by a resync since the last accepted batch."""
        self._resync_forced = False
        self._resyncs = 0

    # --- public API (any thread) -----------------------------------------------------------------

    @property
    def state(self) -> UploaderState:
        with self._lock:
            return self._state

    @property
    def last_upload(self) -> datetime | None:
        """When a batch was last accepted by the endpoint."""
        with self._lock:
            return self._last_upload

    @property
    def last_error(self) -> str | None:
        with self._lock:
            return self._last_error

    @property
    def queue_depth(self) -> int:
        """Unsent events as of the last heartbeat or drained batch."""
        with self._lock:
            return self._queue_depth

    @property
    def sent_total(self) -> int:
        with self._lock:
            return self._sent_total

    @property
    def dead_lettered_total(self) -> int:
        with self._lock:
            return self._dead_total

    @property
    def resyncs(self) -> int:
        """How often the outbox's seqs were moved past the endpoint's chain head."""
        with self._lock:
            return self._resyncs

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("uploader already started")
        self._thread = threading.Thread(target=self._run, name="uploader", daemon=True)
        self._thread.start()

    def stop(self, *, timeout: float = JOIN_TIMEOUT_S) -> bool:
        """Ask the thread to finish and join it; False if it is still inside an HTTP call after `timeout`."""
        self._stopping.set()
        self._wake.set()
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        if thread.is_alive():
            log.warning("uploader did not stop within %.1f s (a request is still in flight)", timeout)
            return False
        return True

    def notify(self) -> None:
        """New events were appended: wake the thread (unless it is backing off)."""
        self._wake.set()

    def heartbeat_soon(self) -> None:
        """Send a heartbeat at the next opportunity (the agent's health changed in a way a supervisor sees)."""
        self._next_heartbeat = 0.0
        self._wake.set()

    def resume(
        self, *, transport: Transport | None = None, device_id: str | None = None, credential: str | None = None
    ) -> None:
        """After (re-)enrolment: use the new transport/credential/device id and start uploading again."""
        with self._lock:
            self._pending_resume = (transport, device_id, credential)
        self._wake.set()

    # --- the thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            try:
                outbox = self._outbox_factory()
            except Exception:
                log.exception("uploader could not open the outbox; not uploading")
                return
            try:
                self._loop(outbox)
            except Exception:
                log.exception("uploader thread crashed")
            finally:
                outbox.close()
        finally:
            if self._transport is not None:
                self._transport.close()

    def _loop(self, outbox: OutboxLike) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            self._apply_resume()
            if self.state in (UploaderState.needs_reenrolment, UploaderState.not_enrolled):
                self._wake.wait()
                continue
            now = self._clock()
            if now < self._retry_at:
                self._wake.wait(self._retry_at - now)
                continue
            try:
                if now >= self._next_heartbeat:
                    self._heartbeat(outbox)
                    self._next_heartbeat = self._clock() + self._heartbeat_interval()
                if self._policy_due:
                    self._fetch_policy()
                sent = self._drain_once(outbox)
            except _Resync:
                self._next_heartbeat = 0.0  # the heartbeat answer says where to continue
                continue
            except _Retry as exc:
                self._schedule_retry(exc)
                continue
            except _Unauthorised:
                self._set_state(
                    UploaderState.needs_reenrolment, "the endpoint no longer accepts this device's credential"
                )
                continue
            except Exception as exc:
                # An outbox or callback failure must not end uploading for good; back off and try again.
                log.exception("uploader iteration failed")
                self._schedule_retry(_Retry(f"internal error: {type(exc).__name__}"))
                continue
            self._backoff.reset()
            if not sent:
                self._wake.wait(max(0.0, self._next_heartbeat - self._clock()))

    def _apply_resume(self) -> None:
        with self._lock:
            pending, self._pending_resume = self._pending_resume, None
        if pending is None:
            return
        transport, device_id, credential = pending
        if transport is not None:
            if self._transport is not None and self._transport is not transport:
                self._transport.close()
            self._transport = transport
        if device_id is not None:
            self._device_id = device_id
        if credential is not None and self._transport is not None:
            self._transport.set_credential(credential)
        if self._transport is None or not self._device_id:
            self._set_state(UploaderState.not_enrolled, None)
            return
        self._retry_at = 0.0
        self._next_heartbeat = 0.0
        self._policy_due = True
        self._backoff.reset()
        self._set_state(UploaderState.offline, None)

    def _heartbeat_interval(self) -> float:
        value = self._heartbeat_seconds() if callable(self._heartbeat_seconds) else self._heartbeat_seconds
        return max(0.01, float(value))

    def _schedule_retry(self, exc: _Retry) -> None:
        delay = self._backoff.next_delay()
        if exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        self._retry_at = self._clock() + delay
        log.info("endpoint unavailable (%s); retrying in %.2f s", exc, delay)
        self._set_state(UploaderState.offline, str(exc))

    def _set_state(self, state: UploaderState, error: str | None) -> None:
        with self._lock:
            changed = state != self._state
            self._state = state
            if error is not None:
                self._last_error = error
        if changed:
            log.info("uploader state: %s", state.value)
            if self._on_state_change is not None:
                try:
                    self._on_state_change(state)
                except Exception:
                    log.exception("on_state_change callback failed")

    def _mark_online(self) -> None:
        self._set_state(UploaderState.online, None)

    # --- HTTP ------------------------------------------------------------------------------------

    def _post(self, path: str, body: bytes, *, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """POST and classify: returns (status, body) for 2xx and non-retryable 4xx; raises otherwise."""
        assert self._transport is not None  # noqa: S101 - guarded by the state check in _loop
        try:
            response = self._transport.post_json(path, body, headers=headers)
        except TransportError as exc:
            raise _Retry(str(exc)) from None
        return self._classify(response.status_code, response.headers.get("Retry-After"), response.content)

    def _classify(self, status: int, retry_after: str | None, content: bytes) -> tuple[int, bytes]:
        if status == 401:
            raise _Unauthorised
        if status in (408, 429) or status >= 500:
            raise _Retry(f"HTTP {status}", retry_after=parse_retry_after(retry_after, now=self._now()))
        if 200 <= status < 300 or 400 <= status < 500:
            return status, content
        # 1xx/3xx: redirects are not followed; most likely a proxy or a wrong URL that an operator will fix.
        raise _Retry(f"unexpected HTTP {status}")

    def _heartbeat(self, outbox: OutboxLike) -> None:
        depth = outbox.depth()
        oldest = outbox.oldest_unsent_ts()
        with self._lock:
            self._queue_depth = depth
        try:
            with self._process.oneshot():
                rss: int | None = self._process.memory_info().rss
                cpu: float | None = self._process.cpu_percent(None)
        except psutil.Error:
            rss = cpu = None
        try:
            collectors = self._collectors()
        except Exception:
            log.exception("collector state callback failed")
            collectors = {}
        beat = Heartbeat(
            ts=self._now(),
            user=(self._user() if callable(self._user) else self._user)[:256],
            agent_version=agent_version()[:64],
            policy_version=self._policy_version(),
            queue_depth=depth,
            oldest_unsent_age_s=max(0.0, (self._now() - oldest).total_seconds()) if oldest is not None else None,
            collectors=collectors,
            rss_bytes=rss,
            cpu_percent=cpu,
            attention=[reason[:200] for reason in list(self._attention())[:10]],
            mode=self._mode,
        )
        status, content = self._post("/v1/heartbeat", beat.model_dump_json().encode(), headers={SEQ_RESYNC_HEADER: "1"})
        if status >= 400:
            log.warning("heartbeat refused with HTTP %s: %s", status, _detail(content))
            return
        self._mark_online()
        try:
            answer = HeartbeatResponse.model_validate_json(content)
        except ValidationError:
            log.warning("heartbeat answer is not a HeartbeatResponse")
            return
        if answer.policy_version > self._policy_version():
            self._policy_due = True
        if answer.last_seq is not None and answer.last_mac is not None:
            self._resync(outbox, answer.last_seq, answer.last_mac)

    def _resync(self, outbox: OutboxLike, endpoint_seq: int, endpoint_mac: str) -> None:
        """Move the queued events past the endpoint's chain head when the outbox no longer matches it."""
        force, self._resync_forced = self._resync_forced, False
        report = outbox.resync(endpoint_seq, endpoint_mac, force=force)
        if report is None:
            return
        with self._lock:
            self._resyncs += 1
        log.warning("seqs resynchronised with the endpoint (its last seq %s); queued events sent again", endpoint_seq)

    def _fetch_policy(self) -> None:
        assert self._transport is not None  # noqa: S101 - guarded by the state check in _loop
        headers = {"If-None-Match": self._policy_etag} if self._policy_etag else None
        try:
            response = self._transport.get("/v1/policy", headers=headers)
        except TransportError as exc:
            raise _Retry(str(exc)) from None
        if response.status_code == 304:
            # Checked before `_classify`, which takes any 3xx for a retry: a policy this agent did not apply
            # (rejected, or a test double reporting version 0) is refetched after each heartbeat, and answered
            # 304 by ETag; retrying that stalled every upload behind it.
            self._policy_due = False
            return
        status, content = self._classify(response.status_code, response.headers.get("Retry-After"), response.content)
        self._policy_due = False
        if status != 200:
            log.info("no policy fetched (HTTP %s)", status)
            return
        self._policy_etag = response.headers.get("ETag")
        if self._on_policy is not None:
            try:
                self._on_policy(content)
            except Exception:
                log.exception("policy callback failed")

    # --- events ----------------------------------------------------------------------------------

    def _drain_once(self, outbox: OutboxLike) -> bool:
        """Send the queued events, batch after batch while the backlog lasts. True when there was anything to send."""
        batch = outbox.pending_wire(limit=self._limit, max_bytes=self._max_bytes)
        if not batch:
            with self._lock:
                self._queue_depth = 0
            return False
        dead: list[tuple[list[WireRow], int, str]] = []
        try:
            self._send_pipelined(outbox, batch, dead)
        finally:
            # Report what was dead-lettered even when a later half hit a retryable error.
            if dead:
                self._report_dead(dead)
        return True

    def _send_pipelined(
        self, outbox: OutboxLike, batch: list[WireRow], dead: list[tuple[list[WireRow], int, str]]
    ) -> None:
        """Post `batch`, and while it is in flight read and compress the next one; once the endpoint accepts a
        batch, post the next at once and mark the accepted one sent while that is in flight.

        Batches still go out one at a time and in seq order: the next is posted only after the previous was
        accepted whole. Any other answer drops the batch read ahead and goes through `_send_split`. An accepted
        batch is marked sent after the next one left; if the agent stops in between, the endpoint takes the
        resend as a duplicate of seqs it holds (as after any stop between its answer and `mark_sent`).
        """
        body = self._compress(self._encode(batch))
        future = self._post_async(body)
        inflight: Future[Any] | None = future  # the post not yet answered, for the `finally` to wait on
        try:
            while True:
                ahead: list[WireRow] = []
                ahead_body = b""
                if self._keep_streaming():
                    ahead = outbox.pending_wire(limit=self._limit, max_bytes=self._max_bytes, after=batch[-1].seq)
                    if ahead:
                        ahead_body = self._compress(self._encode(ahead))
                inflight = None
                status, content = self._answer(future)
                if not 200 <= status < 300:
                    self._send_split(outbox, [batch], dead, first=(status, content))
                    return
                if ahead and self._keep_streaming():
                    future = inflight = self._post_async(ahead_body)
                else:
                    ahead = []
                outbox.mark_sent([row.seq for row in batch])
                self._after_success(len(batch))
                if not ahead:
                    return
                batch = ahead
        finally:
            if inflight is not None:
                # Something failed while a batch was in flight: let it finish before the transport is used
                # again. Its events stay queued and go out again (the endpoint drops the duplicates).
                try:
                    inflight.result()
                except Exception:
                    log.debug("a batch in flight failed after an earlier error", exc_info=True)

    def _keep_streaming(self) -> bool:
        """Read the next batch ahead only while nothing else is due on this thread."""
        return not (
            self._stopping.is_set()
            or self._pending_resume is not None
            or self._policy_due
            or self._clock() >= self._next_heartbeat
        )

    def _compress(self, body: bytes) -> bytes:
        assert self._transport is not None  # noqa: S101 - guarded by the state check in _loop
        return self._transport.compress(body)

    def _post_async(self, gzipped: bytes) -> Future[Any]:
        """Start posting a compressed batch on an `uploader-post` thread; `_answer` waits for it.

        A daemon thread per batch (about 0.1 ms against a 500-event batch), not an executor: an executor's
        worker is joined at interpreter exit, so a post hanging at shutdown would hold the service up to the
        read timeout."""
        transport = self._transport
        assert transport is not None  # noqa: S101 - guarded by the state check in _loop
        future: Future[Any] = Future()

        def post() -> None:
            future.set_running_or_notify_cancel()
            try:
                future.set_result(transport.post_gzipped("/v1/events", gzipped))
            except BaseException as exc:  # noqa: BLE001 - re-raised on the uploader thread by `_answer`
                future.set_exception(exc)

        threading.Thread(target=post, name="uploader-post", daemon=True).start()
        return future

    def _answer(self, inflight: Future[Any]) -> tuple[int, bytes]:
        try:
            response = inflight.result()
        except TransportError as exc:
            raise _Retry(str(exc)) from None
        return self._classify(response.status_code, response.headers.get("Retry-After"), response.content)

    def _send_split(
        self,
        outbox: OutboxLike,
        stack: list[list[WireRow]],
        dead: list[tuple[list[WireRow], int, str]],
        *,
        first: tuple[int, bytes] | None = None,
    ) -> None:
        """Post each part on the stack, halving parts the endpoint refuses as too large or for some of their
        events. `first` is the endpoint's answer to the top part when that was posted already."""
        while stack:
            part = stack.pop()
            if first is not None:
                (status, content), first = first, None
            else:
                status, content = self._post("/v1/events", self._encode(part))
            if 200 <= status < 300:
                seqs = [row.seq for row in part]
                outbox.mark_sent(seqs)
                self._after_success(len(seqs))
                continue
            if status == 409 and self._conflicts < MAX_RESYNCS_PER_CONFLICT:
                # Not dead-lettered: after the resync these events go out again under new seqs.
                self._conflicts += 1
                self._resync_forced = True
                log.warning("endpoint holds other events under seqs %s..%s (409); resynchronising", *_ends(part))
                raise _Resync
            if len(part) > 1 and (status == 413 or status in _SPLIT_STATUSES):
                half = len(part) // 2
                if status == 413:
                    self._shrink(half)
                stack.append(part[half:])
                stack.append(part[:half])
                continue
            detail = _detail(content)
            seqs = [row.seq for row in part]
            outbox.dead_letter(seqs, f"HTTP {status}: {detail}"[:500])
            dead.append((part, status, detail))
            log.warning("endpoint refused %s events with HTTP %s; moved to dead letter", len(seqs), status)

    def _encode(self, part: Sequence[WireRow]) -> bytes:
        """The EventBatch body: each row's canonical plaintext spliced in as bytes, with device_id and mac added,
        so the wire carries exactly the bytes that were chained."""
        device_json = json.dumps(self._device_id, ensure_ascii=False).encode()
        head = b'{"device_id":' + device_json + b',"mac":"'
        items = [b'%s%s",%s' % (head, row.mac.encode(), row.plaintext[1:]) for row in part]
        return b'{"device_id":' + device_json + b',"events":[' + b",".join(items) + b"]}"

    def _after_success(self, count: int) -> None:
        self._conflicts = 0
        with self._lock:
            self._last_upload = self._now()
            self._sent_total += count
        self._mark_online()
        self._successes += 1
        if self._limit < self._max_limit and self._successes >= _GROW_AFTER:
            self._limit = min(self._max_limit, self._limit * 2)
            self._successes = 0

    def _shrink(self, size: int) -> None:
        if size < self._limit:
            log.info("endpoint refused a batch as too large; sending at most %s events per batch", size)
            self._limit = max(1, size)
        self._successes = 0

    def _report_dead(self, dead: list[tuple[list[WireRow], int, str]]) -> None:
        """One agent.dead_letter event per send cycle and status, unless it would only report itself."""
        by_status: dict[int, list[tuple[list[WireRow], str]]] = {}
        for part, status, detail in dead:
            by_status.setdefault(status, []).append((part, detail))
        for status, parts in by_status.items():
            events = [e for part, _ in parts for e in part]
            seqs = sorted(row.seq for row in events)
            with self._lock:
                self._dead_total += len(seqs)
            if all(row.kind == EventKind.agent_dead_letter.value for row in events):
                # Reporting a refused dead-letter report with another one would loop forever.
                log.error("endpoint refused %s agent.dead_letter events (seqs %s..%s)", len(seqs), seqs[0], seqs[-1])
                continue
            data: dict[str, Any] = {
                "count": len(seqs),
                "first_seq": seqs[0],
                "last_seq": seqs[-1],
                "seqs": seqs[:100],
                "status": status,
                "detail": parts[0][1],
            }
            draft = EventDraft(
                kind=EventKind.agent_dead_letter, severity=Severity.high, action=Action.failed, data=data
            )
            try:
                self._record(draft)
            except Exception:
                log.exception("could not record agent.dead_letter for %s events", len(seqs))


def _ends(part: list[WireRow]) -> tuple[int, int]:
    return part[0].seq, part[-1].seq


def _detail(content: bytes) -> str:
    """The endpoint's short `detail` message, if any (FastAPI validation lists are summarised)."""
    try:
        data = json.loads(content[:8192])
    except (ValueError, RecursionError):
        return ""
    if not isinstance(data, dict):
        return ""
    detail = data.get("detail")
    if isinstance(detail, str):
        return detail[:200]
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        return str(detail[0].get("msg", ""))[:200]
    return ""
