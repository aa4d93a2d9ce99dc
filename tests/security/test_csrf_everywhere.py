"""Every state-changing console route, enumerated from app.routes (so new forms are covered), refuses a request
from a signed-in admin that lacks the session's CSRF token or carries a wrong one, and changes nothing."""

from __future__ import annotations

import httpx

from central.auth.sessions import start_session
from central.auth.users import create_user
from central.store import audit
from tests.security.conftest import SecurityEndpoint
from tests.security.routes import enumerate_routes

NO_SESSION_YET = {"POST /console/login"}
"""The login form has its own double-submit token (tested with the login throttle)."""
VALUES = {
    "quarantine_id": "20300101T090000Z-0123456789ab",
    "decision": "approve",
    "device_id": "0123456789abcdef0123456789abcdef",
}


def test_every_console_form_needs_the_sessions_csrf_token(security_endpoint: SecurityEndpoint) -> None:
    endpoint = security_endpoint
    db, now = endpoint.runtime.db, endpoint.clock()
    admin = create_user(db, "csrf-admin", role="admin", teams=[], password="pw-admin-123456!", now=now)
    session_id, csrf = start_session(db, admin, now=now)
    routes, _ = enumerate_routes(endpoint.app)
    posts = [
        r for r in routes if r.method == "POST" and r.path.startswith("/console") and r.label not in NO_SESSION_YET
    ]
    assert len(posts) >= 20, [r.label for r in posts]
    entries_before = len(audit.list_entries(db, limit=10_000))
    problems = []
    with httpx.Client(base_url=endpoint.url, timeout=10, cookies={"dw_session": session_id}) as console:
        assert console.get("/console/alerts").status_code == 200
        for route in posts:
            path = route.path
            for name in route.params:
                path = path.replace("{" + name + "}", VALUES.get(name, "1"))
            form = {"note": "x", "team": "red", "role": "admin", "name": "x", "spec": "{}", "scope": "events"}
            for token in (None, csrf[:-2] + "xx"):
                data = form if token is None else {**form, "csrf_token": token}
                answer = console.post(path, data=data)
                if answer.status_code != 403:
                    problems.append(f"{route.label} with csrf_token={token!r} -> {answer.status_code}")
    assert not problems, "\n".join(problems)
    assert len(audit.list_entries(db, limit=10_000)) == entries_before, "a refused form changed something"
