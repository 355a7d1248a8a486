"""server/memory.py: giving freed memory back after a model swap."""

from __future__ import annotations

import platform
import subprocess
import sys

import numpy as np

from cllm.server.memory import release_freed_memory


def test_freed_memory_is_given_back_on_glibc_and_nothing_happens_elsewhere():
    blocks = [np.ones(10_000, np.uint8) for _ in range(2_000)]  # small blocks: kept in the heap by malloc
    del blocks
    released = release_freed_memory()
    assert released is (platform.libc_ver()[0] == "glibc")


# Run in a fresh interpreter: glibc serves a block from an arena's free space before it considers mapping one, so
# in a process whose heap earlier work left with large free chunks (this test session) the check would say nothing.
_MAPPED_AGAIN = """
import ctypes, sys
import numpy as np
from cllm.server.memory import map_large_blocks

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
if not map_large_blocks():
    sys.exit(3)
first = np.ones(8 << 20, np.uint8)
del first
before = libc.mallinfo2().hblkhd
second = np.ones(8 << 20, np.uint8)
print(libc.mallinfo2().hblkhd - before)
"""


def test_large_blocks_stay_mapped_after_one_is_freed_on_glibc():
    """glibc raises its mapping threshold when a mapped block is freed, so the next block of that size came from
    an arena (and fragmented it); with map_large_blocks it is mapped again."""
    run = subprocess.run([sys.executable, "-c", _MAPPED_AGAIN], capture_output=True, text=True, timeout=120)
    if platform.libc_ver()[0] != "glibc":
        assert run.returncode == 3, run.stderr
        return
    assert run.returncode == 0, run.stderr
    assert int(run.stdout) >= 8 << 20
