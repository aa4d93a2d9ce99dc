"""An event's `data` as short "name: value" pairs for the device page, instead of a raw JSON blob.

Pure; called by the template renderer in a request's worker thread. Values are already agent-side safe (types,
counts, masked samples); this only shapes them for reading and caps their length.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

MAX_FIELDS = 12
MAX_VALUE = 120
TIMES = "\N{MULTIPLICATION SIGN}"


def _finding(item: Any) -> str:
    if not isinstance(item, Mapping):
        return _compact(item)
    text = f"{item.get('count', 1)} {TIMES} {item.get('type', '?')}"
    if item.get("sample"):
        text += f" ({item['sample']})"
    if item.get("confidence"):
        text += f", {item['confidence']}"
    return text


def _compact(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        return f"{value:,}" if isinstance(value, int) and abs(value) >= 10_000 else str(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(", ", ": "))


def _capped(text: str) -> str:
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


def event_fields(data: Any) -> list[tuple[str, str]]:
    """`data`'s keys in order with readable values; findings as "count x type (masked sample)"; at most
    `MAX_FIELDS` pairs, the rest counted in a last "…" pair."""
    if not isinstance(data, Mapping):
        return [] if data is None else [("data", _capped(_compact(data)))]
    pairs: list[tuple[str, str]] = []
    for key, value in sorted(data.items()):
        if key == "findings" and isinstance(value, list):
            shown = "; ".join(_finding(item) for item in value) or "none"
        else:
            shown = _compact(value)
        pairs.append((str(key)[:64], _capped(shown)))
    if len(pairs) > MAX_FIELDS:
        rest = len(pairs) - MAX_FIELDS
        pairs = [*pairs[:MAX_FIELDS], ("…", f"{rest} more")]
    return pairs
