"""Reading request bodies: size cap, gzip with a decompression cap, pydantic validation into clear 4xx.

`read_raw` runs on the event loop; `decode` and `parse` are CPU work for a worker thread.
"""

from __future__ import annotations

import zlib
from typing import TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from central.http.errors import ApiError, describe_errors

M = TypeVar("M", bound=BaseModel)


async def read_raw(request: Request, *, max_bytes: int) -> bytes:
    """The body as sent (maybe gzip), refused with 413 as soon as it passes `max_bytes`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, f"request body is larger than {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(413, f"request body is larger than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def decode(raw: bytes, content_encoding: str | None, *, max_bytes: int) -> bytes:
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "identity":
        return raw
    if encoding not in ("gzip", "x-gzip"):
        raise ApiError(415, f"unsupported Content-Encoding {encoding!r}; send gzip or identity")
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        body = inflater.decompress(raw, max_bytes + 1)
    except zlib.error as exc:
        raise ApiError(400, f"body is not valid gzip: {exc}") from None
    if len(body) > max_bytes:
        raise ApiError(413, f"decompressed body is larger than {max_bytes} bytes")
    if not inflater.eof:
        raise ApiError(400, "gzip body is truncated")
    return body


MAX_STORED_INT = 2**63 - 1


def check_storable(body: bytes) -> None:
    """Refuse what the databases cannot store. PostgreSQL text and JSONB reject NUL characters.

    (A JSON string holding a literal backslash followed by "u0000" is refused too; no agent sends that.)
    """
    if b"\\u0000" in body:
        raise ApiError(422, "NUL characters (\\u0000) are not accepted in strings")


def check_int_range(**values: int | None) -> None:
    for name, value in values.items():
        if value is not None and value > MAX_STORED_INT:
            raise ApiError(422, f"{name} is larger than {MAX_STORED_INT}")


def parse(body: bytes, model: type[M], *, max_items: int | None = None) -> M:
    """Validate JSON bytes into `model`; invalid JSON is 400, a list over its max length 413, other problems 422."""
    check_storable(body)
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        if any(err["type"] == "json_invalid" for err in errors):
            raise ApiError(400, "body is not valid JSON: " + describe_errors(errors)) from None
        too_long = [err for err in errors if err["type"] == "too_long" and len(err["loc"]) == 1]
        if too_long:
            limit = f" (at most {max_items})" if max_items is not None else ""
            raise ApiError(413, f"too many items in {too_long[0]['loc'][0]}{limit}; split the batch") from None
        raise ApiError(422, f"{model.__name__} is invalid: " + describe_errors(errors)) from None
