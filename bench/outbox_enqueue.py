"""Durable outbox enqueue throughput (synchronous=FULL, WAL, group commit) by group size.

Usage: python bench/outbox_enqueue.py [--events N] [--groups 1,10,100,1000,5000]
Prints a markdown table. Not a test.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from agent_app.core.outbox import Outbox
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


def run(group: int, total: int) -> tuple[float, float]:
    data_key = os.urandom(32)
    keys = OutboxKeys(key_id=key_id_for(data_key), data_key=data_key, chain_key=os.urandom(32))
    drafts = make_drafts(group)
    with tempfile.TemporaryDirectory() as tmp:
        outbox = Outbox(Path(tmp) / "outbox.db", keys=keys)
        rounds = max(1, total // group)
        start = time.perf_counter()
        for _ in range(rounds):
            outbox.append(drafts)
        elapsed = time.perf_counter() - start
        outbox.close()
    events = rounds * group
    return events / elapsed, elapsed / rounds * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--groups", default="1,10,100,1000,5000")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {sys.version.split()[0]}")
    print()
    print("| group size | events/s | ms per commit |")
    print("|---:|---:|---:|")
    for group in (int(g) for g in args.groups.split(",")):
        total = min(args.events, group * 2000)
        rate, per_commit = run(group, total)
        print(f"| {group} | {rate:,.0f} | {per_commit:.2f} |")


if __name__ == "__main__":
    main()
