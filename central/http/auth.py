"""Bearer authentication: device credentials for the agent API, API tokens (admin/auditor) for the read API.

Called from worker threads (the lookups hit the database).
"""

from __future__ import annotations

from fastapi import Request

from central.http.errors import unauthorized
from central.runtime import Runtime
from central.store.devices import DeviceAuth
from central.store.tokens import ApiPrincipal, find_api_token


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise unauthorized("missing Authorization: Bearer <token> header")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthorized("Authorization header must be 'Bearer <token>'")
    return token


def authenticate_device(runtime: Runtime, authorization: str | None) -> DeviceAuth:
    device = runtime.credentials.find(runtime.db, bearer_token(authorization))
    if device is None:
        raise unauthorized("unknown or revoked device credential; enrol the device again")
    return device


def authenticate_api(runtime: Runtime, authorization: str | None) -> ApiPrincipal:
    principal = find_api_token(runtime.db, bearer_token(authorization), now=runtime.clock())
    if principal is None:
        raise unauthorized("unknown, expired or revoked API token")
    return principal
