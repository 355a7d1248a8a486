"""Held-out scoring: the sliding windows every file is scored with, and the forward batches they make."""

import pytest

from cllm.engine.corpus import Document
from cllm.engine.heldout import document_nats, score_windows, scoring_batches
from cllm.engine.loading import load_model
from conftest import TINY_C_SOURCES


@pytest.mark.parametrize("length, header, window", [(10, 3, 4), (50, 5, 16), (17, 2, 32), (6, 6, 4)])
def test_sliding_windows_score_every_target_once(length, header, window):
    scored = []
    for start, first in score_windows(length, header, window):
        last = min(start + window, length - 1)
        assert start < first <= last
        scored += range(first, last + 1)
    assert scored == list(range(header, length))


def test_scoring_batches_counts_the_forward_batches_document_nats_runs(tiny_model_path):
    """The trainer's finish estimate multiplies a timed forward batch by scoring_batches: it must count what
    document_nats runs, and grow with the held-out text."""
    model = load_model(tiny_model_path)
    window = model.context
    counts = []
    for copies in (1, 4):
        docs = [Document(rel, text * copies, 0) for rel, text in sorted(TINY_C_SOURCES.items())]
        seen = []
        document_nats(model.params, model.config, model.tokenizer, docs, window,
                      progress=lambda _, done, total: seen.append(total))
        lengths = [(len(model.tokenizer.header_ids(d.path)) + len(model.tokenizer.encode(d.text)),
                    len(model.tokenizer.header_ids(d.path))) for d in docs]
        counts.append(scoring_batches(lengths, window))
        assert counts[-1] == len(seen) == -(-seen[-1] // 4)
    assert counts[1] > counts[0]
