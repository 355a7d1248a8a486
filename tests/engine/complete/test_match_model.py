"""The match model: last earlier occurrence of the recent tokens, in the document or the workspace."""

import numpy as np
import pytest

from cllm.engine.complete.mixture import DocumentCache
from cllm.engine.complete.match_model import (MATCH_LEVELS, MATCH_MAX, MATCH_MIN, MATCH_ORDERS, NO_MATCH, RECOVERED, MatchIndex,
                                     longest_matches, match_level, match_predictions)

VOCAB = 12


def _reference(tokens: np.ndarray, workspace: np.ndarray, t: int, skip: int = 1) -> tuple[int, int]:
    """(prediction, length) for tokens[t] by brute force: for each gram length of MATCH_ORDERS, the last earlier
    occurrence (with a token after it) of the gram ending `skip` tokens before t, in the document and in the
    workspace; the longest backward match wins (the document on a tie, then the shorter gram) and predicts the
    token `skip` after its occurrence."""
    last = t - skip

    def best(source: np.ndarray, limit: int, order: int) -> tuple[int, int]:
        gram = list(tokens[last - order + 1:last + 1])
        for end in range(min(limit, len(source) - 1) - 1, order - 2, -1):
            if list(source[end - order + 1:end + 1]) == gram:
                if end + skip >= len(source):  # the source ends before the predicted token
                    return -1, 0
                length = 0
                while length < MATCH_MAX and end - length >= 0 and source[end - length] == tokens[last - length]:
                    length += 1
                return int(source[end + skip]), length
        return -1, 0

    chosen = (-1, 0)
    for order in MATCH_ORDERS:
        if last < order - 1:
            break
        doc, ws = best(tokens, last, order), best(workspace, len(workspace), order)
        candidate = doc if doc[1] >= ws[1] else ws
        if candidate[1] > chosen[1]:
            chosen = candidate
    return chosen if chosen[1] >= MATCH_MIN else (-1, 0)


def _streams(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A workspace and a document over a small vocabulary, both with long repeats and with each other's spans."""
    rng = np.random.default_rng(seed)
    phrase = rng.integers(0, VOCAB, 40)
    workspace = np.concatenate([rng.integers(0, VOCAB, 60), phrase, rng.integers(0, VOCAB, 30), phrase[:25]])
    document = np.concatenate([rng.integers(0, VOCAB, 30), phrase[5:30], rng.integers(0, VOCAB, 20),
                               phrase[10:40], rng.integers(0, VOCAB, 10)])
    return workspace.astype(np.int32), document.astype(np.int32)


@pytest.mark.parametrize("skip", [1, 2])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_equal_the_brute_force_definition(seed, skip):
    workspace, document = _streams(seed)
    predicted, length = longest_matches(document, MatchIndex([workspace]), start=3, skip=skip)
    expected = [_reference(document, workspace, t, skip) for t in range(3, len(document))]
    assert list(zip(predicted.tolist(), length.tolist())) == expected
    assert length.max() >= 24  # the repeated phrase gives long matches


def test_a_longer_aligned_occurrence_beats_the_latest_short_one():
    rng = np.random.default_rng(9)
    span = rng.integers(0, 1000, 20).astype(np.int32)
    tail = span[-MATCH_MIN:]
    latest = np.concatenate([rng.integers(1000, 2000, 10), tail, [4000]]).astype(np.int32)  # shares the last 6
    document = np.concatenate([span, [3000], latest, span, [3000]])
    predicted, length = longest_matches(document, MatchIndex([]), start=len(document) - 1)
    assert length[0] == len(span)  # aligned with the first copy, not with the latest six tokens
    assert predicted[0] == 3000


def test_a_changed_token_is_skipped_by_the_recovered_match():
    rng = np.random.default_rng(7)
    line = rng.integers(0, 1000, 20).astype(np.int32)
    changed = line.copy()
    changed[12] = 5000  # the copy differs in one token
    predicted, level = match_predictions(np.concatenate([line, changed]), MatchIndex([]), start=20)
    assert level[13] == RECOVERED and predicted[13] == line[13]  # past the change, the copy goes on
    assert level[12] > RECOVERED and predicted[12] == line[12]  # the change itself was not foreseeable
    assert np.all(level[:MATCH_MIN] == NO_MATCH)


def test_a_repeated_span_is_predicted_token_for_token():
    rng = np.random.default_rng(5)
    span = rng.integers(0, 1000, 50).astype(np.int32)
    document = np.concatenate([span, rng.integers(1000, 2000, 10).astype(np.int32), span])
    predicted, length = longest_matches(document, MatchIndex([]), start=60 + MATCH_MIN)
    assert np.array_equal(predicted, document[60 + MATCH_MIN:])
    assert length[0] == MATCH_MIN and length[-1] == MATCH_MAX
    assert np.array_equal(match_predictions(document, MatchIndex([]), start=60 + MATCH_MIN)[0], predicted)


def test_the_document_cache_tracks_the_same_predictions_while_it_grows():
    workspace, document = _streams(3)
    index = MatchIndex([workspace[:70], workspace[70:]])  # streams are joined in order
    predicted, level = match_predictions(document, index)
    assert set(level.tolist()) == set(range(MATCH_LEVELS))  # every level occurs
    for begin in (1, 30):  # a cache started from one token, and one started past the longest gram
        cache = DocumentCache(document[:begin], VOCAB)
        for t in range(begin, len(document)):
            assert cache.match(index) == (predicted[t], level[t])
            cache.append(int(document[t]))


def test_match_levels_grow_with_the_match_length():
    levels = match_level(np.array([0, MATCH_MIN, 11, 12, 23, 24, MATCH_MAX]))
    assert levels.tolist() == [NO_MATCH, 2, 2, 3, 3, 4, 4] and levels.max() == MATCH_LEVELS - 1
    assert match_level(np.array([0, MATCH_MIN, MATCH_MAX]), recovered=True).tolist() == [NO_MATCH, RECOVERED, RECOVERED]
