"""What console forms accept: web links (http/https only) and bounded numbers (names: `central.names`).

Pure functions raising ValueError with a message fit for the page; any thread.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2000


def web_url(value: str, *, field: str = "link") -> str:
    """`value` stripped when it is an absolute http(s) URL with a host; '' stays ''. `javascript:`, `data:`,
    relative and protocol-relative links are refused: they would run script or leave the console's control."""
    url = value.strip()
    if not url:
        return ""
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"{field} is longer than {MAX_URL_LENGTH} characters")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise ValueError(f"{field} must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValueError(f"{field} is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{field} must be an http:// or https:// URL")
    return url


def is_web_url(value: object) -> bool:
    try:
        return isinstance(value, str) and bool(web_url(value))
    except ValueError:
        return False


def bounded(value: int, *, field: str, low: int, high: int) -> int:
    if not low <= value <= high:
        raise ValueError(f"{field} must be between {low} and {high}")
    return value


def plain_text(value: str, *, field: str, max_length: int) -> str:
    """One line of text (a host name, an address): no control characters, at most `max_length` characters."""
    text = value.strip()
    if len(text) > max_length:
        raise ValueError(f"{field} must have at most {max_length} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise ValueError(f"{field} must not contain line breaks or control characters")
    return text


EVENT_KIND_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")


def event_kind(value: str) -> str:
    """An event kind such as `clipboard.sensitive` ('' stays ''): lower-case words joined by dots, at most 64."""
    kind = value.strip()
    if kind and (len(kind) > 64 or not EVENT_KIND_RE.match(kind)):
        raise ValueError("kind must be an event kind such as clipboard.sensitive")
    return kind
