"""The hashed Kneser-Ney n-gram model (the 5-gram of the mixture and of `cllm eval`'s baseline)."""

import numpy as np
import pytest

from cllm.engine.complete.ngram import KneserNey, next_suffix_hashes, suffix_hash_rows, suffix_hashes

VOCAB = 40


def _docs() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(5, 30, size=400).astype(np.int32), np.tile(np.arange(5, 12, dtype=np.int32), 40)]


@pytest.mark.parametrize("context", [[], [5, 6, 7, 8], [1, 2, 3], [39, 39, 39, 39, 39], list(range(5, 12)) * 3])
def test_kn_distribution_sums_to_one_over_the_vocabulary(context):
    kn = KneserNey(_docs(), VOCAB, pad_id=0)
    p = kn.distribution(np.array(context, dtype=np.int32))
    assert p.shape == (VOCAB,)
    assert p.sum() == pytest.approx(1.0, abs=1e-9)
    assert p.min() > 0.0  # unseen tokens keep mass through the uniform floor


def test_kn_logprobs_agree_with_distribution():
    kn = KneserNey(_docs(), VOCAB, pad_id=0)
    tokens = np.array([5, 6, 7, 20, 21, 8, 9, 10, 33, 5], dtype=np.int32)
    expected = [np.log(kn.distribution(tokens[:i])[tokens[i]]) for i in range(2, len(tokens))]
    np.testing.assert_allclose(kn.logprobs(tokens, start=2), expected, rtol=1e-9)


def test_kn_learns_a_repeated_pattern_and_completes_it():
    kn = KneserNey(_docs(), VOCAB, pad_id=0)
    pattern = np.tile(np.arange(5, 12, dtype=np.int32), 3)
    assert np.exp(kn.logprobs(pattern, start=5)).min() > 0.8
    decoded = kn.greedy_line(np.array([10, 11, 5, 6, 7], dtype=np.int32), lambda ids: bytes(65 + i for i in ids), max_tokens=4)
    assert decoded == "".join(chr(65 + t) for t in (8, 9, 10, 11))


def test_kn_matched_orders_grow_with_seen_context():
    kn = KneserNey([np.arange(5, 25, dtype=np.int32)], VOCAB, pad_id=0)
    orders = kn.matched_orders(np.array([30, 31, 5, 6, 7, 8, 9], dtype=np.int32))
    assert list(orders) == [5, 1, 1, 2, 3, 4, 5]  # the first context is the padding, seen at the stream start


def test_kn_refuses_empty_training_data():
    with pytest.raises(ValueError, match="no training tokens"):
        KneserNey([], VOCAB, pad_id=0)


def test_suffix_hashes_follow_their_definition_and_extend_one_token_at_a_time():
    stream = np.random.default_rng(3).integers(0, 300, 200).astype(np.int32)
    rows = suffix_hash_rows(stream, [0, 2, 5])
    seed = rows[0][0]
    for i in (0, 1, 4, 199):
        for row, n in zip(rows, (0, 2, 5)):  # the fold of the n tokens ending at i (fewer at the start)
            h = seed
            for token in stream[max(i - n + 1, 0):i + 1] if n else []:
                h = next_suffix_hashes(np.full(2, h), int(token), 1)[1]
            assert row[i] == h
    hashes = suffix_hashes(stream, 5)
    chain = None
    for i, token in enumerate(stream):
        chain = next_suffix_hashes(chain, int(token), 5)
        assert chain.tolist() == [row[i] for row in hashes]
    assert len(set(hashes[5][4:].tolist())) > 190  # distinct grams get distinct keys
