"""server/memory.py: giving freed memory back after a model swap."""

from __future__ import annotations

import ctypes
import platform

import numpy as np

from cllm.server.memory import map_large_blocks, release_freed_memory


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]


def mapped_bytes() -> int:
    """Bytes glibc holds in blocks mapped on their own (mallinfo2's hblkhd)."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    return libc.mallinfo2().hblkhd


def test_freed_memory_is_given_back_on_glibc_and_nothing_happens_elsewhere():
    blocks = [np.ones(10_000, np.uint8) for _ in range(2_000)]  # small blocks: kept in the heap by malloc
    del blocks
    released = release_freed_memory()
    assert released is (platform.libc_ver()[0] == "glibc")


def test_large_blocks_stay_mapped_after_one_is_freed_on_glibc():
    """glibc raises its mapping threshold when a mapped block is freed, so the next block of that size came from
    an arena (and fragmented it); with map_large_blocks it is mapped again."""
    if not map_large_blocks():
        assert platform.libc_ver()[0] != "glibc", "glibc must take the setting"
        return
    first = np.ones(8 << 20, np.uint8)
    del first
    mapped_before = mapped_bytes()
    second = np.ones(8 << 20, np.uint8)
    assert mapped_bytes() - mapped_before >= 8 << 20
    del second
