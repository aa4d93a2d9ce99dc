"""Every console form and query parameter, enumerated from the app's routes (never listed by hand), gets hostile
values, from an admin's session with a valid CSRF token and from nobody: never a 5xx, and nothing sent comes
back as live markup.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import given
from hypothesis import strategies as st

from central.auth.principal import Principal
from central.auth.sessions import start_session
from central.auth.users import create_user
from policy_client.schema import utc_now
from tests.fuzz.budget import budget
from tests.fuzz.conftest import FuzzEndpoint
from tests.security.routes import _flatten

MARKUP = "<script>alert(1)</script>"
HOSTILE = [
    MARKUP,
    '"><img src=x onerror=alert(1)>',
    "javascript:alert(1)",
    '=HYPERLINK("http://evil.example")',
    "x" * 5000,
    "a\nb\r\nc",
    "Équipe 東京",
    "\u202eevil",
    str(10**30),
    "-1",
    "0",
    "1e309",
    "",
    " ",
    "{}",
    '{"name": "r", "channels": [{"type": "webhook", "url": "http://127.0.0.1:9/"}]}',
    '{"name": "r", "playbook": {"link": "javascript:alert(1)"}}',
    "0001-01-01",
    "9999-12-31",
]
VALUES = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=40), st.integers().map(str))
PATH_VALUES = st.one_of(
    st.sampled_from(["0", "-1", "2", str(10**30), "abc", "approve", "reject", "deny", "revoke", "%00", "1e3"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20).map(
        lambda s: quote(s, safe="")
    ),
)
SKIPPED = {"/console/logout", "/console/alerts-stream"}
"""Logging out ends the session the fuzzing runs in; the stream never ends (tests/security covers both)."""
LIVE_MARKUP = re.compile(r"<script>alert\(1\)</script>|<img src=x onerror=alert\(1\)>")


def _params(dependant: Any, kind: str) -> list[str]:
    found = [str(p.alias) for p in getattr(dependant, kind)]
    for sub in dependant.dependencies:
        found += _params(sub, kind)
    return found


def _console_routes(endpoint: FuzzEndpoint) -> list[tuple[str, str, list[str], list[str], list[str]]]:
    routes = []
    for route in _flatten(list(endpoint.app.routes)):
        dependant = getattr(route, "dependant", None)
        if dependant is None or not route.path.startswith("/console") or route.path in SKIPPED:
            continue
        for method in sorted(route.methods - {"HEAD"}):
            routes.append(
                (
                    method,
                    route.path,
                    _params(dependant, "path_params"),
                    _params(dependant, "query_params"),
                    [p for p in _params(dependant, "body_params") if p != "csrf_token"],
                )
            )
    return routes


class AdminSession:
    """An admin's session made straight in the store (no login throttling); renewed when a fuzzed form ends it."""

    def __init__(self, endpoint: FuzzEndpoint) -> None:
        self.endpoint = endpoint
        self.db = endpoint.app.state.runtime.db
        self.admin: Principal = create_user(
            self.db, "fuzz-admin", role="admin", teams=[], password="fuzz-password-123", now=utc_now()
        )
        self.renew()

    def renew(self) -> None:
        session_id, self.csrf = start_session(self.db, self.admin, now=utc_now())
        self.cookies = {"dw_session": session_id}


def _fuzz_route(
    endpoint: FuzzEndpoint,
    session: AdminSession,
    problems: list[str],
    route: tuple[str, str, list[str], list[str], list[str]],
) -> None:
    method, path, path_params, query_params, body_params = route

    @given(
        path_values=st.fixed_dictionaries({p: PATH_VALUES for p in path_params}),
        query=st.fixed_dictionaries({}, optional={p: VALUES for p in query_params}),
        form=st.fixed_dictionaries({}, optional={p: VALUES for p in body_params}),
        anonymous=st.booleans(),
    )
    @budget(10)
    def check(path_values: dict[str, str], query: dict[str, str], form: dict[str, str], anonymous: bool) -> None:
        url = path
        for name, value in path_values.items():
            url = url.replace("{" + name + "}", value)
        cookies = {} if anonymous else session.cookies
        with httpx.Client(base_url=endpoint.url, timeout=30, cookies=cookies) as client:
            if method == "GET":
                answer = client.get(url, params=query)
            else:
                answer = client.post(url, params=query, data={**form, "csrf_token": session.csrf})
        if answer.status_code >= 500:
            problems.append(f"{method} {path} {path_values} {query} {form} -> {answer.status_code}")
        if "html" in answer.headers.get("content-type", "") and LIVE_MARKUP.search(answer.text):
            problems.append(f"{method} {path} {path_values} {query} {form} echoed live markup")
        if not anonymous and answer.headers.get("location", "").startswith("/console/login"):
            session.renew()  # a fuzzed form ended the session (its own password reset, say)

    check()


def test_console_forms_and_queries_never_5xx_nor_echo_markup(fuzz_endpoint: FuzzEndpoint) -> None:
    routes = _console_routes(fuzz_endpoint)
    assert len(routes) >= 30, routes
    session = AdminSession(fuzz_endpoint)
    problems: list[str] = []
    for route in routes:
        _fuzz_route(fuzz_endpoint, session, problems, route)
    assert not problems, "\n".join(problems[:20])
