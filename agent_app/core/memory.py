"""Returning start-up memory to the OS in the two long-running agent processes (docs/bench/footprint.md).

Called on the main thread of `deskwarden service` and `deskwarden agent`: `limit_malloc_arenas` first thing,
`release_startup_memory` once start-up is done, `drop_source_cache` on the helper's tick.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import linecache
import logging
import sys

log = logging.getLogger(__name__)

_M_ARENA_MAX = -8
"""glibc mallopt parameter (malloc.h)."""


def _glibc() -> ctypes.CDLL | None:
    platform: str = sys.platform
    if not platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None  # musl has neither


def limit_malloc_arenas(count: int = 2) -> bool:
    """At most `count` glibc malloc arenas, before threads start: each thread that allocates otherwise gets its own
    arena (up to 8 per core), and freed memory scattered over them is not returned. Same as MALLOC_ARENA_MAX."""
    libc = _glibc()
    return bool(libc is not None and libc.mallopt(_M_ARENA_MAX, count))


def drop_source_cache() -> None:
    """Forget source lines cached by `linecache`. PySide6 reads the source of every module imported after it to look
    for `__feature__` (PYSIDE-2029, shibokensupport/feature.py `_mod_uses_pyside`), which leaves about 6 MB of
    source text in the helper; tracebacks read the files again when they need them."""
    if linecache.cache:
        linecache.clearcache()


def release_startup_memory() -> None:
    """After start-up: drop the source cache, collect the garbage imports left, and hand free heap pages back to
    the OS (glibc `malloc_trim`)."""
    drop_source_cache()
    gc.collect()
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
