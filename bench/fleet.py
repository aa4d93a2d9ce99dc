"""Simulated fleet against one endpoint: heartbeat and ingest latency, alert delivery delay to an SSE client,
and governance report time. Prints a markdown table.

Run: .venv/bin/python bench/fleet.py [--agents 500] [--seconds 60] [--db URL]   (--agents 5000 for the full fleet)
Each agent heartbeats every 60 s and sends a small event batch every 30 s; a pool of client threads drives them.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from central import commands
from central.reports import figures
from central.settings import ServerSettings
from central.simulate import SimulatedAgent
from policy_client.schema import EventKind, Severity
from tests.integration.central.console.live import serve_console


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--db", default=None)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        serve_console(ServerSettings(data_dir=Path(tmp), db_url=args.db, max_concurrent_ingest=32)) as live,
    ):
        token = commands.issue_enroll_token(live.settings, "floor", timedelta(hours=2))
        commands.create_api_token(live.settings, "bench", "admin")
        api = commands.create_api_token(live.settings, "bench-stream", "admin")
        client = httpx.Client(base_url=live.url, timeout=30, limits=httpx.Limits(max_connections=args.workers * 2))
        agents: list[tuple[SimulatedAgent, dict[str, str], threading.Lock]] = []
        for i in range(args.agents):
            agent = SimulatedAgent(user=f"agent{i:05d}")
            answer = client.post(
                "/v1/enroll",
                json={
                    "token": token,
                    "hostname": f"desk-{i}",
                    "os": "linux",
                    "user": agent.user,
                    "chain_key": agent.chain_key_b64,
                },
            ).json()
            agent.device_id = answer["device_id"]
            agents.append((agent, {"Authorization": f"Bearer {answer['credential']}"}, threading.Lock()))
        beats: list[float] = []
        ingests: list[float] = []
        stop = time.monotonic() + args.seconds
        # Per agent: heartbeat every 60 s, a batch of 3 events every 30 s, phases spread at random.
        schedule = [(random.uniform(0, 60), "beat", i) for i in range(args.agents)]
        schedule += [(random.uniform(0, 30), "events", i) for i in range(args.agents)]
        schedule.sort()
        start = time.monotonic()

        def fire(kind: str, index: int) -> None:
            agent, headers, lock = agents[index]
            t0 = time.perf_counter()
            if kind == "beat":
                client.post("/v1/heartbeat", json={"user": agent.user, "policy_version": 1}, headers=headers)
                beats.append(time.perf_counter() - t0)
            else:
                with lock:
                    batch = agent.batch(agent.events(3, kind=EventKind.clipboard_sensitive))
                    t0 = time.perf_counter()
                    client.post(
                        "/v1/events",
                        content=batch.model_dump_json(),
                        headers=headers | {"Content-Type": "application/json"},
                    )
                ingests.append(time.perf_counter() - t0)

        delays: list[float] = []
        with ThreadPoolExecutor(args.workers) as pool:
            queue = list(schedule)
            while time.monotonic() < stop:
                now = time.monotonic() - start
                while queue and queue[0][0] <= now:
                    at, kind, index = queue.pop(0)
                    pool.submit(fire, kind, index)
                    queue.append((at + (60 if kind == "beat" else 30), kind, index))
                    queue.sort()
                time.sleep(0.01)
            # Alert delivery delay: event POST to SSE receipt, while the fleet is still running.
            for _ in range(5):
                agent, headers, lock = agents[0]
                with httpx.stream(
                    "GET", f"{live.url}/v1/alerts/stream", headers={"Authorization": f"Bearer {api}"}, timeout=30
                ) as stream:
                    lines = stream.iter_lines()
                    next(lines)
                    with lock:
                        event = agent.next_event(kind=EventKind.agent_tamper, severity=Severity.high)
                        t0 = time.perf_counter()
                        httpx.post(
                            f"{live.url}/v1/events",
                            content=agent.batch([event]).model_dump_json(),
                            headers=headers | {"Content-Type": "application/json"},
                        )
                    for line in lines:
                        if line.startswith("data:") and json.loads(line[5:])["kind"] == "tamper.agent_reported":
                            delays.append(time.perf_counter() - t0)
                            break
        client.close()
        now_dt = live.runtime.clock()
        t0 = time.perf_counter()
        figures.compute(live.runtime.db, start=now_dt - timedelta(days=30), end=now_dt + timedelta(days=1))
        report_s = time.perf_counter() - t0
    db = "PostgreSQL" if args.db else "SQLite"
    print(f"| {args.agents} agents, {args.seconds:.0f} s, {db} | p50 | p99 | n |")
    print("|---|---|---|---|")
    print(f"| heartbeat (ms) | {pct(beats, 0.5):.1f} | {pct(beats, 0.99):.1f} | {len(beats)} |")
    print(f"| ingest, 3-event batch (ms) | {pct(ingests, 0.5):.1f} | {pct(ingests, 0.99):.1f} | {len(ingests)} |")
    print(
        f"| alert delivery to SSE (ms) | {statistics.median(delays) * 1000:.0f} | {max(delays) * 1000:.0f} (max) "
        f"| {len(delays)} |"
    )
    print(f"| 30-day report (ms) | {report_s * 1000:.0f} | | 1 |")


if __name__ == "__main__":
    main()
