"""The server's settings as an operator gives them: `--forwarded-allow-ips` decides whose X-Forwarded-For the
login throttle believes, the ingest gate's environment variables are validated settings, and `create-user --role
admin` from the CLI raises the same governance alert as granting admin in the console. Real server processes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from central.settings import AGENT_BODY_TIMEOUT_ENV, INGEST_PER_DEVICE_ENV, ServerSettings
from central.store import admin_changes
from tests.support.endpoint import EndpointProcess

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery 42"


def _cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent_app", *args], input=stdin, capture_output=True, text=True, timeout=120
    )


def _login(url: str, name: str, password: str, *, forwarded_for: str) -> int:
    with httpx.Client(base_url=url, timeout=20, follow_redirects=False) as client:
        form = client.get("/console/login")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert csrf is not None, form.text[:300]
        answer = client.post(
            "/console/login",
            data={"csrf_token": csrf.group(1), "username": name, "password": password},
            headers={"X-Forwarded-For": forwarded_for},
        )
        return answer.status_code


def _lock_out_and_try_from_elsewhere(tmp_path: Path, *, trusted: str) -> int:
    """Fail `ada`'s login from one forwarded address until throttled, then sign in right from another one."""
    endpoint = EndpointProcess(tmp_path / "server", extra_args=["--forwarded-allow-ips", trusted])
    made = _cli(
        "admin",
        "create-user",
        "--data-dir",
        str(endpoint.settings.data_dir),
        "ada",
        "--role",
        "auditor",
        "--password-stdin",
        stdin=PASSWORD,
    )
    assert made.returncode == 0, made.stderr
    endpoint.start()
    try:
        statuses: list[int] = []
        # Fail until the throttle answers 429 (under load a delay can pass between two slow tries; it doubles).
        while 429 not in statuses and len(statuses) < 20:
            statuses.append(_login(endpoint.url, "ada", "wrong password", forwarded_for="203.0.113.7"))
        assert statuses[0] == 401
        assert statuses[-1] == 429, statuses
        return _login(endpoint.url, "ada", PASSWORD, forwarded_for="198.51.100.9")
    finally:
        endpoint.stop()


def test_behind_a_trusted_proxy_an_attacker_does_not_lock_out_the_real_user(tmp_path: Path) -> None:
    assert _lock_out_and_try_from_elsewhere(tmp_path, trusted="127.0.0.1") == 303


def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(tmp_path: Path) -> None:
    # The proxy is said to be 192.0.2.1; the test's own loopback requests are not believed about their client,
    # so every attempt counts against 127.0.0.1 and the real user waits like the attacker.
    assert _lock_out_and_try_from_elsewhere(tmp_path, trusted="192.0.2.1") == 429


def test_ingest_gate_environment_is_validated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(AGENT_BODY_TIMEOUT_ENV, "2.5")
    monkeypatch.setenv(INGEST_PER_DEVICE_ENV, "3")
    settings = ServerSettings(data_dir=tmp_path)
    assert (settings.agent_body_timeout_s, settings.ingest_per_device) == (2.5, 3)
    assert ServerSettings.from_json(settings.to_json()) == settings  # what worker processes receive

    monkeypatch.setenv(AGENT_BODY_TIMEOUT_ENV, "soon")
    with pytest.raises(ValueError, match=AGENT_BODY_TIMEOUT_ENV):
        ServerSettings(data_dir=tmp_path)
    monkeypatch.setenv(AGENT_BODY_TIMEOUT_ENV, "nan")
    with pytest.raises(ValueError, match="agent body timeout"):
        ServerSettings(data_dir=tmp_path)
    monkeypatch.delenv(AGENT_BODY_TIMEOUT_ENV)
    monkeypatch.setenv(INGEST_PER_DEVICE_ENV, "0")
    with pytest.raises(ValueError, match=INGEST_PER_DEVICE_ENV):
        ServerSettings(data_dir=tmp_path)
    monkeypatch.delenv(INGEST_PER_DEVICE_ENV)
    with pytest.raises(ValueError, match="port"):
        ServerSettings(data_dir=tmp_path, port=99_999_999)

    # The server refuses to start with a bad value, naming it, instead of serving with a default.
    monkeypatch.setenv(INGEST_PER_DEVICE_ENV, "-1")
    started = _cli("server", "--data-dir", str(tmp_path / "server"), "--port", "0")
    assert started.returncode != 0
    assert INGEST_PER_DEVICE_ENV in started.stderr


def test_cli_granting_admin_raises_the_governance_alert(tmp_path: Path) -> None:
    data_dir = tmp_path / "server"
    first = _cli(
        "admin",
        "create-user",
        "--data-dir",
        str(data_dir),
        "root-admin",
        "--role",
        "admin",
        "--password-stdin",
        stdin=PASSWORD,
    )
    assert first.returncode == 0, first.stderr
    second = _cli(
        "admin",
        "create-user",
        "--data-dir",
        str(data_dir),
        "mallory",
        "--role",
        "admin",
        "--password-stdin",
        stdin=PASSWORD,
    )
    assert second.returncode == 0, second.stderr

    from central.runtime import open_store
    from central.store import tables

    db = open_store(ServerSettings(data_dir=data_dir))
    try:
        with db.read() as conn:
            rows = conn.execute(
                tables.alerts.select().where(tables.alerts.c.kind == admin_changes.ALERT_ADMIN_GRANTED)
            ).all()
    finally:
        db.dispose()
    granted = sorted((row.data["user"], row.data["by"]) for row in rows)
    assert granted == [("mallory", "cli"), ("root-admin", "cli")]
