"""A real endpoint (uvicorn on a loopback socket, SQLite in a tmp dir) shared by the HTTP fuzz tests of one module.

uvicorn runs on its own thread; the tests call it with httpx from the pytest thread.
"""

from __future__ import annotations

import base64
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from central import commands
from central.app import create_app
from central.settings import ServerSettings


@dataclass(frozen=True)
class FuzzEndpoint:
    app: FastAPI
    client: httpx.Client
    url: str
    settings: ServerSettings
    device_id: str
    device_auth: dict[str, str]
    api_auth: dict[str, str]


@pytest.fixture(scope="module")
def fuzz_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzEndpoint]:
    settings = ServerSettings(data_dir=tmp_path_factory.mktemp("fuzz-server"), port=0)
    app = create_app(settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn-fuzz", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    pause = threading.Event()
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        pause.wait(0.01)
    assert server.started, "uvicorn did not start"
    try:
        yield from _enrolled(app, settings, url)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _enrolled(app: FastAPI, settings: ServerSettings, url: str) -> Iterator[FuzzEndpoint]:
    with httpx.Client(base_url=url, timeout=30) as client:
        token = commands.issue_enroll_token(settings, "fuzz", timedelta(hours=1))
        chain_key = base64.b64encode(os.urandom(32)).decode()
        answer = client.post(
            "/v1/enroll",
            json={"token": token, "hostname": "fuzz", "os": "linux", "user": "fz", "chain_key": chain_key},
        )
        assert answer.status_code == 200, answer.text
        api = commands.create_api_token(settings, "fuzz", "admin")
        yield FuzzEndpoint(
            app=app,
            client=client,
            url=url,
            settings=settings,
            device_id=answer.json()["device_id"],
            device_auth={"Authorization": f"Bearer {answer.json()['credential']}"},
            api_auth={"Authorization": f"Bearer {api}"},
        )
