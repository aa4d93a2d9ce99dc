"""Whether this process runs privileged (root, or an elevated administrator or SYSTEM). Asked from the main thread
by the entry points and by enrolment, which picks the machine-wide state directory and secret store with it."""

from __future__ import annotations

import os
import sys


def privileged() -> bool:
    """Root on Unix; an elevated administrator or SYSTEM on Windows."""
    platform: str = sys.platform  # a plain str, so mypy --platform checks every branch
    if platform == "win32":
        import ctypes

        try:
            return bool(getattr(ctypes, "windll").shell32.IsUserAnAdmin())  # noqa: B009 - absent off Windows
        except (AttributeError, OSError):
            return False
    geteuid = getattr(os, "geteuid", None)
    return geteuid is not None and geteuid() == 0
