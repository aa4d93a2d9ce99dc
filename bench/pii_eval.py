"""Precision and recall of the PII detectors on the project's labelled corpus, per type and per confidence.

Run: .venv/bin/python bench/pii_eval.py [--split heldout|dev|hard|all] [--errors N]
Rebuild the corpus first when its generator changed: .venv/bin/python bench/corpus/make_pii_corpus.py
A finding counts as a true positive when its type and its span equal a labelled value's exactly. "at >= level"
counts only findings of that confidence or above (the policy's `min_confidence`); "exactly level" scores the
findings of one level alone. Prints markdown tables; single-threaded.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from collectors.pii import ALL, CONFIDENCE_LEVELS, DEFAULT_MIN_CONFIDENCE, confidence_at_least, scan_text

CORPUS = Path(__file__).resolve().parent / "corpus"
GOAL = 0.97


@dataclass
class Tally:
    tp: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(type, confidence) of findings that match a label."""
    fp: Counter[tuple[str, str]] = field(default_factory=Counter)
    labels: Counter[str] = field(default_factory=Counter)
    misses: list[tuple[str, str, str]] = field(default_factory=list)
    """(record id, type, best confidence found or 'none') of labels not found at the default level."""
    false_hits: list[tuple[str, str, str, str]] = field(default_factory=list)
    """(record id, type, confidence, value) of findings that match no label."""


def load(split: str) -> list[dict[str, object]]:
    names = ["dev", "heldout", "hard"] if split == "all" else [split]
    records: list[dict[str, object]] = []
    for name in names:
        with (CORPUS / f"pii_{name}.jsonl").open(encoding="utf-8") as fh:
            records.extend(json.loads(line) for line in fh if line.strip())
    return records


def evaluate(records: list[dict[str, object]]) -> Tally:
    tally = Tally()
    for record in records:
        text = str(record["text"])
        labels = {(str(s["type"]), int(s["start"]), int(s["end"])) for s in record["spans"]}  # type: ignore[attr-defined]
        tally.labels.update(t for t, _, _ in labels)
        found: dict[tuple[str, int, int], str] = {}
        for f in scan_text(text):
            key = (f.type, f.start, f.end)
            found[key] = f.confidence
            if key in labels:
                tally.tp[(f.type, f.confidence)] += 1
            else:
                tally.fp[(f.type, f.confidence)] += 1
                tally.false_hits.append((str(record["id"]), f.type, f.confidence, text[f.start : f.end]))
        for key in labels:
            level = found.get(key, "none")
            if level == "none" or not confidence_at_least(level, DEFAULT_MIN_CONFIDENCE):
                tally.misses.append((str(record["id"]), key[0], level))
    return tally


def _ratio(num: int, den: int) -> str:
    return "n/a" if den == 0 else f"{num / den:.3f}"


def _at_least(counter: Counter[tuple[str, str]], kind: str, level: str) -> int:
    return sum(n for (t, c), n in counter.items() if (kind in ("", t)) and confidence_at_least(c, level))


def report(tally: Tally, split: str, errors: int) -> bool:
    """Prints the tables; True when every type meets the goal at the default confidence."""
    ok = True
    print(f"corpus split: {split}; labelled values: {sum(tally.labels.values())}; default min_confidence: "
          f"{DEFAULT_MIN_CONFIDENCE}; goal >= {GOAL} precision and recall per type at the default\n")  # fmt: skip
    header = " | ".join(f"P / R at >= {level}" for level in CONFIDENCE_LEVELS)
    print(f"| type | labelled | {header} |")
    print("|---|---|" + "---|" * len(CONFIDENCE_LEVELS))
    for kind in [*ALL, ""]:
        cells = []
        for level in CONFIDENCE_LEVELS:
            tp, fp = _at_least(tally.tp, kind, level), _at_least(tally.fp, kind, level)
            labelled = tally.labels[kind] if kind else sum(tally.labels.values())
            p, r = _ratio(tp, tp + fp), _ratio(tp, labelled)
            if level == DEFAULT_MIN_CONFIDENCE and kind:
                meets = (tp + fp == 0 or tp / (tp + fp) >= GOAL) and (labelled == 0 or tp / labelled >= GOAL)
                ok = ok and meets
                cells.append(f"**{p} / {r}**" if meets else f"{p} / {r} (below goal)")
            else:
                cells.append(f"{p} / {r}")
        labelled_n = tally.labels[kind] if kind else sum(tally.labels.values())
        print(f"| {kind or 'all'} | {labelled_n} | " + " | ".join(cells) + " |")
    print("\nFindings by exact confidence (true / false positives, precision):\n")
    print("| type | " + " | ".join(CONFIDENCE_LEVELS) + " |")
    print("|---|" + "---|" * len(CONFIDENCE_LEVELS))
    for kind in ALL:
        cells = []
        for level in CONFIDENCE_LEVELS:
            tp, fp = tally.tp[(kind, level)], tally.fp[(kind, level)]
            cells.append(f"{tp} / {fp} ({_ratio(tp, tp + fp)})")
        print(f"| {kind} | " + " | ".join(cells) + " |")
    if errors:
        print(f"\nFirst {errors} misses at the default level (record, type, confidence found):")
        for miss in tally.misses[:errors]:
            print("  ", *miss)
        print(f"First {errors} false positives (record, type, confidence, value):")
        for hit in tally.false_hits[:errors]:
            print("  ", *hit)
    return ok


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", choices=["heldout", "dev", "hard", "all"], default="heldout")
    parser.add_argument("--errors", type=int, default=0, help="list this many misses and false positives")
    args = parser.parse_args()
    ok = report(evaluate(load(args.split)), args.split, args.errors)
    print(f"\nall types at or above the goal at the default confidence: {'yes' if ok else 'no'}")


if __name__ == "__main__":
    main()
