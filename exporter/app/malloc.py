"""Fewer glibc malloc arenas for the exporter's process.

Why (issue 20): glibc gives each thread that allocates under contention an arena of its own (up to
8 per core) and rarely hands their free pages back. The exporter's threads (the HTTP loop, the
/metrics render, aiohttp's resolver and executor threads) allocate while the ingest loop does, and
a 200-node exporter showed two such arenas of 45 and 58 MB beside the main heap. Two arenas in all
is what ``MALLOC_ARENA_MAX=2`` gives, the setting many Python services run with; an operator's own
``MALLOC_ARENA_MAX`` wins.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)
ARENAS = 2


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's arenas (before threads start); False where it does not apply (not glibc, or set)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        if not hasattr(libc, "gnu_get_libc_version"):  # musl and others: no arenas to cap
            return False
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except OSError:
        return False
