"""A real central endpoint in its own process (`deskwarden server`), so tests can stop or kill it.

Called from the test's thread only; `--workers N` and a shared PostgreSQL URL give the multi-worker and
multi-host layouts of docs/deploy-endpoint.md.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import requests

from central.commands import create_api_token, issue_enroll_token
from central.settings import ServerSettings
from tests.support.waiting import wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EndpointProcess:
    """One `deskwarden server` (with its uvicorn workers), logging to `<data_dir>/server.log`.

    Use `start()`/`stop()` or `with EndpointProcess(...) as endpoint:`. Several instances with the same
    `db_url` and copies of one data dir's key files are hosts of one deployment.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        db_url: str | None = None,
        port: int | None = None,
        workers: int = 1,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.settings = ServerSettings(data_dir=data_dir, db_url=db_url, port=port or free_port(), workers=workers)
        self._env = dict(env or {})
        """Variables added to the server's environment (`DESKWARDEN_ALLOW_INTERNAL_WEBHOOKS`)."""
        self._extra_args = list(extra_args)
        """More `deskwarden server` flags (`--forwarded-allow-ips ...`)."""
        self.url = f"http://127.0.0.1:{self.settings.port}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = data_dir / "server.log"
        data_dir.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> EndpointProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> None:
        args = [sys.executable, "-m", "agent_app", "server", "--data-dir", str(self.settings.data_dir)]
        args += ["--port", str(self.settings.port)]
        if self.settings.db_url:
            args += ["--db", self.settings.db_url]
        if self.settings.workers != 1:
            args += ["--workers", str(self.settings.workers)]
        args += self._extra_args
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self._env}
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        what = f"endpoint on {self.url} with {self.settings.workers} worker(s) (log: {self._log})"
        try:
            wait_for(self._ready, timeout=timeout, what=what)
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        """The server process's id (for reading its /proc entries); the endpoint must be running."""
        assert self._proc is not None, "the endpoint is not running"
        return self._proc.pid

    def _ready(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            raise AssertionError(f"endpoint exited with {self._proc.returncode}: {self._log.read_text()[-2000:]}")
        try:
            return requests.get(self.url + "/healthz", timeout=1).status_code == 200
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or listening but still starting
            return False

    def kill(self) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(10)
            self._proc = None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if the server (its workers finishing their requests) is not gone in 20 s."""
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
            self._proc = None

    def enroll_token(self, team: str = "floor-1") -> str:
        return issue_enroll_token(self.settings, team, timedelta(hours=1))

    def api_token(self) -> str:
        return create_api_token(self.settings, "tests", "admin")

    def events(self, token: str, **params: Any) -> list[dict[str, Any]]:
        """Every stored event matching `params`, following the read API's paging cursor."""
        return self._every("/v1/events", "after_pk", "pk", token, params)

    def alerts(self, token: str, **params: Any) -> list[dict[str, Any]]:
        """Every alert matching `params` (`device_id`, `kind`, ...), following the read API's paging cursor."""
        return self._every("/v1/alerts", "after_id", "id", token, params)

    def _every(self, path: str, cursor_param: str, cursor_field: str, token: str, params: dict[str, Any]) -> list[Any]:
        result: list[dict[str, Any]] = []
        cursor = 0
        while True:
            response = requests.get(
                self.url + path,
                params={"limit": 1000, cursor_param: cursor, **params},
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
            response.raise_for_status()
            page: list[dict[str, Any]] = response.json()
            result += page
            if len(page) < 1000:
                return result
            cursor = int(page[-1][cursor_field])
