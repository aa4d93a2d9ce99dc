"""Every (method, path) the endpoint serves, enumerated from the FastAPI app itself (never listed by hand).

Called from tests on the pytest thread.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI


@dataclass(frozen=True)
class RouteInfo:
    method: str
    path: str
    sse: bool

    @property
    def params(self) -> list[str]:
        return re.findall(r"{(\w+)(?::\w+)?}", self.path)

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"


def _flatten(routes: list[Any]) -> list[Any]:
    flat: list[Any] = []
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if callable(contexts):  # FastAPI's included routers
            flat += _flatten(list(contexts()))
        else:
            flat.append(route)
    return flat


def enumerate_routes(app: FastAPI) -> tuple[list[RouteInfo], list[str]]:
    """(method routes, mounts). HEAD is left out where GET is served (it answers the same)."""
    found: list[RouteInfo] = []
    mounts: list[str] = []
    for route in _flatten(list(app.routes)):
        methods = getattr(route, "methods", None)
        if not methods:
            mounts.append(route.path)
            continue
        sse = bool(getattr(route, "is_sse_stream", False)) or "stream" in route.path
        for method in sorted(methods - {"HEAD"} if "GET" in methods else methods):
            found.append(RouteInfo(method=method, path=route.path, sse=sse))
    return found, mounts
