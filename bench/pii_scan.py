"""PII scan throughput (MB/s of scan_text over realistic mixed text) and clipboard-sized scan time.

Run: .venv/bin/python bench/pii_scan.py [--mb 5] [--runs 30]
Prints a markdown table. Single-threaded; runs on the calling thread.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from collectors.pii import mask_text, scan, scan_text

WORDS = [
    "customer",
    "called",
    "about",
    "the",
    "order",
    "invoice",
    "refund",
    "delivery",
    "address",
    "update",
    "account",
    "balance",
    "payment",
    "agent",
    "escalated",
    "ticket",
    "resolved",
    "pending",
    "callback",
    "supervisor",
    "notes",
    "verified",
    "identity",
    "kyc",
    "branch",
    "amount",
    "due",
    "date",
    "reference",
    "transaction",
    "failed",
    "retry",
    "successful",
    "premium",
    "policy",
    "claim",
]
PII = [
    "4111 1111 1111 1111",
    "5500-0000-0000-0004",
    "2341 2341 2346",
    "ABCPE1234F",
    "GB82 WEST 1234 5698 7654 32",
    "536-90-4399",
    "john.doe@example.com",
    "+91 98765 43210",
    "(415) 555-2671",
]
NOISE = ["2024-05-17", "14:05", "INR 12,450.00", "order #48213", "ref 99812334", "v2.3.1", "ID A1B2C3D4"]


def realistic_text(n_chars: int, *, seed: int = 7, pii_every: int = 2000) -> str:
    """Ticket-note-like text: words, dates, amounts, ids, and one PII value about every `pii_every` chars."""
    rnd = random.Random(seed)
    parts: list[str] = []
    size = 0
    next_pii = pii_every
    while size < n_chars:
        if size >= next_pii:
            piece = rnd.choice(PII)
            next_pii += pii_every
        elif rnd.random() < 0.08:
            piece = rnd.choice(NOISE)
        else:
            piece = rnd.choice(WORDS)
        sep = ". " if rnd.random() < 0.07 else (",\n" if rnd.random() < 0.03 else " ")
        parts.append(piece + sep)
        size += len(piece) + len(sep)
    return "".join(parts)[:n_chars]


def timed(fn: object, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append(time.perf_counter() - start)
    return out


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()

    big = realistic_text(int(args.mb * 1024 * 1024))
    n_findings = len(scan_text(big))
    big_times = timed(lambda: scan_text(big), 3)
    mbps = len(big.encode()) / 1e6 / min(big_times)

    dense = realistic_text(1024 * 1024, pii_every=200)
    dense_times = timed(lambda: scan_text(dense), 3)
    dense_mbps = len(dense.encode()) / 1e6 / min(dense_times)

    clip = realistic_text(100_000, seed=11)
    clip_times = timed(lambda: scan(clip), args.runs)
    clip_findings = scan_text(clip)
    mask_times = timed(lambda: mask_text(clip, clip_findings), args.runs)

    print("| measurement | result |")
    print("|---|---|")
    print(f"| scan_text throughput, {args.mb:g} MB mixed text, 1 PII per ~2 KB ({n_findings} findings) "
          f"| {mbps:.1f} MB/s |")  # fmt: skip
    print(f"| scan_text throughput, 1 MB dense text, 1 PII per ~200 chars | {dense_mbps:.1f} MB/s |")
    print(f"| clipboard scan of 100 KB ({len(clip_findings)} findings), p50 / p95 over {args.runs} runs "
          f"| {pct(clip_times, 50) * 1000:.1f} ms / {pct(clip_times, 95) * 1000:.1f} ms |")  # fmt: skip
    print(f"| mask_text of 100 KB (with re-scan), p50 / p95 "
          f"| {pct(mask_times, 50) * 1000:.1f} ms / {pct(mask_times, 95) * 1000:.1f} ms |")  # fmt: skip
    print(f"| median 100 KB scan | {statistics.median(clip_times) * 1000:.1f} ms |")


if __name__ == "__main__":
    main()
