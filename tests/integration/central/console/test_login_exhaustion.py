"""Pre-authentication exhaustion of the console, against a real `deskwarden server` process: oversized and
many-field forms are refused before parsing, a trickled form times out, concurrent bad logins cannot pile up
argon2's 64 MiB each, and one attacker cannot lock a user out from elsewhere (behind the proxy too)."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from central import commands
from tests.integration.central.console.live import PASSWORD, Console, csrf_of
from tests.support.endpoint import EndpointProcess

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


def _peak_rss(pid: int) -> int:
    """The process's high-water resident set (VmHWM) in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    assert found, status
    return int(found.group(1)) * 1024


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EndpointProcess]:
    endpoint = EndpointProcess(tmp_path / "server")
    commands.create_user(endpoint.settings, "ada", role="admin", teams=[], password=PASSWORD)
    endpoint.start()
    try:
        yield endpoint
    finally:
        endpoint.stop()


def _login_form(client: httpx.Client) -> str:
    return csrf_of(client.get("/console/login").text)


def test_huge_and_many_field_forms_are_refused_before_parsing(server: EndpointProcess) -> None:
    before = _peak_rss(server.pid)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        token = _login_form(client)
        field = "a" * MIB
        for _ in range(20):
            big = client.post(
                "/console/login",
                content=("csrf_token=" + token + "&username=ada&password=" + field).encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert big.status_code == 413, big.text[:200]

        def chunked() -> Iterator[bytes]:  # no Content-Length: the cap is counted as the body arrives
            yield b"username=ada&password="
            for _ in range(64):
                yield b"b" * 65536

        streamed = client.post(
            "/console/login", content=chunked(), headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert streamed.status_code == 413

    assert _peak_rss(server.pid) - before < 100 * MIB


def test_sixty_concurrent_bad_logins_do_not_stack_argon2_memory(server: EndpointProcess) -> None:
    before = _peak_rss(server.pid)
    start = threading.Barrier(60)
    codes: list[int] = []
    lock = threading.Lock()

    def attempt(i: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            token = _login_form(client)
            start.wait(30)
            answer = client.post(
                "/console/login",
                data={"username": f"nobody{i}", "password": "wrong-password-123", "csrf_token": token},
                headers={"X-Forwarded-For": f"192.0.2.{i + 1}"},
            )
            with lock:
                codes.append(answer.status_code)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)

    assert len(codes) == 60
    assert set(codes) <= {401, 503}, codes
    assert 401 in codes
    grown = _peak_rss(server.pid) - before
    assert grown < (4 + 2) * 64 * MIB + 100 * MIB, f"peak RSS grew by {grown // MIB} MiB"


def test_an_attacker_elsewhere_cannot_lock_the_user_out_through_the_proxy(server: EndpointProcess) -> None:
    # The documented proxy sits on 127.0.0.1 and appends the client to X-Forwarded-For; uvicorn believes
    # it from there (forwarded_allow_ips), so every client keeps its own address.
    with httpx.Client(base_url=server.url, timeout=30) as attacker:
        token = _login_form(attacker)
        codes = [
            attacker.post(
                "/console/login",
                data={"username": "ada", "password": "guess-number-" + str(i), "csrf_token": token},
                headers={"X-Forwarded-For": "203.0.113.9"},
            ).status_code
            for i in range(8)
        ]
    assert codes[:4] == [401] * 4
    assert 429 in codes[4:]
    with httpx.Client(base_url=server.url, timeout=30) as ada:
        token = _login_form(ada)
        answer = ada.post(
            "/console/login",
            data={"username": "ada", "password": PASSWORD, "csrf_token": token},
            headers={"X-Forwarded-For": "198.51.100.7"},
        )
    assert answer.status_code == 303, answer.text[:300]


def test_forwarded_for_is_ignored_from_peers_outside_forwarded_allow_ips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.9.9.9")
    endpoint = EndpointProcess(tmp_path / "server")
    commands.create_user(endpoint.settings, "ada", role="admin", teams=[], password=PASSWORD)
    endpoint.start()
    try:
        with httpx.Client(base_url=endpoint.url, timeout=30) as attacker:
            token = _login_form(attacker)
            codes = [  # a fresh forged address per try would dodge the throttle if it were believed
                attacker.post(
                    "/console/login",
                    data={"username": "ada", "password": "guess-number-" + str(i), "csrf_token": token},
                    headers={"X-Forwarded-For": f"203.0.113.{i + 1}"},
                ).status_code
                for i in range(6)
            ]
    finally:
        endpoint.stop()
    assert 429 in codes


def test_a_trickled_form_times_out_with_408(tmp_path: Path) -> None:
    from dataclasses import replace

    from central.settings import ServerSettings
    from tests.integration.central.console.live import serve_console

    settings = replace(ServerSettings(data_dir=tmp_path / "server", port=0), console_body_timeout_s=0.5)
    with serve_console(settings) as live:
        host, port = live.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(
                b"POST /console/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: 100\r\n\r\nusername=ada"
            )
            answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]


def test_console_forms_with_too_many_fields_or_multipart_are_refused(console: Console) -> None:
    console.user("ada", "admin")
    client = console.login("ada")
    csrf = csrf_of(client.get("/console/settings").text)

    many = client.post(
        "/console/settings",
        content="&".join(f"f{i}=1" for i in range(500)) + f"&csrf_token={csrf}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    multipart = client.post("/console/settings", data={"csrf_token": csrf}, files={"f": ("a.txt", b"x")})
    ok = client.post("/console/settings", data={"csrf_token": csrf, "smtp_port": "25"})

    assert many.status_code == 413
    assert "fields" in many.text
    assert multipart.status_code == 415
    assert ok.status_code == 303
