"""Masking, keyed hashing and per-type summaries of PII findings (what events may carry).

Pure functions, safe from any thread. The masked form keeps the value's length and separators
and reveals at most its last four characters; a keyed hash lets repeats be correlated.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collectors.pii.detectors import Finding

MASK_CHAR = "X"
REVEAL_LAST = 4
MIN_CHARS_TO_REVEAL = 8
"""Values with fewer letters/digits than this are masked completely."""
SEPARATORS = frozenset(" -.()+@/")
"""Characters kept as they are: they show the shape of a value, not its content."""
HASH_HEX_CHARS = 16


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
    {"type", "count", "sample" (first masked value), "hash" (keyed hash of the first value)}."""
    by_type: dict[str, dict[str, Any]] = {}
    for f in findings:
        entry = by_type.get(f.type)
        if entry is None:
            by_type[f.type] = {
                "type": f.type,
                "count": 1,
                "sample": f.masked,
                "hash": keyed_hash(text[f.start : f.end], key),
            }
        else:
            entry["count"] += 1
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
