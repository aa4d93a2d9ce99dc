"""`GET /v1/commands`: what an enrolled device's service should carry out, signed by the endpoint (today: admins'
decisions to release or delete a quarantined download; policy_client/device_commands.py).

The handler runs in a worker thread (a credential lookup and one indexed query).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from central.http.auth import authenticate_device, runtime_of
from central.store import quarantine
from policy_client.device_commands import CommandList
from policy_client.schema import ErrorBody

router = APIRouter(prefix="/v1", tags=["agent"])


@router.get("/commands", response_model=CommandList, responses={401: {"model": ErrorBody}})
def get_commands(request: Request) -> Response:
    """The device's pending commands, oldest first (at most 50). Each is `{payload, signature}`: base64 of the
    command's JSON and of its Ed25519 signature by the policy key over a domain tag, the device id and the payload.
    The service verifies each against the key it pinned at enrolment, carries it out once and reports the outcome
    as an event (`download.released` / `download.deleted` with `data.command_id`), which ends the command here."""
    runtime = runtime_of(request)
    device = authenticate_device(runtime, request.headers.get("authorization"))
    body = CommandList(commands=quarantine.commands_for(runtime.db, device.device_id, now=runtime.clock()))
    return Response(content=body.model_dump_json(), media_type="application/json")
