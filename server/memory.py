"""Giving freed memory back to the system after a model swap (glibc only).

Swapping a model in frees the old weights and the temporaries of building its workspace index, often on other
threads than the one that allocated them. glibc keeps such freed blocks in its per-thread arenas instead of
returning them, so a long-running language server's RSS stayed about 130 MB above what it uses after each swap
(measured on the demo corpus: 447 MB against 302 MB after `malloc_trim`). `release_freed_memory` asks glibc to
return them; elsewhere (macOS, musl, Windows) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import platform

log = logging.getLogger("cllm.memory")


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (the only one with malloc_trim), else None."""
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> bool:
    """Return the freed memory of every malloc arena to the system; True when glibc did (it trimmed something)."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.malloc_trim(0))
