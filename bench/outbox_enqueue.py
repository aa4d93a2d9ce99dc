"""Durable outbox enqueue throughput (synchronous=FULL, WAL, group commit) by group size, against a floor.

Usage: python bench/outbox_enqueue.py [--events N] [--groups 1,10,100,1000,5000] [--repeat 3]
Prints a markdown table. Not a test. CPU µs per event (process time, all threads) is printed too: on a shared
machine it moves less than the rates, and the CPU ratio is what the rate ratio tends to when neighbours take
the CPU (the commit's fsync wait counts in the rates but not in CPU).

The floor is measured in the same run, alternating with the outbox, so its ratio holds on a noisy machine:
the same table (outbox_schema), WAL with `synchronous=FULL`, one transaction per group of the same size, the
same plaintext bytes sealed with AES-GCM per row and inserted with a bare `executemany`; no chain link, no
event ids, no canonical JSON, no quota accounting, no high-water mark.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agent_app.core import outbox_schema
from agent_app.core.outbox import Outbox
from agent_app.core.outbox_crypto import canonical, draft_body, event_ids, utc
from agent_app.core.outbox_recovery import connect
from policy_client.schema import EventDraft, EventKind, RuleRef, Severity
from policy_client.secrets import OutboxKeys, key_id_for


def make_drafts(count: int) -> list[EventDraft]:
    rule = RuleRef(id="clipboard.mask", policy_version=7)
    return [
        EventDraft(
            kind=EventKind.clipboard_sensitive,
            severity=Severity.medium,
            user="agent01",
            rule=rule,
            data={"detector": "card", "count": 1, "sample": "XXXX XXXX XXXX 1111", "hash": "ab" * 16, "i": i},
        )
        for i in range(count)
    ]


def run_outbox(group: int, total: int) -> tuple[float, float]:
    """(events/s, CPU µs per event) of `Outbox.append` in groups of `group`."""
    data_key = os.urandom(32)
    keys = OutboxKeys(key_id=key_id_for(data_key), data_key=data_key, chain_key=os.urandom(32))
    drafts = make_drafts(group)
    with tempfile.TemporaryDirectory() as tmp:
        outbox = Outbox(Path(tmp) / "outbox.db", keys=keys)
        rounds = max(1, total // group)
        cpu, start = time.process_time(), time.perf_counter()
        for _ in range(rounds):
            outbox.append(drafts)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        outbox.close()
    return rounds * group / elapsed, cpu / (rounds * group) * 1e6


_FLOOR_INSERT = (
    "INSERT INTO events(seq, kind, severity, ts, size, state, key_id, nonce, mac, ct)"
    " VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, ?)"
)


def run_floor(group: int, total: int) -> tuple[float, float]:
    """The bare floor: the same plaintexts, AES-GCM per row, `executemany` and a FULL commit per group.
    (events/s, CPU µs per event)."""
    aead = AESGCM(os.urandom(32))
    drafts = make_drafts(group)
    now = utc(drafts[0].ts)
    plaintexts = [canonical(draft_body(d, i, 0, now)) for d, i in zip(drafts, event_ids(group), strict=True)]
    mac = b"\0" * 32
    ts = now.timestamp()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "floor.db"
        conn = connect(path)
        outbox_schema.migrate(conn, path)
        rounds = max(1, total // group)
        seq = 0
        cpu, start = time.process_time(), time.perf_counter()
        for _ in range(rounds):
            nonces = os.urandom(12 * group)
            rows = []
            for n, plaintext in enumerate(plaintexts):
                seq += 1
                nonce = nonces[12 * n : 12 * n + 12]
                ct = aead.encrypt(nonce, plaintext, b"k|%d" % seq)
                rows.append((seq, "clipboard.sensitive", 2, ts, len(plaintext), "k", nonce, mac, ct))
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(_FLOOR_INSERT, rows)
            conn.execute("COMMIT")
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        conn.close()
    return rounds * group / elapsed, cpu / (rounds * group) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--groups", default="1,10,100,1000,5000")
    parser.add_argument("--repeat", type=int, default=3, help="alternating outbox/floor runs per group size")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(
        f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {sys.version.split()[0]}, "
        f"SQLite {sqlite3.sqlite_version}, load average {load:.2f} at start"
    )
    print()
    print(
        "| group size | outbox events/s | floor events/s | ratio (median of runs) | ms per commit "
        "| CPU µs/event outbox | CPU µs/event floor | CPU ratio |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for group in (int(g) for g in args.groups.split(",")):
        total = min(args.events, group * 2000)
        outbox_runs: list[tuple[float, float]] = []
        floor_runs: list[tuple[float, float]] = []
        for _ in range(args.repeat):
            outbox_runs.append(run_outbox(group, total))
            floor_runs.append(run_floor(group, total))
        rate = statistics.median(r for r, _ in outbox_runs)
        floor = statistics.median(r for r, _ in floor_runs)
        ratio = statistics.median(o[0] / f[0] for o, f in zip(outbox_runs, floor_runs, strict=True))
        cpu = statistics.median(c for _, c in outbox_runs)
        floor_cpu = statistics.median(c for _, c in floor_runs)
        print(
            f"| {group} | {rate:,.0f} | {floor:,.0f} | {ratio:.2f} | {group / rate * 1000:.2f} "
            f"| {cpu:.1f} | {floor_cpu:.1f} | {floor_cpu / cpu:.2f} |"
        )
    print(f"\nload average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
