"""Restart to first successful upload: kill -9 a headless agent sitting on a ~1 GB outbox backlog,
restart it, and time from the restart until the endpoint has committed the first batch.

Usage: .venv/bin/python bench/restart_backlog.py [--gb 1.0] [--runs 3] [--keep DIR]
Starts `deskwarden server` (SQLite) and `deskwarden agent --headless` as child processes; prints a
markdown table. `--keep DIR` reuses (or builds once) the filled agent home in DIR between invocations.
Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")

sys.path.insert(0, str(Path(__file__).resolve().parent))

from drain import free_port, wait_healthy

from agent_app.core.outbox import Outbox
from policy_client.enrollment import enroll
from policy_client.schema import EventDraft, EventKind, Severity
from policy_client.secrets import SecretStore, load_or_create_keys

DATA_BYTES = 2000
"""Payload per event: about 2.3 kB per outbox row, so 1 GB is about 450k events."""


def start_server(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "agent_app", "server", "--data-dir", str(data_dir), "--port", str(port)],
        env=dict(os.environ, DESKWARDEN_HOME=str(data_dir.parent / "unused")),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def blob() -> str:
    return os.urandom(DATA_BYTES // 2).hex()


def fill(outbox_path: Path, home: Path, gigabytes: float) -> tuple[int, float]:
    keys = load_or_create_keys(SecretStore(home))
    target = int(gigabytes * 1024**3)
    started = time.perf_counter()
    with Outbox(outbox_path, keys=keys, quota_bytes=4 * target + 2**30) as outbox:
        n = 0
        while outbox.used_bytes() < target:
            outbox.append(
                [
                    EventDraft(
                        kind=EventKind.download_detected,
                        severity=Severity.medium,
                        user="asha.k",
                        data={
                            "path": "/home/asha/Downloads/x.pdf",
                            "i": n + i,
                            "blob": os.urandom(DATA_BYTES // 2).hex(),
                        },
                    )
                    for i in range(2000)
                ]
            )
            n += 2000
    return n, time.perf_counter() - started


def central_count(db: Path) -> int:
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        conn.close()


def agent(home: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "agent_app", "agent", "--headless"],
        env=dict(os.environ, DESKWARDEN_HOME=str(home)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def one_run(base: Path, work: Path, port: int) -> tuple[float, float]:
    """Copy the prepared state, kill -9 a running agent, restart it; (seconds to first upload, file GB)."""
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(base, work)
    home, data_dir = work / "agent", work / "server"
    pause = threading.Event()
    # 1. the agent runs offline (endpoint down) on its backlog, then dies by kill -9
    first = agent(home)
    deadline = time.monotonic() + 60
    while not (home / "running.pid").exists() and time.monotonic() < deadline:
        pause.wait(0.05)
    pause.wait(1.0)
    first.send_signal(signal.SIGKILL)
    first.wait()
    # 2. endpoint up, agent restarted: time until the endpoint has committed its first batch
    server = start_server(data_dir, port)
    try:
        wait_healthy(f"http://127.0.0.1:{port}")
        db = data_dir / "central.db"
        before = central_count(db)
        started = time.perf_counter()
        second = agent(home)
        try:
            while central_count(db) == before:
                if time.perf_counter() - started > 120 or second.poll() is not None:
                    raise RuntimeError("no upload within 120 s (or the agent exited)")
                pause.wait(0.005)
            elapsed = time.perf_counter() - started
        finally:
            second.send_signal(signal.SIGKILL)
            second.wait()
    finally:
        stop(server)
    size = (home / "outbox.db").stat().st_size / 1024**3
    return elapsed, size


def prepare_base(base: Path, gigabytes: float) -> str:
    home, data_dir = base / "agent", base / "server"
    home.mkdir(parents=True)
    port = free_port()
    server = start_server(data_dir, port)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url)
        from central.commands import issue_enroll_token
        from central.settings import ServerSettings

        token = issue_enroll_token(ServerSettings(data_dir=data_dir, port=port), "bench", timedelta(hours=1))
        store = SecretStore(home)
        keys = load_or_create_keys(store)
        enroll(url, token, home=home, store=store, chain_key=keys.chain_key)
    finally:
        stop(server)
    count, seconds = fill(home / "outbox.db", home, gigabytes)
    return f"filled {count:,} events in {seconds:.0f} s"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None, help="directory holding the filled state between runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        base = root / "base"
        note = "reused filled state"
        if not (base / "agent" / "outbox.db").exists():
            if base.exists():
                shutil.rmtree(base)
            note = prepare_base(base, args.gb)
        # the endpoint must listen where the agent was enrolled
        server_url = json.loads((base / "agent" / "agent.json").read_text(encoding="utf-8"))["server_url"]
        port = int(urlsplit(server_url).port or 0)
        results = [one_run(base, root / "run", port) for _ in range(args.runs)]
        shutil.rmtree(root / "run", ignore_errors=True)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; {note}")
    print()
    print("| run | outbox file GB | kill -9 restart -> first batch committed (s) |")
    print("|---:|---:|---:|")
    for i, (seconds, size) in enumerate(results, start=1):
        print(f"| {i} | {size:.2f} | {seconds:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
