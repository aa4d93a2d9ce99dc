"""Governance report time over 30 days of a simulated fleet (markdown table).

Usage: .venv/bin/python bench/report_30d.py [--agents 5000] [--events-per-day 20] [--db URL]
Seeds the store through the real ingest path (chained events spread over 30 days, a realistic mix
of kinds and actions across 10 teams), then times the six governance figures for the whole fleet
and for one team, as the console's report page computes them.
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from central.alerting.classify import classify_events
from central.reports import figures
from central.runtime import prepare
from central.settings import ServerSettings
from central.simulate import SimulatedAgent
from central.store import devices, tokens
from central.store.ingest import ingest_batch
from policy_client.schema import EnrollRequest, EventKind, Severity

MIX: list[tuple[EventKind, str, Severity, int]] = [
    (EventKind.clipboard_sensitive, "masked", Severity.low, 40),
    (EventKind.download_detected, "observed", Severity.info, 25),
    (EventKind.download_quarantined, "quarantined", Severity.high, 3),
    (EventKind.usb_mounted, "observed", Severity.medium, 5),
    (EventKind.usb_blocked, "blocked", Severity.high, 2),
    (EventKind.capture_hotkey, "warned", Severity.medium, 5),
    (EventKind.cleandesk_attested, "observed", Severity.info, 15),
    (EventKind.agent_heartbeat, "observed", Severity.info, 5),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=5000)
    parser.add_argument("--events-per-day", type=int, default=20)
    parser.add_argument("--db", default=None)
    args = parser.parse_args()
    rng = random.Random(7)
    kinds = [m for m in MIX for _ in range(m[3])]
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    start = end - timedelta(days=30)
    with tempfile.TemporaryDirectory() as tmp:
        runtime = prepare(ServerSettings(data_dir=Path(tmp), db_url=args.db))
        now = datetime.now(UTC)
        seeded, began = 0, time.perf_counter()
        for index in range(args.agents):
            team = f"team-{index % 10}"
            token = tokens.issue_enroll_token(runtime.db, team, ttl=timedelta(hours=1), now=now)
            agent = SimulatedAgent(user=f"agent{index}")
            request = EnrollRequest(
                token=token, hostname=f"desk-{index}", os="linux", user=agent.user, chain_key=agent.chain_key_b64
            )
            agent.device_id = devices.enroll_device(runtime.db, request, now=start).device_id
            events = [
                agent.next_event(
                    kind=EventKind.policy_acknowledged,
                    severity=Severity.info,
                    action="observed",
                    data={"version": 2},
                    ts=start + timedelta(hours=rng.random() * 48),
                )
            ]
            moments = sorted(
                start + timedelta(seconds=rng.random() * 30 * 86400) for _ in range(30 * args.events_per_day)
            )
            for ts in moments:
                kind, action, severity, _weight = rng.choice(kinds)
                events.append(agent.next_event(kind=kind, action=action, severity=severity, ts=ts, data={"n": 1}))
            for chunk in range(0, len(events), 500):
                ingest_batch(
                    runtime.db,
                    agent.device_id,
                    agent.batch(events[chunk : chunk + 500]),
                    now=now,
                    classify=classify_events,
                )
            seeded += len(events)
        seed_s = time.perf_counter() - began
        rows = []
        for label, scope in (("whole fleet", None), ("one team", "team-3")):
            timings = []
            for _ in range(3):
                t0 = time.perf_counter()
                figures.compute(runtime.db, start=start, end=end, team=scope)
                timings.append((time.perf_counter() - t0) * 1000)
            rows.append((label, min(timings), max(timings)))
        backend = "PostgreSQL" if args.db else "SQLite"
        print(f"machine: {platform.machine()}, Python {platform.python_version()}, backend {backend}")
        print(f"seeded {seeded:,} events for {args.agents:,} agents over 30 days in {seed_s:.0f} s")
        print()
        print("| report (30 days) | best ms | worst ms |")
        print("|---|---:|---:|")
        for label, best, worst in rows:
            print(f"| {label} | {best:.0f} | {worst:.0f} |")
        runtime.db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
