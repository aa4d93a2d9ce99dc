"""An install without admin rights: `deskwarden agent --with-service` runs this user's own unprotected service as a
child of the helper, over the per-user enrolment, reports through it, is marked unprotected, and takes its service
down with it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import requests

from agent_app.core.enrol import enrol_here
from tests.support.endpoint import EndpointProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_the_per_user_agent_runs_its_own_unprotected_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    endpoint = EndpointProcess(tmp_path / "server")
    endpoint.start()
    home = tmp_path / "agent"
    home.mkdir(mode=0o700)
    env = {
        **os.environ,
        "DESKWARDEN_HOME": str(home),
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        "PYTHONPATH": str(REPO),
    }
    env.pop("DISPLAY", None)
    agent: subprocess.Popen[bytes] | None = None
    try:
        device_id = enrol_here(endpoint.url, endpoint.enroll_token(), home=home)
        api = endpoint.api_token()
        with (tmp_path / "agent.log").open("ab") as log:
            agent = subprocess.Popen(
                [sys.executable, "-m", "agent_app", "agent", "--with-service", "--headless"],
                env=env,
                cwd=tmp_path,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def device() -> dict[str, object]:
            listing = requests.get(
                endpoint.url + "/v1/devices", headers={"Authorization": f"Bearer {api}"}, timeout=10
            ).json()
            return next((d for d in listing if d["device_id"] == device_id), {})

        wait_for(lambda: bool(device().get("last_heartbeat")), timeout=60, what="the per-user service's heartbeat")
        assert device()["mode"] == "unprotected"

        def helpers() -> int:
            status = subprocess.run(
                [sys.executable, "-m", "agent_app", "status", "--json", "--socket", str(home / "service.sock")],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            )
            return int(json.loads(status.stdout)["helpers"])

        # The service heartbeats before the helper it was started by has connected: wait for the helper, not a time.
        wait_for(lambda: helpers() == 1, timeout=60, what="the helper connected to its per-user service")
        children = psutil.Process(agent.pid).children()
        assert [c for c in children if "service" in c.cmdline()]
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(30) == 0
        assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    finally:
        if agent is not None and agent.poll() is None:
            os.killpg(agent.pid, signal.SIGKILL)
            agent.wait(10)
        endpoint.stop()
