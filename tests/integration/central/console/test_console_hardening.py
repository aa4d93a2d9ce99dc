"""Console hardening over HTTP: security headers, optional API docs, http(s)-only links, validated names and
settings."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from central import commands
from central.alerting.rules import Playbook, RuleSpec, save_rule
from central.settings import ServerSettings
from central.store.console_config import load_config
from tests.integration.central.console.live import Console, csrf_of, serve_console

pytestmark = pytest.mark.integration


def _err(answer: httpx.Response) -> str:
    assert answer.status_code == 303, answer.text[:300]
    return str(httpx.URL(answer.headers["location"]).params.get("err", ""))


def test_every_answer_carries_csp_frame_and_nosniff_headers(console: Console) -> None:
    console.user("ada", "admin")
    client = console.login("ada")

    for answer in (
        client.get("/console/alerts"),
        client.get("/console/login"),
        client.get("/console/static/console.css"),
        httpx.get(f"{console.url}/v1/policy"),
        httpx.get(f"{console.url}/healthz"),
    ):
        csp = answer.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp
        assert "script-src 'self'" in csp
        assert "'unsafe-inline'" not in csp.split("script-src", 1)[1].split(";", 1)[0]
        assert "object-src 'none'" in csp
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["x-content-type-options"] == "nosniff"


def test_api_docs_and_openapi_can_be_switched_off(tmp_path: Path) -> None:
    settings = ServerSettings(data_dir=tmp_path / "server", port=0, api_docs=False)
    with serve_console(settings) as live:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert httpx.get(f"{live.url}{path}").status_code == 404, path
        assert httpx.get(f"{live.url}/healthz").status_code == 200


def test_api_docs_setting_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DESKWARDEN_API_DOCS", "off")
    assert ServerSettings(data_dir=tmp_path).api_docs is False
    monkeypatch.setenv("DESKWARDEN_API_DOCS", "1")
    assert ServerSettings(data_dir=tmp_path).api_docs is True
    roundtrip = ServerSettings.from_json(replace(ServerSettings(data_dir=tmp_path), api_docs=False).to_json())
    assert roundtrip.api_docs is False


@pytest.mark.parametrize(
    "link",
    [
        "javascript:alert(document.cookie)",
        " JavaScript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "//evil.example/x",
        "/relative",
        "https://",
        "vbscript:msgbox(1)",
        "https://ok.example/a b",
    ],
)
def test_a_rule_with_a_non_http_playbook_link_is_refused(console: Console, link: str) -> None:
    console.user("ada", "admin")
    client = console.login("ada")
    csrf = csrf_of(client.get("/console/rules").text)
    spec = RuleSpec(name="r", playbook=Playbook(steps=["call"], link=link)).model_dump_json()

    assert "playbook.link" in _err(client.post("/console/rules", data={"csrf_token": csrf, "spec": spec}))
    assert "javascript" not in client.get("/console/rules").text.lower()


def test_a_stored_javascript_playbook_link_is_not_rendered_as_a_link(console: Console) -> None:
    console.user("sup", "supervisor", ["team-a"])
    with console.runtime.db.write() as conn:
        save_rule(
            conn,
            RuleSpec(name="old", playbook=Playbook(steps=["call"], link="javascript:alert(1)")),
            now=console.runtime.clock(),
        )
    agent, headers = console.enroll(team="team-a")
    console.raise_tamper(agent, headers)
    console.state.alerting.tick()
    client = console.login("sup")

    detail = client.get("/console/alerts/1")

    assert detail.status_code == 200
    assert "call" in detail.text
    assert "javascript:" not in detail.text
    assert "Full procedure" not in detail.text


def test_an_https_playbook_link_is_kept(console: Console) -> None:
    console.user("ada", "admin")
    client = console.login("ada")
    csrf = csrf_of(client.get("/console/rules").text)
    spec = RuleSpec(name="r", playbook=Playbook(link="https://wiki.example/tamper")).model_dump_json()

    answer = client.post("/console/rules", data={"csrf_token": csrf, "spec": spec})

    assert answer.status_code == 303
    assert "msg=" in answer.headers["location"]


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("public_url", "javascript:alert(1)", "public URL"),
        ("public_url", "ftp://deskwarden.example", "public URL"),
        ("smtp_port", "99999999", "SMTP port"),
        ("smtp_port", "0", "SMTP port"),
        ("default_sla_minutes", "-5", "SLA"),
        ("offline_alert_minutes", str(10**12), "offline"),
        ("smtp_host", "mail.example\r\nRCPT TO:<x@evil>", "SMTP host"),
    ],
)
def test_settings_out_of_range_or_unsafe_are_refused_and_not_saved(
    console: Console, field: str, value: str, words: str
) -> None:
    console.user("ada", "admin")
    client = console.login("ada")
    csrf = csrf_of(client.get("/console/settings").text)
    before = load_config(console.runtime.db)

    err = _err(client.post("/console/settings", data={"csrf_token": csrf, field: value}))

    assert words in err
    assert load_config(console.runtime.db) == before


def test_valid_settings_are_saved(console: Console) -> None:
    console.user("ada", "admin")
    client = console.login("ada")
    csrf = csrf_of(client.get("/console/settings").text)

    answer = client.post(
        "/console/settings",
        data={"csrf_token": csrf, "public_url": "https://deskwarden.example", "smtp_port": "587"},
    )

    assert answer.status_code == 303
    assert "msg=" in answer.headers["location"]
    saved = load_config(console.runtime.db)
    assert (saved.public_url, saved.smtp_port) == ("https://deskwarden.example", 587)


@pytest.mark.parametrize(
    "name", ["x" * 5000, "line\nbreak", "<b>bold</b>", "=HYPERLINK(1)", "-team", "a\u202eb", " ", "two  spaces"]
)
def test_bad_team_and_user_names_are_refused_in_the_console(console: Console, name: str) -> None:
    console.user("ada", "admin")
    client = console.login("ada")
    csrf = csrf_of(client.get("/console/teams").text)

    token = client.post("/console/enroll-tokens", data={"csrf_token": csrf, "team": name, "hours": "1"})
    user = client.post(
        "/console/users", data={"csrf_token": csrf, "name": name, "role": "auditor", "password": "long-enough-pw"}
    )
    member = client.post(
        "/console/users",
        data={"csrf_token": csrf, "name": "sam", "role": "supervisor", "teams": name, "password": "long-enough-pw"},
    )

    assert "team" in _err(token) or "must not be empty" in _err(token)
    assert "user name" in _err(user)
    assert "team" in _err(member)
    page = client.get("/console/teams").text
    assert "HYPERLINK" not in page
    assert "<b>bold" not in page


@pytest.mark.parametrize("name", ["Équipe 東京", "collections-2", "first.last@example.com", "Ada Lovelace"])
def test_ordinary_names_are_accepted(console: Console, name: str) -> None:
    console.user("ada", "admin")
    client = console.login("ada")
    csrf = csrf_of(client.get("/console/teams").text)

    user = client.post(
        "/console/users",
        data={"csrf_token": csrf, "name": name, "role": "supervisor", "teams": name, "password": "long-enough-pw"},
    )

    assert user.status_code == 303
    assert "msg=" in user.headers["location"]


def test_the_cli_refuses_bad_names_too(console: Console) -> None:
    with pytest.raises(ValueError, match="user name"):
        commands.create_user(console.settings, "a\nb", role="auditor", teams=[], password="long-enough-pw")
    with pytest.raises(ValueError, match="team name"):
        commands.create_user(console.settings, "ok", role="supervisor", teams=["x" * 500], password="long-enough-pw")
    with pytest.raises(ValueError, match="team name"):
        commands.issue_enroll_token(console.settings, "=cmd|' /C calc'!A0", timedelta(hours=1))


@pytest.mark.parametrize(
    ("kind", "team", "words"),
    [
        ("x" * 500, "", "kind"),
        ("clipboard sensitive<b>", "", "kind"),
        ("", "x" * 5000, "team name"),
        ("", "<b>", "team name"),
    ],
)
def test_retention_rules_take_only_event_kinds_and_team_names(
    console: Console, kind: str, team: str, words: str
) -> None:
    console.user("ada", "admin")
    client = console.login("ada")
    csrf = csrf_of(client.get("/console/settings").text)

    answer = client.post(
        "/console/retention", data={"csrf_token": csrf, "scope": "events", "days": "30", "kind": kind, "team": team}
    )

    assert words in _err(answer)


def test_a_retention_rule_for_a_kind_and_team_is_saved(console: Console) -> None:
    console.user("ada", "admin")
    client = console.login("ada")
    csrf = csrf_of(client.get("/console/settings").text)

    answer = client.post(
        "/console/retention",
        data={"csrf_token": csrf, "scope": "events", "days": "30", "kind": "clipboard.sensitive", "team": "team-a"},
    )

    assert answer.status_code == 303
    assert "msg=" in answer.headers["location"]
