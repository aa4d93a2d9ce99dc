"""Error answers of the API: one JSON shape (`{"detail": ...}`), clear 4xx for bad input, never a 5xx for it.

Handlers run on the event loop; `ApiError` may be raised from worker threads too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

MAX_LISTED_PROBLEMS = 10


class ApiError(Exception):
    def __init__(self, status: int, detail: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})


def unauthorized(detail: str) -> ApiError:
    return ApiError(401, detail, headers={"WWW-Authenticate": "Bearer"})


def describe_errors(errors: Sequence[Mapping[str, Any]], *, skip_loc: int = 0) -> str:
    """Pydantic errors as `field.path: message; ...`, without echoing the input values."""
    parts = []
    for err in errors[:MAX_LISTED_PROBLEMS]:
        loc = ".".join(str(p) for p in list(err.get("loc", ()))[skip_loc:]) or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    more = len(errors) - MAX_LISTED_PROBLEMS
    if more > 0:
        parts.append(f"... and {more} more")
    return "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": "invalid request: " + describe_errors(exc.errors())}, status_code=422)

    @app.exception_handler(DataError)
    async def _data(_request: Request, exc: DataError) -> JSONResponse:
        # A value that passed validation but does not fit a column: still the client's input.
        log.warning("database refused a value: %s", type(exc.orig).__name__)
        return JSONResponse({"detail": "a value in the request cannot be stored (out of range)"}, status_code=422)

    @app.exception_handler(OverflowError)
    async def _overflow(_request: Request, _exc: OverflowError) -> JSONResponse:
        # SQLite's driver raises OverflowError binding an integer wider than 64 bits, and date arithmetic
        # raises it past year 9999: both come from a number or date the client sent.
        return JSONResponse({"detail": "a number or date in the request is out of range"}, status_code=422)

    @app.exception_handler(OperationalError)
    async def _unavailable(_request: Request, exc: OperationalError) -> JSONResponse:
        log.error("database unavailable: %s", type(exc.orig).__name__)
        return JSONResponse(
            {"detail": "database unavailable; retry later"}, status_code=503, headers={"Retry-After": "5"}
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)
