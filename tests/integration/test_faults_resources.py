"""Resource faults at the agent level: a keyring that raises, a full disk (loop-mounted ext4), a read-only home.

Each starts the real AgentRuntime twice (no crash loop) and checks what reaches a real endpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_app.core import paths
from agent_app.core.enrol import enrol_here
from agent_app.core.outbox import read_depth
from agent_app.core.runtime import AgentRuntime
from policy_client.schema import EventDraft, EventKind, Severity
from tests.support.endpoint import EndpointProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

FAST_RETRY = {"backoff_base": 0.02, "backoff_cap": 0.3}


class RaisingKeyring:
    """A keyring backend whose every call fails, like a locked or broken Secret Service."""

    priority = 10

    def get_password(self, service: str, name: str) -> Any:
        raise RuntimeError("keyring exploded")

    def set_password(self, service: str, name: str, value: str) -> None:
        raise RuntimeError("keyring exploded")

    def delete_password(self, service: str, name: str) -> None:
        raise RuntimeError("keyring exploded")


@pytest.fixture
def endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EndpointProcess]:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    server = EndpointProcess(tmp_path / "server")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _run(home: Path, **kwargs: Any) -> AgentRuntime:
    runtime = AgentRuntime(home, collectors={}, uploader_options=FAST_RETRY, **kwargs)
    runtime.start()
    return runtime


def test_a_keyring_that_raises_falls_back_to_the_key_file_and_says_so(
    tmp_path: Path, endpoint: EndpointProcess
) -> None:
    home = tmp_path / "agent"
    home.mkdir()
    device_id = enrol_here(endpoint.url, endpoint.enroll_token(), home=home)
    api = endpoint.api_token()
    for _ in range(2):
        runtime = _run(home, secret_backend=RaisingKeyring())
        runtime.record(EventDraft(kind=EventKind.download_detected, data={"name": "a.pdf"}))
        assert runtime.flush(10)
        runtime.stop(reason="test")
    runtime = _run(home, secret_backend=RaisingKeyring())
    try:
        wait_for(lambda: read_depth(paths.outbox_path(home)) == 0, timeout=30, what="the outbox to drain")
    finally:
        runtime.stop(reason="test")
    tamper = endpoint.events(api, device_id=device_id, kind="agent.tamper")
    assert any(e["data"].get("reason") == "keyring_unavailable" for e in tamper), tamper
    assert len(endpoint.events(api, device_id=device_id, kind="download.detected")) == 2
    assert oct((home / "secrets.json").stat().st_mode & 0o777) == "0o600"


@contextlib.contextmanager
def _loop_ext4(where: Path, *, size_mb: int) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root to loop-mount a small ext4 filesystem")
    for tool in ("mkfs.ext4", "mount", "umount"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    image = where / "disk.img"
    mount = where / "mnt"
    mount.mkdir()
    with image.open("wb") as fh:
        fh.truncate(size_mb * 2**20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    done = subprocess.run(["mount", "-o", "loop", str(image), str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot loop-mount here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)


def _fill(directory: Path) -> Path:
    """Fill the filesystem to the last block; return the filler so the test can free the space."""
    filler = directory / "filler.bin"
    with filler.open("wb") as fh:
        chunk = b"\0" * 2**16
        with contextlib.suppress(OSError):
            while True:
                fh.write(chunk)
                fh.flush()
    return filler


def test_a_full_disk_loses_nothing_silently_and_the_agent_keeps_running(
    tmp_path: Path, endpoint: EndpointProcess
) -> None:
    with _loop_ext4(tmp_path, size_mb=16) as mount:
        home = mount / "agent"
        home.mkdir()
        device_id = enrol_here(endpoint.url, endpoint.enroll_token(), home=home)
        api = endpoint.api_token()
        endpoint.kill()
        runtime = _run(home)
        try:
            assert runtime.flush(10)
            filler = _fill(mount)
            for index in range(300):
                runtime.record(
                    EventDraft(
                        kind=EventKind.download_detected, severity=Severity.high, data={"i": index, "pad": "x" * 2000}
                    )
                )
            runtime.flush(5)  # may time out while the disk is full: the pipeline waits instead of dropping
            filler.unlink()
            assert runtime.flush(30), "the pipeline should catch up once space is back"
        finally:
            runtime.stop(reason="test")
        runtime = _run(home)  # a second start on the same file
        endpoint.start()
        try:
            wait_for(lambda: read_depth(paths.outbox_path(home)) == 0, timeout=60, what="the outbox to drain")
        finally:
            runtime.stop(reason="test")
    stored = endpoint.events(api, device_id=device_id, kind="download.detected")
    indexes = sorted(e["data"]["i"] for e in stored)
    losses = endpoint.events(api, device_id=device_id, kind="agent.loss")
    if len(indexes) < 300:
        assert losses, f"{300 - len(indexes)} events dropped without an agent.loss record"
    assert len(indexes) == len(set(indexes)), "an event was stored twice"


def test_a_read_only_home_fails_clearly_and_does_not_crash_loop(tmp_path: Path, endpoint: EndpointProcess) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for a read-only bind mount")
    home = tmp_path / "agent"
    home.mkdir()
    enrol_here(endpoint.url, endpoint.enroll_token(), home=home)
    first = _run(home)
    first.stop(reason="test")
    done = subprocess.run(["mount", "--bind", "-o", "ro", str(home), str(home)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount read-only here: {done.stderr.strip()}")
    try:
        for _ in range(2):
            env = {**os.environ, "DESKWARDEN_HOME": str(home)}
            proc = subprocess.run(
                [sys.executable, "-m", "agent_app", "status", "--json"],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
                check=False,
            )
            assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
            assert proc.returncode == 0
            assert "cannot read the outbox" in json.loads(proc.stdout)["queue_error"]
    finally:
        subprocess.run(["umount", "-l", str(home)], check=False, capture_output=True)
