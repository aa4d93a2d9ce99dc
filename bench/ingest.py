"""Endpoint ingest throughput: the store's insert path and end to end over HTTP on loopback, each against a floor.

Run from the repo root: `.venv/bin/python bench/ingest.py [--backend sqlite|postgres|both]`.
PostgreSQL uses $DESKWARDEN_TEST_PG (or --pg URL) and a fresh database per run. Prints a markdown table.

Every row is followed by its floor, measured in the same run on a fresh store of the same kind: the rows
`ingest_batch` would insert, built beforehand, written with a bare driver `executemany` of the same INSERT
into the same schema, one transaction (and, on SQLite, one FULL commit) per batch, by the same number of
client threads. The ratio (events/s over the floor's) is what holds on a noisy machine.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from central.alerting.classify import classify_events
from central.runtime import Runtime, prepare
from central.settings import ServerSettings
from central.simulate import SimulatedAgent, batch_json
from central.store import devices, tokens
from central.store.ingest import _insert_sql, _prepare, ingest_batch
from policy_client.schema import EnrollRequest, EventBatch
from tests.pg import PG_ENV, fresh_pg_database


@dataclass(frozen=True)
class Result:
    path: str
    backend: str
    workers: int
    clients: int
    batch: int
    events: int
    seconds: float
    latencies_ms: list[float]
    floor: float = 0.0
    """events/s of the bare executemany floor measured right after this run."""

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    def row(self) -> str:
        lat = sorted(self.latencies_ms)
        p50 = statistics.median(lat)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        ratio = f"{self.rate / self.floor:.2f}" if self.floor else "-"
        return (
            f"| {self.path} | {self.backend} | {self.workers} | {self.clients} | {self.batch} | {self.events:,} "
            f"| {self.rate:,.0f} | {self.floor:,.0f} | {ratio} | {p50:.1f} | {p99:.1f} |"
        )


def _enroll(runtime: Runtime, count: int) -> list[SimulatedAgent]:
    token = tokens.issue_enroll_token(runtime.db, "bench", ttl=timedelta(hours=1), now=runtime.clock())
    agents = []
    for i in range(count):
        agent = SimulatedAgent(user=f"user{i}")
        request = EnrollRequest(token=token, hostname=f"desk-{i}", os="linux", chain_key=agent.chain_key_b64)
        agent.device_id = devices.enroll_device(runtime.db, request, now=runtime.clock()).device_id
        agents.append(agent)
    return agents


def _run_clients(work: list[list[Callable[[], float]]]) -> tuple[float, list[float]]:
    """Run each client's list of calls in its own thread; return wall seconds and every call's latency (ms)."""
    latencies: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(len(work) + 1)

    def client(calls: list[Callable[[], float]]) -> None:
        start.wait()
        mine = [call() for call in calls]
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(calls,)) for calls in work]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - began, latencies


def bench_store(settings: ServerSettings, backend: str, clients: int, batches: int, size: int) -> Result:
    runtime = prepare(settings)
    try:
        agents = _enroll(runtime, clients)
        prepared = [[agent.batch(agent.events(size)) for _ in range(batches)] for agent in agents]

        def call(agent: SimulatedAgent, batch: EventBatch) -> Callable[[], float]:
            def run() -> float:
                t = time.perf_counter()
                outcome = ingest_batch(
                    runtime.db, agent.device_id, batch, now=runtime.clock(), classify=classify_events
                )
                assert outcome.accepted == size
                return (time.perf_counter() - t) * 1000

            return run

        work = [[call(agent, b) for b in mine] for agent, mine in zip(agents, prepared, strict=True)]
        seconds, latencies = _run_clients(work)
    finally:
        runtime.db.dispose()
    return Result("store", backend, 1, clients, size, clients * batches * size, seconds, latencies)


def bench_floor(settings: ServerSettings, clients: int, batches: int, size: int) -> float:
    """events/s of a bare `executemany` of the rows `ingest_batch` would insert (see the module docstring)."""
    runtime = prepare(settings)
    db = runtime.db
    try:
        agents = _enroll(runtime, clients)
        now = runtime.clock()
        work_rows = []
        for agent in agents:
            team = _team(runtime, agent.device_id)
            mine = []
            for _ in range(batches):
                unique, _clashes = _prepare(db, agent.device_id, agent.batch(agent.events(size)), now)
                mine.append([(*p.row, team) for p in unique.values()])
            work_rows.append(mine)
        sql = _insert_sql(db)

        def client(mine: list[list[tuple[object, ...]]]) -> list[Callable[[], float]]:
            raw = db.engine.raw_connection()

            def call(rows: list[tuple[object, ...]]) -> Callable[[], float]:
                def run() -> float:
                    t = time.perf_counter()
                    with db.exclusive():
                        cursor = raw.cursor()
                        if db.is_sqlite:
                            cursor.execute("BEGIN IMMEDIATE")
                        cursor.executemany(sql, rows)
                        if db.is_sqlite:
                            cursor.execute("COMMIT")
                        else:
                            raw.commit()
                        cursor.close()
                    return (time.perf_counter() - t) * 1000

                return run

            return [call(rows) for rows in mine]

        seconds, _latencies = _run_clients([client(mine) for mine in work_rows])
    finally:
        db.dispose()
    return clients * batches * size / seconds


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _server(settings: ServerSettings) -> Iterator[subprocess.Popen[bytes]]:
    # A plain child process: uvicorn's own worker processes cannot start from a multiprocessing child.
    code = "import sys; from central.commands import run_server; from central.settings import ServerSettings; "
    code += "run_server(ServerSettings.from_json(sys.argv[1]))"
    root = str(Path(__file__).resolve().parents[1])
    process = subprocess.Popen([sys.executable, "-c", code, settings.to_json()], cwd=root)
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                conn = http.client.HTTPConnection(settings.host, settings.port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("endpoint did not start") from None
                threading.Event().wait(0.1)
        yield process
    finally:
        process.terminate()
        process.wait(30)


def bench_http(settings: ServerSettings, backend: str, clients: int, batches: int, size: int) -> Result:
    runtime = prepare(settings)
    try:
        agents = _enroll(runtime, clients)
        credentials = []
        for agent in agents:
            credential = tokens.new_token(tokens.CREDENTIAL_PREFIX)
            _set_credential(runtime, agent.device_id, credential)
            credentials.append(credential)
    finally:
        runtime.db.dispose()
    bodies = [
        [gzip.compress(batch_json(agent.batch(agent.events(size))), compresslevel=1) for _ in range(batches)]
        for agent in agents
    ]

    with _server(settings):
        work = []
        for credential, mine in zip(credentials, bodies, strict=True):
            conn = http.client.HTTPConnection(settings.host, settings.port, timeout=60)
            headers = {
                "Authorization": f"Bearer {credential}",
                "Content-Type": "application/json",
                "Content-Encoding": "gzip",
            }
            work.append([_post(conn, body, headers, size) for body in mine])
        seconds, latencies = _run_clients(work)
    return Result("http", backend, settings.workers, clients, size, clients * batches * size, seconds, latencies)


def _team(runtime: Runtime, device_id: str) -> str:
    from sqlalchemy import select

    from central.store import tables

    with runtime.db.read() as conn:
        return str(conn.execute(select(tables.devices.c.team).where(tables.devices.c.device_id == device_id)).scalar())


def _set_credential(runtime: Runtime, device_id: str, credential: str) -> None:
    from sqlalchemy import update

    from central.store import tables

    with runtime.db.write() as conn:
        conn.execute(
            update(tables.devices)
            .where(tables.devices.c.device_id == device_id)
            .values(credential_hash=tokens.token_hash(credential))
        )


def _post(conn: http.client.HTTPConnection, body: bytes, headers: dict[str, str], size: int) -> Callable[[], float]:
    def run() -> float:
        t = time.perf_counter()
        conn.request("POST", "/v1/events", body=body, headers=headers)
        answer = conn.getresponse()
        payload = answer.read()
        if answer.status != 200 or f'"accepted":{size}'.encode() not in payload:
            raise RuntimeError(f"ingest failed: {answer.status} {payload[:200]!r}")
        return (time.perf_counter() - t) * 1000

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--clients", default="1,4", help="comma-separated client counts")
    parser.add_argument("--batches", type=int, default=40, help="batches per client")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--path", choices=["store", "http", "both"], default="both")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers for PostgreSQL http runs")
    parser.add_argument("--pg", default=os.environ.get(PG_ENV), help=f"PostgreSQL URL (default ${PG_ENV})")
    args = parser.parse_args()

    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    paths = ["store", "http"] if args.path == "both" else [args.path]
    results: list[Result] = []
    load_start = os.getloadavg()[0]
    for backend in backends:
        if backend == "postgres" and not args.pg:
            print(f"skipping postgres: set {PG_ENV} or --pg", file=sys.stderr)
            continue
        for path in paths:
            for clients in (int(c) for c in args.clients.split(",")):
                with ExitStack() as stack:
                    data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
                    db_url = (
                        stack.enter_context(fresh_pg_database(args.pg, prefix="dw_bench"))
                        if backend == "postgres"
                        else None
                    )
                    settings = ServerSettings(
                        data_dir=data_dir,
                        db_url=db_url,
                        port=_free_port(),
                        log_level="warning",
                        max_concurrent_ingest=max(8, clients),
                        workers=args.workers if backend == "postgres" and path == "http" else 1,
                    )
                    run = bench_store if path == "store" else bench_http
                    result = run(settings, backend, clients, args.batches, args.batch)
                with ExitStack() as stack:
                    data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
                    db_url = (
                        stack.enter_context(fresh_pg_database(args.pg, prefix="dw_bench"))
                        if backend == "postgres"
                        else None
                    )
                    settings = ServerSettings(data_dir=data_dir, db_url=db_url, port=_free_port(), log_level="warning")
                    result = replace(result, floor=bench_floor(settings, clients, args.batches, args.batch))
                results.append(result)
                print(result.row(), file=sys.stderr)

    print(
        f"\nmachine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
        f"load average {load_start:.2f} at start, {os.getloadavg()[0]:.2f} at end\n"
    )
    print(
        "| path | backend | workers | clients | batch | events | events/s | floor events/s | ratio "
        "| p50 batch ms | p99 batch ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for result in results:
        print(result.row())


if __name__ == "__main__":
    main()
