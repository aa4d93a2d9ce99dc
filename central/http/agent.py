"""The agent API: `/v1/enroll`, `/v1/policy`, `/v1/events`, `/v1/heartbeat` (ARCHITECTURE.md section 7).

Handlers run on the event loop and hand database and CPU work to worker threads. Admission for event
batches (credential first, per-device bound, body deadline, then the shared slot) is in `ingest_gate`.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from central.alerting.classify import classify_events
from central.alerting.service import alerts_committed
from central.http.auth import authenticate_device, runtime_of
from central.http.bodies import check_int_range, decode, parse
from central.http.errors import ApiError
from central.http.ingest_gate import ingest_gate
from central.runtime import Runtime
from central.store import devices, policies
from central.store.devices import DeviceAuth
from central.store.ingest import DeviceGone, SeqReuse, decode_chain_key, ingest_batch
from policy_client.schema import (
    MAX_BATCH_EVENTS,
    SEQ_RESYNC_HEADER,
    EnrollRequest,
    EnrollResponse,
    ErrorBody,
    EventBatch,
    Heartbeat,
    HeartbeatResponse,
    IngestResult,
    PolicyEnvelope,
)

log = logging.getLogger(__name__)

MIN_CHAIN_KEY_BYTES = 16
SMALL_BODY_BYTES = 64 * 1024

router = APIRouter(prefix="/v1", tags=["agent"])

_JSON = "application/json"
_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 413, 415, 422, 429)
}
_BODY_ERRORS = _ERRORS | {408: {"model": ErrorBody}}
"""Routes that read a body answer 408 when it arrives too slowly (`ingest_gate`)."""


def _json(body: str, *, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(content=body, status_code=status, media_type=_JSON, headers=headers)


@router.post("/enroll", response_model=EnrollResponse, responses=_BODY_ERRORS)
async def enroll(request: Request) -> Response:
    runtime = runtime_of(request)
    raw = await ingest_gate(request).read_body(request, max_bytes=SMALL_BODY_BYTES)
    encoding = request.headers.get("content-encoding")
    return await run_in_threadpool(_enroll, runtime, raw, encoding)


def _enroll(runtime: Runtime, raw: bytes, encoding: str | None) -> Response:
    body = parse(decode(raw, encoding, max_bytes=SMALL_BODY_BYTES), EnrollRequest)
    try:
        key = decode_chain_key(body.chain_key)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None
    if len(key) < MIN_CHAIN_KEY_BYTES:
        raise ApiError(422, f"chain_key must be at least {MIN_CHAIN_KEY_BYTES} bytes")
    try:
        enrolled = devices.enroll_device(runtime.db, body, now=runtime.clock())
    except devices.EnrollRefused as exc:
        raise ApiError(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from None
    log.info("enrolled device %s (%s) in team %s", enrolled.device_id, body.hostname, enrolled.team)
    answer = EnrollResponse(
        device_id=enrolled.device_id,
        credential=enrolled.credential,
        team=enrolled.team,
        policy_key_id=runtime.signer.key_id,
        policy_public_key=runtime.signer.public_key_b64,
    )
    return _json(answer.model_dump_json())


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    candidates = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in candidates or etag in candidates


@router.get("/policy", response_model=PolicyEnvelope, responses=_ERRORS | {304: {"description": "Not modified"}})
def get_policy(request: Request) -> Response:
    runtime = runtime_of(request)
    authenticate_device(runtime, request.headers.get("authorization"))
    stored = policies.current_policy(runtime.db)
    if stored is None:
        raise ApiError(404, "no policy has been published yet")
    headers = {"ETag": stored.etag, "Cache-Control": "no-cache"}
    if _etag_matches(request.headers.get("if-none-match"), stored.etag):
        return Response(status_code=304, headers=headers)
    return _json(stored.envelope.model_dump_json(), headers=headers)


@router.post("/events", response_model=IngestResult, responses=_BODY_ERRORS | {409: {"model": ErrorBody}})
async def post_events(request: Request) -> Response:
    runtime = runtime_of(request)
    gate = ingest_gate(request)
    retry = runtime.settings.retry_after_s
    # The credential comes from the header: a caller without one is refused before its body is read and
    # before it holds anything other agents need.
    device = await run_in_threadpool(authenticate_device, runtime, request.headers.get("authorization"))
    with gate.device_slot(device.device_id, retry_after_s=retry):
        # The raw cap equals the decompressed cap: event JSON never grows when gzipped.
        raw = await gate.read_body(request, max_bytes=runtime.settings.max_body_bytes)
        if not runtime.limiter.try_acquire():
            raise ApiError(429, "endpoint is busy; retry later", headers={"Retry-After": str(retry)})
        try:
            return await run_in_threadpool(_ingest, runtime, device, raw, request.headers.get("content-encoding"))
        finally:
            runtime.limiter.release()


def _ingest(runtime: Runtime, device: DeviceAuth, raw: bytes, encoding: str | None) -> Response:
    body = decode(raw, encoding, max_bytes=runtime.settings.max_body_bytes)
    batch = parse(body, EventBatch, max_items=MAX_BATCH_EVENTS)
    if batch.device_id != device.device_id:
        raise ApiError(403, "batch device_id does not match the device this credential belongs to")
    strangers = {ev.device_id for ev in batch.events} - {device.device_id}
    if strangers:
        raise ApiError(403, "events carry a device_id other than the credential's device")
    if batch.events:
        check_int_range(
            seq=max(ev.seq for ev in batch.events),
            policy_version=max(ev.rule.policy_version if ev.rule else 0 for ev in batch.events),
        )
    try:
        outcome = ingest_batch(runtime.db, device.device_id, batch, now=runtime.clock(), classify=classify_events)
    except DeviceGone:
        raise ApiError(401, "device credential was revoked", headers={"WWW-Authenticate": "Bearer"}) from None
    except SeqReuse as exc:
        alerts_committed(runtime)  # tamper.seq_reuse was committed
        raise ApiError(
            409,
            f"seq {exc.seqs[0]} already holds another event of this device (its highest stored seq is "
            f"{exc.last_seq}); nothing in this batch was stored: resynchronise the seqs and send it again",
        ) from None
    if outcome.alerts:
        alerts_committed(runtime)  # wake the alert router now instead of at its next poll
    return _json(IngestResult(accepted=outcome.accepted, duplicates=outcome.duplicates).model_dump_json())


@router.post("/heartbeat", response_model=HeartbeatResponse, responses=_BODY_ERRORS)
async def heartbeat(request: Request) -> Response:
    runtime = runtime_of(request)
    raw = await ingest_gate(request).read_body(request, max_bytes=SMALL_BODY_BYTES)
    encoding = request.headers.get("content-encoding")
    authorization = request.headers.get("authorization")
    resync = request.headers.get(SEQ_RESYNC_HEADER, "").strip() == "1"
    return await run_in_threadpool(_heartbeat, runtime, raw, encoding, authorization, resync)


def _heartbeat(runtime: Runtime, raw: bytes, encoding: str | None, authorization: str | None, resync: bool) -> Response:
    device = authenticate_device(runtime, authorization)
    beat = parse(decode(raw, encoding, max_bytes=SMALL_BODY_BYTES), Heartbeat)
    check_int_range(policy_version=beat.policy_version, queue_depth=beat.queue_depth, rss_bytes=beat.rss_bytes)
    try:
        outcome = devices.record_heartbeat(runtime.db, device, beat, now=runtime.clock())
    except DeviceGone:
        raise ApiError(401, "device credential was revoked", headers={"WWW-Authenticate": "Bearer"}) from None
    if outcome.alerts:
        alerts_committed(runtime)
    answer = HeartbeatResponse(policy_version=outcome.policy_version)
    if resync:
        answer = answer.model_copy(update={"last_seq": outcome.last_seq, "last_mac": outcome.last_mac})
    return _json(answer.model_dump_json(exclude_none=True))
