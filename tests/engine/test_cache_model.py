"""The workspace cache model: a document cache n-gram, EM-fitted mixture weights, decoding from the mixture."""

import numpy as np
import pytest

from cllm.engine.baselines import KneserNey
from cllm.engine.cache_model import (
    COMPONENTS, N_BUCKETS, MixtureCompleter, cache_distribution, cache_probs, fit_mixture,
)
from cllm.engine.generate import CompletionOptions, load_model

VOCAB = 40


def _document() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.concatenate([rng.integers(5, 30, 50), np.tile(np.arange(5, 12), 5), rng.integers(5, 30, 20)]).astype(np.int32)


def test_cache_distribution_sums_to_one_and_matches_cache_probs():
    tokens = _document()
    probs, matched = cache_probs(tokens, VOCAB)
    for i in (0, 1, 7, 60, 84, len(tokens) - 1):
        p, order = cache_distribution(tokens[:i], VOCAB)
        assert p.sum() == pytest.approx(1.0, abs=1e-12) and p.min() > 0
        assert p[tokens[i]] == pytest.approx(probs[i], rel=1e-12) and order == matched[i]
    assert matched[0] == 0 and matched[70] == 4
    assert probs[70:85].min() > 0.5  # the repeated pattern is copied from earlier in the document


def test_fit_mixture_rows_sum_to_one_and_favour_the_better_component():
    rng = np.random.default_rng(0)
    n = 2000
    probs = np.stack([rng.uniform(0.5, 0.9, n), rng.uniform(0.0, 0.1, n), rng.uniform(0.0, 0.1, n)], axis=1)
    buckets = rng.integers(0, N_BUCKETS, n)
    mixture = fit_mixture(probs, buckets)
    assert mixture.weights.shape == (N_BUCKETS, COMPONENTS)
    np.testing.assert_allclose(mixture.weights.sum(axis=1), 1.0)
    assert mixture.weights[:, 0].min() > 0.8
    assert np.log(mixture.mix(probs, buckets)).sum() > np.log(probs.mean(axis=1)).sum()


def test_mixture_completer_follows_the_cache_when_weighted_to_it(tiny_model_path):
    model = load_model(tiny_model_path)
    tok = model.tokenizer
    kn = KneserNey([tok.encode_document("x.c", "int zzz_counter = 0;\n")], tok.vocab_size, tok.eot_id)
    all_cache = fit_mixture(np.tile([1e-9, 1e-9, 1.0], (50, 1)), np.zeros(50, dtype=np.int64))
    all_cache.weights[:] = [0.0, 0.0, 1.0]
    prefix = "int zzz_counter = 0;\nint zzz_counter = 0;\nint zzz_"
    completion = MixtureCompleter(model, kn, all_cache).complete(prefix, "", CompletionOptions(max_ms=1e9), path="x.c")
    assert completion.text == "counter = 0;"
