"""Simulated fleet against one endpoint process: heartbeat and ingest latency, refusals, alert delivery to an SSE
client, and exactly-once storage. Prints a markdown table.

Run: .venv/bin/python bench/fleet.py [--agents 10000] [--seconds 60] [--store sqlite|postgres] [--workers 1]
PostgreSQL uses $DESKWARDEN_TEST_PG (or --pg URL) and a fresh database per run. `--profile FILE` records where the
endpoint's CPU goes (py-spy, the thread holding the GIL, collapsed stacks; docs/bench/fleet.md).

The endpoint runs as `deskwarden server` would, in a process of its own (`run_server`, uvicorn with uvloop and
httptools); the load generator is this process, so the two do not share an interpreter lock (an earlier version
served the endpoint from a thread of the load generator, which charged the generator's CPU to the endpoint).
Devices are enrolled through the store before the endpoint starts. Every agent heartbeats every 60 s and sends a
batch of 3 chained events every 30 s, phases spread at random; the bodies are built before the clock starts, so
the generator's own cost per request is one `http.client` round trip. A pool of client threads with keep-alive
connections sends them; "late" is how long a request waited for a free client thread after it was due (a
generator falling behind, not endpoint latency). Meanwhile an alert thread posts an `agent.tamper` event of a
device outside the load every few seconds and times its arrival on `/v1/alerts/stream`.
"""

from __future__ import annotations

import argparse
import heapq
import http.client
import json
import os
import platform
import queue
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import _free_port, _server, _set_credential  # the endpoint-process helpers
from sqlalchemy import func, select

from central.runtime import prepare
from central.settings import ServerSettings
from central.simulate import SimulatedAgent, batch_json
from central.store import devices, tables, tokens
from policy_client.schema import EnrollRequest, EventKind, Severity, utc_now
from tests.pg import PG_ENV, fresh_pg_database

BEAT_S = 60.0
BATCH_S = 30.0
EVENTS_PER_BATCH = 3
RETRYABLE = {408, 429, 503}
"""Answers an agent retries later with its batch kept (the 408/429 contract); anything else non-2xx is a refusal."""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    latency: dict[str, list[float]] = field(default_factory=lambda: {"beat": [], "events": []})
    late: list[float] = field(default_factory=list)
    status: Counter[tuple[str, int]] = field(default_factory=Counter)
    accepted: int = 0
    errors: Counter[str] = field(default_factory=Counter)


@dataclass
class Fleet:
    credentials: list[str]
    batches: list[list[bytes]]
    beats: list[bytes]
    next_batch: list[int]


def build_fleet(settings: ServerSettings, agents: int, seconds: float) -> tuple[Fleet, SimulatedAgent, str, str]:
    """Enrol `agents` + 1 devices (the last one raises the timed alerts), give each a credential and its bodies."""
    runtime = prepare(settings)
    try:
        # Enrolled from 8 threads: their commits share fsyncs (SQLite group commit) or run side by side (PostgreSQL).
        token = tokens.issue_enroll_token(runtime.db, "fleet", ttl=timedelta(hours=2), now=runtime.clock())
        simulated = [SimulatedAgent(user=f"agent{i:05d}") for i in range(agents + 1)]

        def enrol(n: int) -> None:
            agent = simulated[n]
            request = EnrollRequest(token=token, hostname=f"desk-{n}", os="linux", chain_key=agent.chain_key_b64)
            agent.device_id = devices.enroll_device(runtime.db, request, now=runtime.clock()).device_id

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(enrol, range(agents + 1)))
        credentials = [tokens.new_token(tokens.CREDENTIAL_PREFIX) for _ in simulated]
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda pair: _set_credential(runtime, pair[0].device_id, pair[1]),
                    zip(simulated, credentials, strict=True),
                )
            )
        api_token = tokens.create_api_token(runtime.db, "fleet-bench", "admin", now=runtime.clock(), ttl=None)
    finally:
        runtime.db.dispose()
    per_agent = int(seconds // BATCH_S) + 2
    now = utc_now()  # simulated events default to January 2026; retention (180 days) would purge them mid-run
    batches = [
        [batch_json(agent.batch(agent.events(EVENTS_PER_BATCH, ts=now))) for _ in range(per_agent)]
        for agent in simulated[:agents]
    ]
    beats = [json.dumps({"user": agent.user, "policy_version": 1}).encode() for agent in simulated[:agents]]
    fleet = Fleet(credentials=credentials[:agents], batches=batches, beats=beats, next_batch=[0] * agents)
    return fleet, simulated[agents], credentials[agents], api_token


def client_thread(
    settings: ServerSettings, fleet: Fleet, jobs: queue.Queue[tuple[float, str, int] | None], tally: Tally
) -> None:
    conn = http.client.HTTPConnection(settings.host, settings.port, timeout=60)
    while True:
        job = jobs.get()
        if job is None:
            return
        due, kind, index = job
        headers = {"Authorization": f"Bearer {fleet.credentials[index]}", "Content-Type": "application/json"}
        if kind == "beat":
            path, body = "/v1/heartbeat", fleet.beats[index]
        else:
            path, body = "/v1/events", fleet.batches[index][fleet.next_batch[index]]
        t0 = time.perf_counter()
        late = time.monotonic() - due
        try:
            conn.request("POST", path, body=body, headers=headers)
            answer = conn.getresponse()
            payload = answer.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            conn = http.client.HTTPConnection(settings.host, settings.port, timeout=60)
            with tally.lock:
                tally.errors[type(exc).__name__] += 1
            continue
        elapsed = time.perf_counter() - t0
        with tally.lock:
            tally.latency[kind].append(elapsed)
            tally.late.append(late)
            tally.status[(kind, answer.status)] += 1
            if kind == "events" and answer.status == 200:
                tally.accepted += int(json.loads(payload)["accepted"])
                fleet.next_batch[index] += 1  # a refused batch is sent again at the next slot, as an agent would


def alert_thread(
    url: str, agent: SimulatedAgent, credential: str, api_token: str, stop: threading.Event, delays: list[float]
) -> None:
    """Every 5 s: an `agent.tamper` event posted, timed until it arrives on the alert stream."""
    headers = {"Authorization": f"Bearer {credential}", "Content-Type": "application/json"}
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.wait(5.0):
            with client.stream("GET", "/v1/alerts/stream", headers={"Authorization": f"Bearer {api_token}"}) as sse:
                lines = sse.iter_lines()
                next(lines)  # the stream is open (its first line), so the alert cannot precede the subscription
                event = agent.next_event(kind=EventKind.agent_tamper, severity=Severity.high)
                t0 = time.perf_counter()
                client.post("/v1/events", content=batch_json(agent.batch([event])), headers=headers)
                for line in lines:
                    if line.startswith("data:") and json.loads(line[5:]).get("event_seq") == event.seq:
                        delays.append(time.perf_counter() - t0)
                        break


def drive(settings: ServerSettings, fleet: Fleet, seconds: float, threads: int, tally: Tally) -> None:
    agents = len(fleet.credentials)
    jobs: queue.Queue[tuple[float, str, int] | None] = queue.Queue()
    pool = [threading.Thread(target=client_thread, args=(settings, fleet, jobs, tally)) for _ in range(threads)]
    for t in pool:
        t.start()
    start = time.monotonic()
    schedule = [(start + random.uniform(0, BEAT_S), "beat", i) for i in range(agents)]
    schedule += [(start + random.uniform(0, BATCH_S), "events", i) for i in range(agents)]
    heapq.heapify(schedule)
    stop = start + seconds
    wake = threading.Event()
    while schedule and schedule[0][0] < stop:
        due, kind, index = schedule[0]
        now = time.monotonic()
        if due > now:
            wake.wait(min(due - now, 0.05))
            continue
        heapq.heapreplace(schedule, (due + (BEAT_S if kind == "beat" else BATCH_S), kind, index))
        jobs.put((due, kind, index))
    for _ in pool:
        jobs.put(None)
    for t in pool:
        t.join()


def _cpu_seconds(server: psutil.Process) -> float:
    """User + system CPU of the endpoint process and its worker processes."""
    total = 0.0
    for proc in [server, *server.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _profiler(pid: int, out: Path, seconds: float) -> subprocess.Popen[bytes]:
    """py-spy sampling the endpoint process for the run: only the thread holding the GIL, i.e. where its CPU goes."""
    spy = Path(sys.executable).with_name("py-spy")
    command = [str(spy), "record", "-p", str(pid), "-o", str(out), "-f", "raw", "-r", "100", "--gil"]
    return subprocess.Popen([*command, "-d", str(max(1, int(seconds) - 1)), "--nonblocking"])


def stored_events(settings: ServerSettings) -> int:
    runtime = prepare(settings)
    try:
        with runtime.db.read() as conn:
            return int(conn.execute(select(func.count()).select_from(tables.events)).scalar_one())
    finally:
        runtime.db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--threads", type=int, default=32, help="client threads (keep-alive connections)")
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--workers", type=int, default=1, help="endpoint worker processes (PostgreSQL only)")
    parser.add_argument("--pg", default=os.environ.get(PG_ENV), help=f"PostgreSQL URL (default ${PG_ENV})")
    parser.add_argument(
        "--profile",
        type=Path,
        help="write a py-spy profile of the endpoint process (collapsed stacks, py-spy raw format) to this file",
    )
    args = parser.parse_args()
    if args.store == "postgres" and not args.pg:
        parser.error(f"set {PG_ENV} or --pg for --store postgres")
    with ExitStack() as stack:
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        db_url = (
            stack.enter_context(fresh_pg_database(args.pg, prefix="dw_fleet")) if args.store == "postgres" else None
        )
        settings = ServerSettings(
            data_dir=data_dir,
            db_url=db_url,
            port=_free_port(),
            log_level="warning",
            max_concurrent_ingest=32,
            workers=args.workers,
        )
        t0 = time.perf_counter()
        fleet, alerter, alert_credential, api_token = build_fleet(settings, args.agents, args.seconds)
        setup_s = time.perf_counter() - t0
        tally = Tally()
        delays: list[float] = []
        load_start = os.getloadavg()[0]
        with _server(settings) as process:
            server = psutil.Process(process.pid)
            cpu_before = _cpu_seconds(server)
            stop = threading.Event()
            url = f"http://{settings.host}:{settings.port}"
            alerts = threading.Thread(
                target=alert_thread, args=(url, alerter, alert_credential, api_token, stop, delays), daemon=True
            )
            alerts.start()
            spy = _profiler(process.pid, args.profile, args.seconds) if args.profile else None
            drive(settings, fleet, args.seconds, args.threads, tally)
            if spy is not None:
                spy.wait(60)
            cpu_s = _cpu_seconds(server) - cpu_before
            stop.set()
            alerts.join(timeout=30)
        load_end = os.getloadavg()[0]
        stored = stored_events(settings) - len(delays)  # the alert device's events are not part of the load

    refused = {key: n for key, n in tally.status.items() if key[1] != 200 and key[1] not in RETRYABLE}
    retried = {key: n for key, n in tally.status.items() if key[1] in RETRYABLE}
    store = "PostgreSQL" if args.store == "postgres" else "SQLite"
    print(
        f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}; "
        f"load average {load_start:.2f} at start, {load_end:.2f} at end; setup {setup_s:.0f} s\n"
    )
    print(f"| {args.agents} agents, {args.seconds:.0f} s, {store}, {args.workers} worker(s) | p50 | p99 | n |")
    print("|---|---|---|---|")
    beats, ingests = tally.latency["beat"], tally.latency["events"]
    print(f"| heartbeat (ms) | {pct(beats, 0.5):.1f} | {pct(beats, 0.99):.1f} | {len(beats)} |")
    print(f"| ingest, 3-event batch (ms) | {pct(ingests, 0.5):.1f} | {pct(ingests, 0.99):.1f} | {len(ingests)} |")
    print(f"| late in the generator (ms) | {pct(tally.late, 0.5):.1f} | {pct(tally.late, 0.99):.1f} | |")
    if delays:
        print(
            f"| alert commit to SSE (ms) | {statistics.median(delays) * 1000:.0f} | {max(delays) * 1000:.0f} (max) "
            f"| {len(delays)} |"
        )
    else:
        print("| alert commit to SSE (ms) | none arrived | | 0 |")
    print(
        f"\nrefused (not retryable): {dict(refused) or 'none'}; retryable answers: {dict(retried) or 'none'}; "
        f"client errors: {dict(tally.errors) or 'none'}"
    )
    requests = len(beats) + len(ingests)
    if requests:
        print(f"endpoint CPU: {cpu_s:.1f} s for {requests:,} requests, {cpu_s / requests * 1000:.2f} ms per request")
    verdict = "exactly once" if stored == tally.accepted else "MISMATCH"
    print(f"events accepted {tally.accepted:,}, stored {stored:,}: {verdict}")


if __name__ == "__main__":
    main()
