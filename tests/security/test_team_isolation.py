"""Access control on every route of the endpoint: anonymous callers get nothing, and a supervisor of one team
cannot read or change another team's data through any route. Routes come from app.routes, so new ones are covered.
"""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from central.auth.sessions import start_session
from central.auth.users import create_user, issue_user_token
from policy_client.schema import EventKind, Severity
from tests.security.conftest import SecurityEndpoint, TeamDevice
from tests.security.routes import RouteInfo, enumerate_routes

PUBLIC = {
    "GET /openapi.json",
    "GET /docs",
    "GET /docs/oauth2-redirect",
    "GET /redoc",
    "GET /healthz",
    "GET /",
    "GET /console/login",
    "POST /console/login",
}
PUBLIC_MOUNTS = {"/console/static"}
AGENT = {"POST /v1/enroll", "GET /v1/policy", "POST /v1/events", "POST /v1/heartbeat", "GET /v1/commands"}
"""Routes for enrolled devices; their credential rules are in test_credentials.py."""
SESSION_ENDING = {"POST /console/logout"}
DENIED = {400, 401, 403, 404, 405, 413, 415, 422}
STREAM_READ_S = 1.0


@pytest.fixture
def two_teams(security_endpoint: SecurityEndpoint) -> tuple[TeamDevice, TeamDevice]:
    return security_endpoint.enroll("red", "RED-a41c"), security_endpoint.enroll("blue", "BLUE-d93e")


def _blue_alert_ids(endpoint: SecurityEndpoint, admin: dict[str, str], blue: TeamDevice) -> dict[int, str]:
    answer = endpoint.client.get("/v1/alerts", params={"device_id": blue.agent.device_id}, headers=admin)
    assert answer.status_code == 200, answer.text
    return {int(a["id"]): str(a["status"]) for a in answer.json()}


BLUE_QUARANTINE_ID = "20300101T090000Z-0123456789ab"


def _quarantine_on(endpoint: SecurityEndpoint, device: TeamDevice, quarantine_id: str) -> None:
    """A quarantined download on `device`, so the quarantine routes have something real to refuse."""
    event = device.agent.next_event(
        kind=EventKind.download_quarantined,
        severity=Severity.high,
        action="quarantined",
        data={"name": f"{device.marker}.csv", "size_bytes": 10, "findings": [], "quarantine_id": quarantine_id},
    )
    posted = endpoint.client.post(
        "/v1/events", content=device.agent.batch([event]).model_dump_json(), headers=device.auth
    )
    assert posted.status_code == 200, posted.text


def _fill(route: RouteInfo, values: dict[str, str]) -> str:
    unknown = [p for p in route.params if p not in values]
    assert not unknown, f"{route.label}: path parameters {unknown} are unknown to this test; add values for them"
    path = route.path
    for name in route.params:
        path = path.replace("{" + name + "}", values[name]).replace("{" + name + ":path}", values[name])
    return path


def _read(client: httpx.Client, route: RouteInfo, path: str, **kwargs: object) -> tuple[int, str, str]:
    """(status, body, Location); streams are read for STREAM_READ_S seconds at most."""
    if not route.sse:
        answer = client.request(route.method, path, **kwargs)  # type: ignore[arg-type]
        return answer.status_code, answer.text, answer.headers.get("location", "")
    body = ""
    try:
        with client.stream(route.method, path, timeout=httpx.Timeout(STREAM_READ_S), **kwargs) as answer:  # type: ignore[arg-type]
            status, location = answer.status_code, answer.headers.get("location", "")
            for chunk in answer.iter_text():
                body += chunk
    except httpx.ReadTimeout:
        pass
    return status, body, location


def test_every_route_is_classified_and_refuses_anonymous_callers(
    security_endpoint: SecurityEndpoint, two_teams: tuple[TeamDevice, TeamDevice]
) -> None:
    routes, mounts = enumerate_routes(security_endpoint.app)
    assert set(mounts) <= PUBLIC_MOUNTS, f"unreviewed mounts: {set(mounts) - PUBLIC_MOUNTS}"
    assert len(routes) >= 8
    values = {p: "1" for r in routes for p in r.params} | {"decision": "approve"}
    leaks: list[str] = []
    _, blue = two_teams
    anonymous = httpx.Client(base_url=security_endpoint.url, timeout=10, follow_redirects=False)
    with anonymous:
        for route in routes:
            if route.label in PUBLIC:
                continue
            status, body, location = _read(anonymous, route, _fill(route, values))
            # A redirect is fine when it carries nothing: the target is itself one of the routes checked here.
            to_login = status in (302, 303, 307) and location.startswith("/console") and not body
            if not (status in DENIED or to_login) or blue.marker in body:
                leaks.append(f"{route.label} -> {status} {location} {body[:120]!r}")
    assert not leaks, "anonymous requests got through:\n" + "\n".join(leaks)


def test_a_supervisor_cannot_reach_another_teams_data_through_any_route(
    security_endpoint: SecurityEndpoint, two_teams: tuple[TeamDevice, TeamDevice]
) -> None:
    red, blue = two_teams
    endpoint = security_endpoint
    db, now = endpoint.runtime.db, endpoint.clock()
    supervisor = create_user(db, "sup-red", role="supervisor", teams=["red"], password="pw-red-123456!", now=now)
    other = create_user(db, "sup-blue", role="supervisor", teams=["blue"], password="pw-blue-123456!", now=now)
    assert supervisor.user_id is not None
    assert other.user_id is not None
    session_id, csrf = start_session(db, supervisor, now=now)
    personal = issue_user_token(db, supervisor.user_id, now=now)
    admin = {"Authorization": f"Bearer {endpoint.api_token()}"}
    _quarantine_on(endpoint, blue, BLUE_QUARANTINE_ID)
    blue_alerts = _blue_alert_ids(endpoint, admin, blue)
    assert blue_alerts, "the blue device should have raised an alert (agent.tamper)"
    values = {
        "alert_id": str(next(iter(blue_alerts))),
        "user_id": str(other.user_id),
        "device_id": blue.agent.device_id,
        "team": "blue",
        "request_id": "1",
        "draft_id": "1",
        "change_id": "1",
        "rule_id": "1",
        "decision": "approve",
        "token_id": "1",
        "delivery_id": "1",
        "quarantine_id": BLUE_QUARANTINE_ID,
    }
    query = {"team": "blue", "device_id": blue.agent.device_id}
    routes, _ = enumerate_routes(endpoint.app)
    checked, leaks = 0, []
    secrets_of_blue = (blue.marker, blue.agent.device_id)
    with httpx.Client(
        base_url=endpoint.url, timeout=10, follow_redirects=False, cookies={"dw_session": session_id}
    ) as console:
        home = console.get("/console/alerts")
        assert home.status_code == 200, f"the supervisor's session should open the console: {home.status_code}"
        own = console.get("/console/devices")
        assert red.marker in own.text, "the supervisor should see their own team (else this test proves nothing)"
        ordered = sorted(routes, key=lambda r: r.method != "GET")  # reads first, then attempted changes
        for route in ordered:
            if route.label in PUBLIC | AGENT | SESSION_ENDING:
                continue
            path = _fill(route, values)
            for auth in ({}, {"Authorization": f"Bearer {personal}"}):
                if route.method == "GET":
                    status, body, _ = _read(console, route, path, params=query, headers=auth)
                else:
                    form = {"csrf_token": csrf, "note": "x", "team": "blue", "teams": "blue", "role": "admin"}
                    status, body, _ = _read(console, route, path, data=form, headers=auth)
                checked += 1
                shown = [s for s in secrets_of_blue if s in body]
                if shown:
                    leaks.append(f"{route.label} (status {status}) shows {shown}")
    assert checked >= 10
    assert not leaks, "supervisor of red saw blue's data:\n" + "\n".join(leaks)
    assert _blue_alert_ids(endpoint, admin, blue) == blue_alerts, "supervisor of red changed blue's alerts"
    after = endpoint.client.get("/v1/devices", params={"team": "blue"}, headers=admin).json()
    assert [d["device_id"] for d in after] == [blue.agent.device_id]
    assert endpoint.clock() - now < timedelta(minutes=1)
