"""Passwords and tokens in the console and the CLI: a user changes their password (other sessions end), an admin
resets one (every session of that user ends; another admin's only from the host under the two-person rule),
personal tokens are issued with an expiry, listed and revoked; everything lands in the audit log."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from central.auth.users import list_user_tokens, list_users
from central.store import tokens
from central.store.console_config import ConsoleConfig, save_config
from tests.integration.central.console.live import PASSWORD, Console, csrf_of

pytestmark = pytest.mark.integration

NEW_PASSWORD = "a-new-long-passphrase"


def _login(console: Console, name: str, password: str) -> httpx.Response:
    client = console.client()
    token = csrf_of(client.get("/console/login").text)
    return client.post("/console/login", data={"username": name, "password": password, "csrf_token": token})


def _user_id(console: Console, name: str) -> int:
    return next(u.id for u in list_users(console.runtime.db) if u.name == name)


def _message(answer: httpx.Response, key: str) -> str:
    assert answer.status_code == 303, answer.text[:300]
    return str(httpx.URL(answer.headers["location"]).params.get(key, ""))


def test_a_user_changes_their_password_and_their_other_sessions_end(console: Console) -> None:
    console.user("sup", "supervisor", ["team-a"])
    here = console.login("sup")
    elsewhere = console.login("sup")
    csrf = csrf_of(here.get("/console/account").text)

    wrong = here.post(
        "/console/account/password",
        data={"csrf_token": csrf, "current": "not-my-password", "new": NEW_PASSWORD, "confirm": NEW_PASSWORD},
    )
    mismatch = here.post(
        "/console/account/password",
        data={"csrf_token": csrf, "current": PASSWORD, "new": NEW_PASSWORD, "confirm": NEW_PASSWORD + "x"},
    )
    short = here.post(
        "/console/account/password", data={"csrf_token": csrf, "current": PASSWORD, "new": "short", "confirm": "short"}
    )
    changed = here.post(
        "/console/account/password",
        data={"csrf_token": csrf, "current": PASSWORD, "new": NEW_PASSWORD, "confirm": NEW_PASSWORD},
    )

    assert "current password" in _message(wrong, "err")
    assert "differ" in _message(mismatch, "err")
    assert "10 characters" in _message(short, "err")
    assert "Password changed" in _message(changed, "msg")
    assert here.get("/console/alerts").status_code == 200
    assert elsewhere.get("/console/alerts").status_code == 303  # signed out
    assert _login(console, "sup", PASSWORD).status_code == 401
    assert _login(console, "sup", NEW_PASSWORD).status_code == 303


def test_an_admin_resets_a_password_and_that_users_sessions_end(console: Console) -> None:
    console.user("ada", "admin")
    console.user("sup", "supervisor", ["team-a"])
    admin = console.login("ada")
    victim_session = console.login("sup")
    csrf = csrf_of(admin.get("/console/teams").text)
    sup_id = _user_id(console, "sup")

    generated = admin.post(f"/console/users/{sup_id}/password", data={"csrf_token": csrf})
    assert generated.status_code == 200
    assert generated.headers["cache-control"] == "no-store"
    new_password = generated.text.split('<pre id="token">', 1)[1].split("</pre>", 1)[0]
    chosen = admin.post(f"/console/users/{sup_id}/password", data={"csrf_token": csrf, "password": NEW_PASSWORD})

    assert "reset" in _message(chosen, "msg")
    assert victim_session.get("/console/alerts").status_code == 303
    assert _login(console, "sup", new_password).status_code == 401  # replaced by the chosen one
    assert _login(console, "sup", NEW_PASSWORD).status_code == 303
    assert admin.get("/console/audit").text.count("user.password_reset") == 2


def test_a_supervisor_cannot_reset_passwords(console: Console) -> None:
    console.user("sup", "supervisor", ["team-a"])
    console.user("sam", "supervisor", ["team-a"])
    client = console.login("sup")
    csrf = csrf_of(client.get("/console/account").text)

    answer = client.post(
        f"/console/users/{_user_id(console, 'sam')}/password", data={"csrf_token": csrf, "password": NEW_PASSWORD}
    )

    assert answer.status_code == 403
    assert _login(console, "sam", PASSWORD).status_code == 303


def test_under_the_two_person_rule_one_admin_cannot_reset_another_admins_password(console: Console) -> None:
    console.user("ada", "admin")
    console.user("bob", "admin")
    save_config(console.runtime.db, ConsoleConfig(two_person_rule=True), now=console.runtime.clock())
    admin = console.login("ada")
    csrf = csrf_of(admin.get("/console/teams").text)

    answer = admin.post(
        f"/console/users/{_user_id(console, 'bob')}/password", data={"csrf_token": csrf, "password": NEW_PASSWORD}
    )

    assert "reset-password" in _message(answer, "err")
    assert _login(console, "bob", PASSWORD).status_code == 303


def test_personal_tokens_are_issued_with_an_expiry_listed_and_revoked(console: Console) -> None:
    console.user("sup", "supervisor", ["team-a"])
    client = console.login("sup")
    csrf = csrf_of(client.get("/console/account").text)

    issued = client.post("/console/tokens", data={"csrf_token": csrf, "days": "7"})
    too_long = client.post("/console/tokens", data={"csrf_token": csrf, "days": "100000"})
    token = issued.text.split('<pre id="token">', 1)[1].split("</pre>", 1)[0]
    listed = list_user_tokens(console.runtime.db)
    page = client.get("/console/account").text
    revoked = client.post(f"/console/tokens/{listed[0].token_id}/revoke", data={"csrf_token": csrf})

    assert issued.headers["cache-control"] == "no-store"
    assert "days" in _message(too_long, "err")
    assert len(listed) == 1
    assert listed[0].expires_at is not None
    assert (listed[0].expires_at - listed[0].created_at).days == 7
    assert listed[0].token_id in page
    assert token not in page
    assert "Revoked" not in _message(revoked, "err")
    stream = httpx.get(f"{console.url}/v1/alerts/stream", headers={"Authorization": f"Bearer {token}"})
    assert stream.status_code == 401
    audit = console.login("sup").get("/console/audit")
    assert audit.status_code == 200


def _cli(console: Console, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    where = ["--data-dir", str(console.settings.data_dir)]
    if console.settings.db_url:
        where += ["--db", console.settings.db_url]
    return subprocess.run(
        [sys.executable, "-m", "agent_app", "admin", *args, *where],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        check=False,
    )


def test_the_cli_lists_and_revokes_tokens_and_resets_passwords(console: Console) -> None:
    console.user("sup", "supervisor", ["team-a"])
    made = _cli(console, "api-token", "nightly", "--role", "auditor", "--ttl", "30d")
    assert made.returncode == 0, made.stderr
    api = made.stdout.strip()
    auth = {"Authorization": f"Bearer {api}"}
    assert httpx.get(f"{console.url}/v1/devices", headers=auth).status_code == 200
    client = console.login("sup")
    csrf = csrf_of(client.get("/console/account").text)
    assert client.post("/console/tokens", data={"csrf_token": csrf, "days": "7"}).status_code == 200

    listing = _cli(console, "list-tokens")
    api_id = next(t.id for t in tokens.list_api_tokens(console.runtime.db) if t.name == "nightly")
    personal_id = list_user_tokens(console.runtime.db)[0].token_id
    revoke_api = _cli(console, "revoke-api-token", str(api_id))
    again = _cli(console, "revoke-api-token", str(api_id))
    revoke_personal = _cli(console, "revoke-user-token", personal_id)
    reset = _cli(console, "reset-password", "sup", "--password-stdin", stdin=NEW_PASSWORD + "\n")
    unknown = _cli(console, "reset-password", "nobody")

    assert listing.returncode == 0, listing.stderr
    assert f"api\t{api_id}\tnightly\tauditor\tactive" in listing.stdout
    assert f"personal\t{personal_id}\tsup\t-\tactive" in listing.stdout
    assert revoke_api.returncode == 0, revoke_api.stderr
    assert again.returncode == 1
    assert revoke_personal.returncode == 0, revoke_personal.stderr
    assert reset.returncode == 0, reset.stderr
    assert unknown.returncode == 1
    assert "nobody" in unknown.stderr
    assert httpx.get(f"{console.url}/v1/devices", headers=auth).status_code == 401
    assert client.get("/console/alerts").status_code == 303  # the reset ended the session
    assert _login(console, "sup", NEW_PASSWORD).status_code == 303
    console.user("ada", "admin")
    audit = console.login("ada").get("/console/audit").text
    for action in ("api-token.create", "api-token.revoke", "token.issue", "token.revoke", "user.password_reset"):
        assert action in audit, action
