"""The wheel built from this tree, installed into a fresh venv, serves the console and runs the agent's commands.

Builds with `pip wheel --no-deps` from a copy of the tree, installs with the `server` extra (packages come from
pip's cache and the configured package index), then runs `deskwarden --version`, `deskwarden scan -` and
`deskwarden server` from that venv, away from the source tree, so nothing is found through it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import venv
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
NOT_BUILT_FROM = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", ".state", ".deskwarden-*"
)


def _run(argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float, check: bool = True) -> str:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{argv} exited {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done.stdout


def _clean_env(home: Path) -> dict[str, str]:
    """This process's environment less anything that would point the venv back at the source tree or this venv."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "DESKWARDEN_"))}
    return env | {"DESKWARDEN_HOME": str(home), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def _install_wheel(work: Path, env: dict[str, str]) -> Path:
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=NOT_BUILT_FROM)
    pip = [sys.executable, "-m", "pip"]
    _run([*pip, "wheel", "--no-deps", "-q", "-w", str(work / "dist"), str(source)], cwd=work, env=env, timeout=180)
    [wheel] = (work / "dist").glob("deskwarden-*.whl")
    target = work / "venv"
    venv.EnvBuilder(with_pip=False).create(target)
    # This interpreter's pip installs into the new venv: no ensurepip, the same cache and index settings.
    _run(
        [*pip, "--python", str(target / "bin" / "python"), "install", "-q", f"{wheel}[server]"],
        cwd=work,
        env=env,
        timeout=300,
    )
    return target


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_a_wheel_in_a_fresh_venv_serves_the_console_and_runs_the_agent(tmp_path: Path) -> None:
    env = _clean_env(tmp_path / "home")
    target = _install_wheel(tmp_path, env)
    python, deskwarden = str(target / "bin" / "python"), str(target / "bin" / "deskwarden")

    # Data files: found where the wheel installed them, not through a source tree.
    probe = (
        "import central.runtime, central.console.deps as d, policy_client.resources as r\n"
        "from agent_app.core.autostart.templates import templates_dir\n"
        "print(r.assets_dir()); print(templates_dir()); print(central.runtime.DEFAULT_POLICY_PATH.is_file())\n"
        "print(d.TEMPLATES.get_template('login.html').filename)\n"
    )
    assets, templates, default_policy, login_template = _run(
        [python, "-c", probe], cwd=target, env=env, timeout=60
    ).splitlines()
    assert Path(assets) == (target / "share" / "deskwarden" / "assets").resolve()
    assert (Path(assets) / "policy" / "demo.json").is_file()
    assert (Path(assets) / "icons" / "tray-protected.svg").is_file()
    assert (Path(templates) / "linux" / "deskwarden.service").is_file()
    assert default_policy == "True"
    assert Path(login_template).resolve().is_relative_to(target.resolve())

    # The agent's commands.
    assert _run([deskwarden, "--version"], cwd=target, env=env, timeout=60).startswith("deskwarden ")
    scan = subprocess.run(
        [deskwarden, "scan", "-"],
        input="card 4111 1111 1111 1111",
        cwd=target,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "card" in scan.stdout, scan.stderr
    assert "4111 1111 1111 1111" not in scan.stdout

    # The endpoint with its console.
    port = _free_port()
    log_file = tmp_path / "server.log"
    with log_file.open("wb") as sink:
        server = subprocess.Popen(
            [deskwarden, "server", "--data-dir", str(tmp_path / "data"), "--port", str(port)],
            cwd=target,
            env=env,
            stdout=sink,
            stderr=sink,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        pause = threading.Event()
        login: httpx.Response | None = None
        while login is None and server.poll() is None and time.monotonic() < deadline:
            try:
                login = httpx.get(f"{url}/console/login", timeout=5)
            except httpx.TransportError:
                pause.wait(0.1)
        assert login is not None, f"the server did not answer:\n{log_file.read_text()}"
        assert login.status_code == 200
        assert 'name="password"' in login.text
        assert httpx.get(f"{url}/console/static/console.css", timeout=5).status_code == 200
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
