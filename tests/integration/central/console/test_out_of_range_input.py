"""Out-of-range input never gets a 5xx: far-off event and heartbeat times, 10^30 ids and cursors, reports over
years 0001-9999, team names outside Latin-1, enrolment tokens valid for 10^20 hours, wrong-typed form fields."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest

from central import commands
from central.simulate import batch_json
from tests.integration.central.console.live import Console, csrf_of

pytestmark = pytest.mark.integration

HUGE = 10**30


def _not_5xx(answer: httpx.Response) -> None:
    assert answer.status_code < 500, (answer.request.url, answer.status_code, answer.text[:500])


@pytest.mark.parametrize("ts", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_event_and_heartbeat_times_before_year_1_or_after_9999_in_utc_are_422(console: Console, ts: str) -> None:
    agent, auth = console.enroll(team="team-a")
    event = json.loads(batch_json(agent.batch(agent.events(1))))["events"][0]

    posted = httpx.post(
        f"{console.url}/v1/events", json={"device_id": agent.device_id, "events": [event | {"ts": ts}]}, headers=auth
    )
    beat = httpx.post(f"{console.url}/v1/heartbeat", json={"ts": ts}, headers=auth)

    assert posted.status_code == 422, posted.text
    assert "ts" in posted.json()["detail"]
    assert beat.status_code == 422, beat.text
    assert "ts" in beat.json()["detail"]


def test_ids_and_cursors_beyond_64_bits_are_a_console_page_not_a_500(console: Console) -> None:
    console.user("ada", "admin")
    client = console.login("ada")
    csrf = csrf_of(client.get("/console/settings").text)

    for answer in (
        client.get(f"/console/alerts/{HUGE}"),
        client.get(f"/console/audit?before={HUGE}"),
        client.post(f"/console/alerts/{HUGE}/ack", data={"csrf_token": csrf}),
        client.post(f"/console/rules/{HUGE}/delete", data={"csrf_token": csrf}),
        client.post(f"/console/users/{HUGE}", data={"csrf_token": csrf, "role": "admin"}),
    ):
        _not_5xx(answer)
        assert answer.status_code in (404, 422), answer.text[:300]
        assert answer.headers["content-type"].startswith("text/html")


def test_reports_over_years_0001_to_9999_are_refused_with_a_message(console: Console) -> None:
    console.user("ada", "admin")
    client = console.login("ada")

    for query in (
        "start=0001-01-01&end=9999-12-31",
        "start=9999-12-31&end=9999-12-31",
        "end=0001-01-01",
        "start=0001-01-01&end=0001-01-01",
    ):
        for path in ("/console/reports", "/console/reports.csv"):
            answer = client.get(f"{path}?{query}")
            _not_5xx(answer)
    answer = client.get("/console/reports?start=0001-01-01&end=9999-12-31")
    assert answer.status_code == 422
    assert "between" in answer.text


def test_report_csv_for_a_team_name_outside_latin_1_downloads(console: Console) -> None:
    console.user("ada", "admin")
    commands.issue_enroll_token(console.settings, "Équipe 東京", timedelta(hours=1))
    client = console.login("ada")

    answer = client.get("/console/reports.csv", params={"team": "Équipe 東京"})

    assert answer.status_code == 200, answer.text
    disposition = answer.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="deskwarden-report-')
    assert "filename*=UTF-8''deskwarden-report-%C3%89quipe%20%E6%9D%B1%E4%BA%AC-" in disposition
    assert "Équipe 東京" in answer.text


def test_enrolment_token_for_10_to_the_20_hours_is_refused_with_a_message(console: Console) -> None:
    console.user("ada", "admin")
    client = console.login("ada")
    csrf = csrf_of(client.get("/console/teams").text)

    answer = client.post("/console/enroll-tokens", data={"csrf_token": csrf, "team": "team-a", "hours": str(10**20)})

    assert answer.status_code == 303
    assert "err=" in answer.headers["location"]
    assert "hours" in httpx.URL(answer.headers["location"]).params["err"]


def test_wrong_typed_form_fields_show_a_console_page_not_json(console: Console) -> None:
    console.user("ada", "admin")
    client = console.login("ada")
    csrf = csrf_of(client.get("/console/settings").text)

    answer = client.post("/console/settings", data={"csrf_token": csrf, "smtp_port": "twenty-five"})

    assert answer.status_code == 422
    assert answer.headers["content-type"].startswith("text/html")
    assert "smtp_port" in answer.text
    assert '{"detail"' not in answer.text


@pytest.mark.parametrize(
    "path", ["/console/alerts/%E2%80%AE", "/console/alerts/%0D%0ASet-Cookie:%20x=1", "/console/audit?before=%0d%0a"]
)
def test_odd_paths_before_login_redirect_with_a_safe_location(console: Console, path: str) -> None:
    answer = httpx.get(console.url + path, follow_redirects=False)

    assert answer.status_code == 303, answer.text[:300]
    location = answer.headers["location"]
    assert location.startswith("/console/login?next=")
    assert location.isascii()
    assert "\r" not in location
    assert "\n" not in location
    assert "x=1" not in answer.headers.get("set-cookie", "")


def test_logging_in_with_an_odd_next_lands_in_the_console(console: Console) -> None:
    console.user("ada", "admin")
    client = console.client()
    token = csrf_of(client.get("/console/login").text)

    answer = client.post(
        "/console/login",
        data={
            "username": "ada",
            "password": "correct-horse-battery",
            "csrf_token": token,
            "next": "/console/\u202e\r\nX: 1",
        },
    )

    assert answer.status_code == 303
    assert answer.headers["location"].isascii()
    assert answer.headers["location"].startswith("/console/")
