"""Team and user names: what the endpoint accepts when it creates one (console, CLI, enrolment tokens).

A pure function; any thread.
"""

from __future__ import annotations

MAX_NAME_LENGTH = 64
NAME_PUNCTUATION = " ._@+-"


def check_name(value: str, *, what: str) -> str:
    """`value` stripped when it is 1-64 characters of letters, digits, single spaces and . _ @ + -, starting
    with a letter or digit. Unicode letters count (`Équipe 東京`); line breaks, markup, bidi controls and
    spreadsheet formula starters do not. Raises ValueError with a message fit for a page or a terminal."""
    name = value.strip()
    if not name:
        raise ValueError(f"{what} must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"{what} must have at most {MAX_NAME_LENGTH} characters")
    if not name[0].isalnum() or "  " in name or not all(c.isalnum() or c in NAME_PUNCTUATION for c in name):
        raise ValueError(
            f"{what} may hold letters, digits, single spaces and {' '.join(NAME_PUNCTUATION.strip())} "
            "and must start with a letter or digit"
        )
    return name
