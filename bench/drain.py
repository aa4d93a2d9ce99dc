"""Drain throughput: a real Outbox backlog uploaded by the real Uploader to a real endpoint on loopback.

Usage: .venv/bin/python bench/drain.py [--events 100000] [--server central|faulty]
Prints a markdown table. `central` starts `deskwarden server` (uvicorn + SQLite) in a child process.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")

import psutil

from agent_app.core.outbox import Outbox
from agent_app.core.uploader import Uploader
from policy_client.enrollment import enroll
from policy_client.schema import EventDraft, EventKind, Severity
from policy_client.secrets import SecretStore, load_or_create_keys
from policy_client.transport import Transport


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_healthy(url: str, timeout: float = 30.0) -> None:
    import requests

    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        pause.wait(0.1)
    raise RuntimeError("endpoint did not come up")


def _stored(data_dir: Path, port: int, device_id: str) -> tuple[int, int, dict[str, int]]:
    """Rows, distinct seqs and alert kinds the endpoint holds for the device (the chain check raises alerts)."""
    from sqlalchemy import func, select

    from central.runtime import open_store
    from central.settings import ServerSettings
    from central.store import tables

    db = open_store(ServerSettings(data_dir=data_dir, port=port))
    try:
        with db.read() as conn:
            e, a = tables.events, tables.alerts
            rows = conn.execute(
                select(func.count(), func.count(func.distinct(e.c.seq))).where(e.c.device_id == device_id)
            ).one()
            kinds = conn.execute(select(a.c.kind, func.count()).where(a.c.device_id == device_id).group_by(a.c.kind))
            return int(rows[0]), int(rows[1]), {str(k): int(n) for k, n in kinds}
    finally:
        db.dispose()


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def fill(outbox: Outbox, count: int) -> float:
    started = time.perf_counter()
    chunk = 5000
    for first in range(0, count, chunk):
        n = min(chunk, count - first)
        outbox.append(
            [
                EventDraft(
                    kind=EventKind.clipboard_sensitive,
                    severity=Severity.medium,
                    user="asha.k",
                    data={"detector": "card", "count": 1, "sample": "XXXX XXXX XXXX 1111", "i": first + i},
                )
                for i in range(n)
            ]
        )
    return time.perf_counter() - started


def agent_side_breakdown(outbox: Outbox, device_id: str, batches: int = 10) -> dict[str, float]:
    """Milliseconds per 500-event batch spent on the agent side, without the network or the endpoint."""
    from policy_client.transport import gzip_bytes

    encoder = Uploader(outbox_factory=lambda: outbox, transport=None, device_id=device_id, record=lambda d: None)

    fill(outbox, 500 * batches)
    totals = {"pending_wire": 0.0, "encode": 0.0, "gzip": 0.0, "mark_sent": 0.0}
    for _ in range(batches):
        t0 = time.perf_counter()
        part = outbox.pending_wire(limit=500, max_bytes=952_000)
        t1 = time.perf_counter()
        body = encoder._encode(part)
        t2 = time.perf_counter()
        gzip_bytes(body)
        t3 = time.perf_counter()
        outbox.mark_sent([row.seq for row in part])
        t4 = time.perf_counter()
        for key, value in zip(totals, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            totals[key] += value * 1000 / batches
    return totals


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    load_start = os.getloadavg()[0]

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        port = free_port()
        data_dir = root / "server"
        env = dict(os.environ, DESKWARDEN_HOME=str(root / "unused"))
        server = subprocess.Popen(
            [sys.executable, "-m", "agent_app", "server", "--data-dir", str(data_dir), "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url)
            from central.commands import issue_enroll_token
            from central.settings import ServerSettings

            token = issue_enroll_token(ServerSettings(data_dir=data_dir, port=port), "bench", timedelta(hours=1))
            home = root / "agent"
            home.mkdir()
            store = SecretStore(home)
            keys = load_or_create_keys(store)
            config = enroll(url, token, home=home, store=store, chain_key=keys.chain_key)
            credential = store.get("device_credential")
            outbox_path = home / "outbox.db"
            outbox = Outbox(outbox_path, keys=keys, quota_bytes=4 * 1024**3)
            fill_s = fill(outbox, args.events)

            uploader = Uploader(
                outbox_factory=lambda: Outbox(outbox_path, keys=keys, quota_bytes=4 * 1024**3, check=False),
                transport=Transport(url, credential=credential),
                device_id=config.device_id,
                record=lambda draft: None,
                heartbeat_seconds=3600.0,
            )
            endpoint = psutil.Process(server.pid)
            endpoint_cpu, agent_cpu = _cpu(endpoint), _cpu(psutil.Process())
            started = time.perf_counter()
            uploader.start()
            pause = threading.Event()
            # The cheap test (first unsent row by the partial index), not depth(): a count over a 1M-row backlog
            # every 50 ms cost this process more CPU than the uploader.
            while outbox.oldest_unsent_ts() is not None:
                pause.wait(0.05)
            drain_s = time.perf_counter() - started
            endpoint_cpu, agent_cpu = _cpu(endpoint) - endpoint_cpu, _cpu(psutil.Process()) - agent_cpu
            uploader.stop()
            stored, distinct, alert_kinds = _stored(data_dir, port, config.device_id)
            parts = agent_side_breakdown(outbox, config.device_id)
            outbox.close()
        finally:
            server.terminate()
            server.wait(timeout=15)

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {load_start:.2f} at start, {os.getloadavg()[0]:.2f} at end"
    )
    once = "exactly once" if stored == distinct == args.events else "NOT exactly once"
    print(f"endpoint holds {stored:,} events ({distinct:,} distinct seqs) of {args.events:,}: {once}")
    print(f"alerts for the device (the chain check raises them): {alert_kinds or 'none'}")
    print()
    print("| what | events | seconds | events/s |")
    print("|---|---:|---:|---:|")
    print(f"| outbox fill (append, 5k per call) | {args.events} | {fill_s:.2f} | {args.events / fill_s:,.0f} |")
    print(f"| drain to central (SQLite) over loopback | {args.events} | {drain_s:.2f} | {args.events / drain_s:,.0f} |")
    per_event = (endpoint_cpu + agent_cpu) / args.events * 1e6
    print(
        f"CPU during the drain: endpoint {endpoint_cpu:.1f} s ({endpoint_cpu / args.events * 1e6:.0f} µs per event), "
        f"agent {agent_cpu:.1f} s ({agent_cpu / args.events * 1e6:.0f} µs per event, incl. the polling of this "
        f"script); ceiling on 2 unshared cores {2e6 / per_event:,.0f} events/s"
    )
    print()
    print("Agent side per batch, measured one step after another. While draining, the uploader overlaps")
    print("pending_wire, encode and gzip of the next batch and mark_sent of the last one with the post in flight.")
    print()
    print("| agent side per 500-event batch | ms |")
    print("|---|---:|")
    for key, value in parts.items():
        print(f"| {key} | {value:.1f} |")
    agent_ms = sum(parts.values())
    print(f"| total (agent-side ceiling {500 / agent_ms * 1000:,.0f} events/s) | {agent_ms:.1f} |")
    print(f"| observed per batch incl. network and endpoint | {drain_s / (args.events / 500) * 1000:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
