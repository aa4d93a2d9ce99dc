"""Tokens end: read-API and personal tokens stop working when they expire or are revoked (console or CLI), and an
alert stream already open is closed when its token is revoked, its session logged out or its user disabled."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

import httpx
import pytest

from central import commands
from central.auth.sessions import start_session
from central.auth.users import create_user, issue_user_token, list_user_tokens, update_user
from central.store import tokens
from tests.security.conftest import SecurityEndpoint

PASSWORD = "correct-horse-battery"
CLOSE_WITHIN_S = 10.0


@pytest.fixture
def endpoint(security_endpoint: SecurityEndpoint) -> SecurityEndpoint:
    """Open streams re-check their caller every 0.1 s here (5 s in production), so tests end quickly."""
    state = security_endpoint.app.state.console
    security_endpoint.app.state.console = replace(state, stream_recheck_s=0.1)
    return security_endpoint


def _admin(endpoint: SecurityEndpoint) -> tuple[httpx.Client, str]:
    db, now = endpoint.runtime.db, endpoint.clock()
    admin = create_user(db, "ada", role="admin", teams=[], password=PASSWORD, now=now)
    session_id, csrf = start_session(db, admin, now=now)
    client = httpx.Client(base_url=endpoint.url, timeout=10, cookies={"dw_session": session_id})
    return client, csrf


def test_an_api_token_stops_working_when_it_expires(endpoint: SecurityEndpoint) -> None:
    token = tokens.create_api_token(
        endpoint.runtime.db, "nightly", "auditor", now=endpoint.clock(), ttl=timedelta(hours=1)
    )
    auth = {"Authorization": f"Bearer {token}"}
    assert endpoint.client.get("/v1/devices", headers=auth).status_code == 200

    endpoint.clock.now += timedelta(hours=1, seconds=1)

    answer = endpoint.client.get("/v1/devices", headers=auth)
    assert answer.status_code == 401
    assert "expired" in answer.json()["detail"]
    assert endpoint.client.get("/v1/alerts/stream", headers=auth).status_code == 401


def test_an_api_token_made_and_revoked_in_the_console_is_refused_and_audited(endpoint: SecurityEndpoint) -> None:
    admin, csrf = _admin(endpoint)
    with admin:
        made = admin.post(
            "/console/api-tokens", data={"csrf_token": csrf, "name": "siem", "role": "auditor", "days": "30"}
        )
        assert made.status_code == 200
        assert made.headers["cache-control"] == "no-store"
        token = made.text.split('<pre id="token">', 1)[1].split("</pre>", 1)[0]
        auth = {"Authorization": f"Bearer {token}"}
        assert endpoint.client.get("/v1/devices", headers=auth).status_code == 200
        listed = tokens.list_api_tokens(endpoint.runtime.db)
        assert [(t.name, t.created_by, t.expires_at) for t in listed] == [
            ("siem", "ada", endpoint.clock() + timedelta(days=30))
        ]

        revoked = admin.post(f"/console/api-tokens/{listed[0].id}/revoke", data={"csrf_token": csrf})
        assert revoked.status_code == 303

        assert endpoint.client.get("/v1/devices", headers=auth).status_code == 401
        audit = admin.get("/console/audit").text
        assert "api-token.create" in audit
        assert "api-token.revoke" in audit


def test_a_personal_token_expires_and_can_be_revoked_by_its_owner_only(endpoint: SecurityEndpoint) -> None:
    db, now = endpoint.runtime.db, endpoint.clock()
    sup = create_user(db, "sup", role="supervisor", teams=["red"], password=PASSWORD, now=now)
    other = create_user(db, "eve", role="supervisor", teams=["red"], password=PASSWORD, now=now)
    assert sup.user_id is not None
    assert other.user_id is not None
    short = issue_user_token(db, sup.user_id, now=now, ttl=timedelta(days=1))
    kept = issue_user_token(db, sup.user_id, now=now)
    kept_id = next(
        t.token_id for t in list_user_tokens(db, user_id=sup.user_id) if t.expires_at != now + timedelta(days=1)
    )

    endpoint.clock.now += timedelta(days=1, seconds=1)
    stream = endpoint.client.get("/v1/alerts/stream", headers={"Authorization": f"Bearer {short}"})
    assert stream.status_code == 401

    eve_session, eve_csrf = start_session(db, other, now=endpoint.clock())
    with httpx.Client(base_url=endpoint.url, timeout=10, cookies={"dw_session": eve_session}) as eve:
        assert eve.post(f"/console/tokens/{kept_id}/revoke", data={"csrf_token": eve_csrf}).status_code == 404
    assert all(t.revoked_at is None for t in list_user_tokens(db, user_id=sup.user_id))
    assert commands.revoke_user_token(endpoint.settings, kept_id)
    assert endpoint.client.get("/v1/alerts/stream", headers={"Authorization": f"Bearer {kept}"}).status_code == 401


def _open_stream(endpoint: SecurityEndpoint, **kwargs: object) -> tuple[threading.Thread, threading.Event, list[int]]:
    """Read an alert stream on a thread; `closed` is set when the server ends it."""
    closed = threading.Event()
    opened = threading.Event()
    status: list[int] = []

    def read() -> None:
        path = str(kwargs.pop("path", "/v1/alerts/stream"))
        with (
            httpx.Client(base_url=endpoint.url, timeout=httpx.Timeout(30.0)) as client,
            client.stream("GET", path, **kwargs) as answer,  # type: ignore[arg-type]
        ):
            status.append(answer.status_code)
            for chunk in answer.iter_bytes():
                if b"connected" in chunk:
                    opened.set()
        closed.set()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    assert opened.wait(10), f"the stream did not open: {status}"
    return thread, closed, status


def test_an_open_stream_closes_when_its_personal_token_is_revoked(endpoint: SecurityEndpoint) -> None:
    db, now = endpoint.runtime.db, endpoint.clock()
    sup = create_user(db, "sup", role="supervisor", teams=["red"], password=PASSWORD, now=now)
    assert sup.user_id is not None
    token = issue_user_token(db, sup.user_id, now=now)
    thread, closed, _status = _open_stream(endpoint, headers={"Authorization": f"Bearer {token}"})

    users_token = list_user_tokens(db, user_id=sup.user_id)[0].token_id
    assert commands.revoke_user_token(endpoint.settings, users_token)

    assert closed.wait(CLOSE_WITHIN_S), "the stream stayed open after its token was revoked"
    thread.join(5)


def test_an_open_console_stream_closes_at_logout(endpoint: SecurityEndpoint) -> None:
    db, now = endpoint.runtime.db, endpoint.clock()
    sup = create_user(db, "sup", role="supervisor", teams=["red"], password=PASSWORD, now=now)
    session_id, csrf = start_session(db, sup, now=now)
    cookies = {"dw_session": session_id}
    thread, closed, _ = _open_stream(endpoint, path="/console/alerts-stream", cookies=cookies)
    other_thread, other_closed, _ = _open_stream(endpoint, cookies=cookies)  # the tray's stream on a session

    with httpx.Client(base_url=endpoint.url, timeout=10, cookies=cookies) as console:
        assert console.post("/console/logout", data={"csrf_token": csrf}).status_code == 303

    assert closed.wait(CLOSE_WITHIN_S), "the console stream stayed open after logout"
    assert other_closed.wait(CLOSE_WITHIN_S), "the session's /v1 stream stayed open after logout"
    thread.join(5)
    other_thread.join(5)


def test_an_open_stream_closes_when_its_user_is_disabled_or_loses_a_team(endpoint: SecurityEndpoint) -> None:
    db, now = endpoint.runtime.db, endpoint.clock()
    sup = create_user(db, "sup", role="supervisor", teams=["red", "blue"], password=PASSWORD, now=now)
    sam = create_user(db, "sam", role="supervisor", teams=["red"], password=PASSWORD, now=now)
    assert sup.user_id is not None
    assert sam.user_id is not None
    token = issue_user_token(db, sup.user_id, now=now)
    session_id, _csrf = start_session(db, sam, now=now)
    by_token, token_closed, _ = _open_stream(endpoint, headers={"Authorization": f"Bearer {token}"})
    by_session, session_closed, _ = _open_stream(
        endpoint, path="/console/alerts-stream", cookies={"dw_session": session_id}
    )

    update_user(db, sup.user_id, role="supervisor", teams=["red"], disabled=False, now=now)  # loses blue
    update_user(db, sam.user_id, role="supervisor", teams=["red"], disabled=True, now=now)

    assert token_closed.wait(CLOSE_WITHIN_S), "the stream kept a team its user no longer supervises"
    assert session_closed.wait(CLOSE_WITHIN_S), "the stream stayed open for a disabled user"
    by_token.join(5)
    by_session.join(5)
