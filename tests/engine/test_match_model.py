"""The match model: last earlier occurrence of the recent tokens, in the document or the workspace."""

import numpy as np
import pytest

from cllm.engine.cache_model import DocumentCache
from cllm.engine.match_model import (MATCH_LEVELS, MATCH_MAX, MATCH_MIN, MatchIndex, match_level,
                                     match_predictions)

VOCAB = 12


def _reference(tokens: np.ndarray, workspace: np.ndarray, t: int) -> tuple[int, int]:
    """(prediction, length) for tokens[t] by brute force: the longest backward match of tokens[:t] at the last
    earlier occurrence of its last MATCH_MIN tokens, document first on ties."""
    def best(source: np.ndarray, limit: int) -> tuple[int, int]:
        gram = list(tokens[t - MATCH_MIN:t])
        for end in range(limit - 1, MATCH_MIN - 2, -1):
            if list(source[end - MATCH_MIN + 1:end + 1]) == gram:
                length = 0
                while length < MATCH_MAX and end - length >= 0 and t - 1 - length >= 0 \
                        and source[end - length] == tokens[t - 1 - length]:
                    length += 1
                return int(source[end + 1]), length
        return -1, 0

    if t < MATCH_MIN:
        return -1, 0
    doc = best(tokens, t - 1)
    ws = best(workspace, len(workspace) - 1)
    chosen = doc if doc[1] >= ws[1] else ws
    return chosen if chosen[1] >= MATCH_MIN else (-1, 0)


def _streams(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A workspace and a document over a small vocabulary, both with long repeats and with each other's spans."""
    rng = np.random.default_rng(seed)
    phrase = rng.integers(0, VOCAB, 40)
    workspace = np.concatenate([rng.integers(0, VOCAB, 60), phrase, rng.integers(0, VOCAB, 30), phrase[:25]])
    document = np.concatenate([rng.integers(0, VOCAB, 30), phrase[5:30], rng.integers(0, VOCAB, 20),
                               phrase[10:40], rng.integers(0, VOCAB, 10)])
    return workspace.astype(np.int32), document.astype(np.int32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_predictions_equal_the_brute_force_definition(seed):
    workspace, document = _streams(seed)
    predicted, length = match_predictions(document, MatchIndex([workspace]), start=3)
    expected = [_reference(document, workspace, t) for t in range(3, len(document))]
    assert list(zip(predicted.tolist(), length.tolist())) == expected
    assert length.max() >= 24  # the repeated phrase gives long matches


def test_a_repeated_span_is_predicted_token_for_token():
    rng = np.random.default_rng(5)
    span = rng.integers(0, 1000, 50).astype(np.int32)
    document = np.concatenate([span, rng.integers(1000, 2000, 10).astype(np.int32), span])
    predicted, length = match_predictions(document, MatchIndex([]), start=60 + MATCH_MIN)
    assert np.array_equal(predicted, document[60 + MATCH_MIN:])
    assert length[0] == MATCH_MIN and length[-1] == MATCH_MAX


def test_the_document_cache_tracks_the_same_predictions_while_it_grows():
    workspace, document = _streams(3)
    index = MatchIndex([workspace[:70], workspace[70:]])  # streams are joined in order
    predicted, length = match_predictions(document, index)
    cache = DocumentCache(document[:1], VOCAB)
    for t in range(1, len(document)):
        assert cache.match(index) == (predicted[t], length[t])
        cache.append(int(document[t]))


def test_match_levels_grow_with_the_match_length():
    levels = match_level(np.array([0, MATCH_MIN, 11, 12, 23, 24, MATCH_MAX]))
    assert levels.tolist() == [0, 1, 1, 2, 2, 3, 3] and levels.max() == MATCH_LEVELS - 1
