"""server/memory.py: giving freed memory back after a model swap."""

from __future__ import annotations

import platform

import numpy as np

from cllm.server.memory import release_freed_memory


def test_freed_memory_is_given_back_on_glibc_and_nothing_happens_elsewhere():
    blocks = [np.ones(10_000, np.uint8) for _ in range(2_000)]  # small blocks: kept in the heap by malloc
    del blocks
    released = release_freed_memory()
    assert released is (platform.libc_ver()[0] == "glibc")
