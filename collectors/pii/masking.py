"""Masking, keyed hashing and per-type summaries of PII findings (what events may carry).

Pure functions, safe from any thread. The masked form keeps the value's length and separators
and reveals at most its last four characters; a keyed hash lets repeats be correlated.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from typing import Any

from collectors.pii.confidence import CONFIDENCE_LEVELS
from collectors.pii.findings import Finding

MASK_CHAR = "X"
REVEAL_LAST = 4
MIN_CHARS_TO_REVEAL = 8
"""Values with fewer letters/digits than this are masked completely."""
SEPARATORS = frozenset(" -.()+@/")
"""Characters kept as they are: they show the shape of a value, not its content."""
HASH_HEX_CHARS = 16
_LEVEL_RANK = {level: rank for rank, level in enumerate(CONFIDENCE_LEVELS)}
"""Confidence levels lowest first."""


def mask(value: str, detector: str) -> str:
    """Mask `value` (as found by `detector`): same length, separators kept, every other character
    replaced by X except within the last four characters of the value, e.g. "XXXX XXXX XXXX 1111",
    "XXX-XX-4399", "XXXX.XXX@XXXXXXX.com". Short values (under 8 letters/digits) reveal nothing."""
    del detector  # one rule for every detector keeps the guarantee simple to state and to test
    significant = sum(1 for ch in value if ch not in SEPARATORS)
    reveal_from = len(value) - REVEAL_LAST if significant >= MIN_CHARS_TO_REVEAL else len(value)
    return "".join(ch if ch in SEPARATORS or i >= reveal_from else MASK_CHAR for i, ch in enumerate(value))


def normalise(value: str) -> str:
    """The canonical form hashed by `keyed_hash`: e-mail lower-cased; anything else upper-case
    letters and digits only (digits only for numbers), so "4111 1111..." and "4111-1111..." agree."""
    if "@" in value:
        return value.strip().lower()
    return "".join(ch for ch in value if ch.isalnum()).upper()


def keyed_hash(value: str, key: bytes) -> str:
    """HMAC-SHA256 of the normalised value with the device key, hex, truncated to 16 characters."""
    return hmac.new(key, normalise(value).encode(), hashlib.sha256).hexdigest()[:HASH_HEX_CHARS]


def summarize(findings: Iterable[Finding], text: str, key: bytes) -> list[dict[str, Any]]:
    """One entry per detector type, in order of first appearance:
    {"type", "count", "confidence" (the highest of the type's findings), "by_confidence" ({"high": 1, "low": 2}:
    how many findings at each level), "sample" and "hash" (masked value and keyed hash of the first finding at the
    highest confidence)}. This is what events carry in `data.findings`."""
    return summarize_parts([(findings, text)], key)


def summarize_parts(parts: Iterable[tuple[Iterable[Finding], str]], key: bytes) -> list[dict[str, Any]]:
    """`summarize` over several texts (the members of an archive): each finding's offsets are into its own text."""
    by_type: dict[str, dict[str, Any]] = {}
    for findings, text in parts:
        for f in findings:
            entry = by_type.get(f.type)
            if entry is None:
                entry = by_type[f.type] = {"type": f.type, "count": 0, "confidence": "", "by_confidence": {}}
            entry["count"] += 1
            entry["by_confidence"][f.confidence] = entry["by_confidence"].get(f.confidence, 0) + 1
            if _LEVEL_RANK.get(f.confidence, -1) > _LEVEL_RANK.get(entry["confidence"], -1):
                entry["confidence"] = f.confidence
                entry["sample"] = f.masked
                entry["hash"] = keyed_hash(text[f.start : f.end], key)
    for entry in by_type.values():
        entry["by_confidence"] = {
            level: entry["by_confidence"][level] for level in _LEVEL_RANK if level in entry["by_confidence"]
        }
    return list(by_type.values())


def apply_masks(text: str, findings: Sequence[Finding]) -> str:
    """`text` with every finding's span replaced by its masked form (one pass, no re-scan)."""
    if not findings:
        return text
    parts: list[str] = []
    pos = 0
    for f in sorted(findings, key=lambda f: f.start):
        if f.start < pos:
            continue
        parts.append(text[pos : f.start])
        parts.append(f.masked)
        pos = f.end
    parts.append(text[pos:])
    return "".join(parts)
