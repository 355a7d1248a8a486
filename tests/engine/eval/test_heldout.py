"""Held-out scoring: the sliding windows every file is scored with, and the forward batches they make."""

import importlib

import pytest

from cllm.engine.data.corpus import Document
from cllm.engine.eval.heldout import (affordable, batch_seconds, document_nats, score_windows, scoring_batches,
                                 typical_position)
from cllm.engine.complete.serving import load_model
from cllm.engine.complete.ngram import KneserNey
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


def test_affordable_keeps_the_documents_whose_batches_fit_and_only_the_first_file_beyond():
    """Window 8 scores a document of n tokens (header 1) in n // 4 - 1 windows, 4 windows to a batch: the sample
    fits the batches it is given; none is too few for the sample's first file, taken whole."""
    docs = [Document(f"f{i}.c", "", 0) for i in range(10)]
    lengths = [(4 * (i + 2), 1) for i in range(10)]  # 1 to 10 windows each, 55 in all: 14 batches
    assert affordable(docs, lengths, 8, 14) == docs
    for max_batches in (3, 6, 10):
        sample = affordable(docs, lengths, 8, max_batches)
        kept = [length for doc, length in zip(docs, lengths) if doc in sample]
        assert 1 < len(sample) < len(docs) and scoring_batches(kept, 8) <= max_batches
    assert len(affordable(docs, lengths, 8, 0)) == 1


def test_batch_seconds_times_the_pooled_component_at_the_files_typical_position(tiny_model_path, monkeypatch):
    """The pooled component's cost per token grows with its position in the file, so one batch is timed around
    the position where that cost equals its average over the held-out files: sum(n^2) / (2 sum(n))."""
    assert typical_position([1000]) == 500 and typical_position([1000, 3000]) == 1250 and typical_position([]) == 0
    heldout = importlib.import_module("cllm.engine.eval.heldout")
    model = load_model(tiny_model_path)
    starts = []

    class Recorded(heldout.PooledProbs):
        def __init__(self, kn, tokens, start, vocab_size):
            starts.append(start)
            super().__init__(kn, tokens, start, vocab_size)

    monkeypatch.setattr(heldout, "PooledProbs", Recorded)
    kn = KneserNey([model.tokenizer.encode(text) for text in TINY_C_SOURCES.values()], model.tokenizer.vocab_size,
                   model.tokenizer.eot_id)
    scored = 4 * (model.context // 2)
    for lengths in ([1000, 3000], [20_000]):  # its result is a duration (speed is for benchmarks/): only where it times
        batch_seconds(model.params, model.config, model.context, kn, lengths)
    assert starts == [max(1250 - scored // 2, 1), 10_000 - scored // 2]
