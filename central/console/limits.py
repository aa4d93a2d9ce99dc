"""Caps on console request bodies, checked before anything parses them: total size (smaller for the
unauthenticated login form), number of form fields, size of one field, and time to send the body.

`ConsoleBodyLimit` is ASGI middleware on the event loop. It holds at most the capped body in memory, checks
it, then hands the same bytes to the app; everything outside `/console` passes through untouched.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from central.console.deps import page

CONSOLE_PREFIX = "/console"
LOGIN_PATH = "/console/login"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class BodyLimits:
    max_bytes: int
    max_login_bytes: int
    max_fields: int
    max_field_bytes: int
    timeout_s: float = 30.0
    """A body still arriving after this long is refused with 408 (a slow sender holds memory and a slot)."""


class BodyRefused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class ConsoleBodyLimit:
    def __init__(self, app: ASGIApp, *, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if (
            scope["type"] != "http"
            or scope.get("method") not in BODY_METHODS
            or not (path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/"))
        ):
            await self.app(scope, receive, send)
            return
        cap = self.limits.max_login_bytes if path == LOGIN_PATH else self.limits.max_bytes
        try:
            body = await self._read(scope, receive, cap)
            self._check_form(scope, body)
        except BodyRefused as refused:
            await _refuse(scope, send, refused)
            return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the client to go away, as Starlette expects

        await self.app(scope, replay, send)

    async def _read(self, scope: Scope, receive: Receive, cap: int) -> bytes:
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        if declared is not None and (not declared.strip().isdigit() or int(declared) > cap):
            raise BodyRefused(413, f"The form is larger than {cap} bytes.")
        chunks: list[bytes] = []
        size = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.timeout_s
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise BodyRefused(408, "The form took too long to arrive.")
            try:
                message = await asyncio.wait_for(receive(), timeout=remaining)
            except TimeoutError:
                raise BodyRefused(408, "The form took too long to arrive.") from None
            if message["type"] == "http.disconnect":
                raise BodyRefused(400, "The connection closed before the form arrived.")
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > cap:
                raise BodyRefused(413, f"The form is larger than {cap} bytes.")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _check_form(self, scope: Scope, body: bytes) -> None:
        content_type = Headers(scope=scope).get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type == "multipart/form-data":
            # No console form uploads files; multipart would let one request spool parts to disk.
            raise BodyRefused(415, "Console forms are sent URL-encoded, not as multipart.")
        if content_type != "application/x-www-form-urlencoded" or not body:
            return
        fields = [f for f in body.replace(b";", b"&").split(b"&") if f]
        if len(fields) > self.limits.max_fields:
            raise BodyRefused(413, f"The form has more than {self.limits.max_fields} fields.")
        if any(len(f) > self.limits.max_field_bytes for f in fields):
            raise BodyRefused(413, f"A form field is larger than {self.limits.max_field_bytes} bytes.")


async def _refuse(scope: Scope, send: Send, refused: BodyRefused) -> None:
    """An HTML page with the reason; the connection is closed since the rest of the body was not read."""
    status = refused.status
    answer = page(Request(scope), "error.html", status_code=status, status=status, detail=refused.detail)
    answer.headers["Connection"] = "close"

    async def no_body() -> Message:
        return {"type": "http.disconnect"}

    await answer(scope, no_body, send)
