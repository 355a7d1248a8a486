"""Held-out scoring: the sliding windows every file is scored with."""

import pytest

from cllm.engine.heldout import score_windows


@pytest.mark.parametrize("length, header, window", [(10, 3, 4), (50, 5, 16), (17, 2, 32), (6, 6, 4)])
def test_sliding_windows_score_every_target_once(length, header, window):
    scored = []
    for start, first in score_windows(length, header, window):
        last = min(start + window, length - 1)
        assert start < first <= last
        scored += range(first, last + 1)
    assert scored == list(range(header, length))
