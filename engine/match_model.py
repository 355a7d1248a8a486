"""A match model: predict that the text goes on as it did the last time its recent tokens occurred.

The n-gram models of engine/cache_model.py look at the last three or four tokens only. Code repeats much longer
spans (a declaration list, an error-handling line, a table copied between files), and that is where a compressor
like xz, which can copy any earlier span, beats them. The match model finds the most recent earlier occurrence of
the last MATCH_MIN tokens, in the current document or in the workspace's training files, measures how far back
the match goes (up to MATCH_MAX tokens) and predicts the token that followed it. The mixture then trusts the
prediction by how long the match is (match_level), the way compressors' match models do.

Hashes are baselines.suffix_hashes of MATCH_MIN tokens; a hash collision is caught by comparing the tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit

from .baselines import suffix_hashes

MATCH_MIN = 6  # tokens that must match before a prediction is made (4 measured worse on the demo corpus)
MATCH_MAX = 32  # a match is measured back this far at most
MATCH_LEVELS = 4  # no match; MATCH_MIN..11; 12..23; 24 and more tokens
_LEVEL_EDGES = np.array([MATCH_MIN, 12, 24])


def match_level(length: np.ndarray | int) -> np.ndarray:
    """Bucket of a match length: 0 for no match, then 1..MATCH_LEVELS - 1 for longer and longer matches."""
    return np.searchsorted(_LEVEL_EDGES, np.asarray(length), side="right")


def gram_hashes(tokens: np.ndarray) -> np.ndarray:
    """Hash of the MATCH_MIN tokens ending at each position (positions before MATCH_MIN - 1 hash fewer)."""
    return suffix_hashes(np.asarray(tokens, dtype=np.int32), MATCH_MIN)[MATCH_MIN]


@njit(cache=True, nogil=True)
def _match_lengths(source: np.ndarray, ends: np.ndarray, target: np.ndarray, at: np.ndarray) -> np.ndarray:
    """For each i, how many tokens source[..ends[i]] and target[..at[i]] have in common going backwards (at most
    MATCH_MAX); 0 where ends[i] < 0."""
    length = np.zeros(len(ends), dtype=np.int64)
    for i in range(len(ends)):
        n = 0
        while n < MATCH_MAX and ends[i] - n >= 0 and at[i] - n >= 0 and source[ends[i] - n] == target[at[i] - n]:
            n += 1
        length[i] = n
    return length


class MatchIndex:
    """The workspace side: for every MATCH_MIN-gram of the training streams, its last occurrence."""

    def __init__(self, streams: Sequence[np.ndarray]) -> None:
        self.tokens = np.concatenate([np.asarray(s, dtype=np.int32) for s in streams] or [np.zeros(0, np.int32)])
        ends = np.arange(MATCH_MIN - 1, len(self.tokens) - 1)  # a gram with a token after it
        hashes = gram_hashes(self.tokens)[ends]
        reverse = np.unique(hashes[::-1], return_index=True)  # the first in reverse order is the last occurrence
        self._keys = reverse[0]
        self._ends = ends[::-1][reverse[1]]

    def last_ends(self, hashes: np.ndarray) -> np.ndarray:
        """Position of the last token of each hash's last occurrence, -1 when the hash never occurred."""
        if len(self._keys) == 0:
            return np.full(len(hashes), -1, dtype=np.int64)
        idx = np.minimum(np.searchsorted(self._keys, hashes), len(self._keys) - 1)
        return np.where(self._keys[idx] == hashes, self._ends[idx], -1)


def match_predictions(tokens: np.ndarray, index: MatchIndex, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(predicted token or -1, match length) for each of tokens[start:], from the tokens before it and `index`.

    The longer of two matches wins: the last earlier occurrence in the document itself and the workspace's;
    on a tie the document's (it is closer)."""
    tokens = np.asarray(tokens, dtype=np.int32)
    n = len(tokens)
    hashes = gram_hashes(tokens)
    # the gram ending at t - 1 predicts token t; its previous occurrence in the document ends before t - 1
    order = np.argsort(hashes, kind="stable")
    previous = np.full(n, -1, dtype=np.int64)
    same = hashes[order[1:]] == hashes[order[:-1]]
    previous[order[1:][same]] = order[:-1][same]
    previous[:MATCH_MIN - 1] = -1
    t = np.arange(start, n)
    last = t - 1
    valid = last >= MATCH_MIN - 1
    doc_end = np.where(valid, previous[np.maximum(last, 0)], -1)
    doc_end = np.where(doc_end >= MATCH_MIN - 1, doc_end, -1)
    ws_end = np.where(valid, index.last_ends(hashes[np.maximum(last, 0)]), -1)
    doc_len = _match_lengths(tokens, doc_end, tokens, last)
    ws_len = _match_lengths(index.tokens, ws_end, tokens, last)
    use_doc = doc_len >= ws_len
    length = np.where(use_doc, doc_len, ws_len)
    # an end of -1 reads token 0 here; those positions have no match and are masked below
    workspace_next = index.tokens[ws_end + 1] if len(index.tokens) else -1
    predicted = np.where(use_doc, tokens[doc_end + 1], workspace_next)
    found = length >= MATCH_MIN
    return np.where(found, predicted, -1), np.where(found, length, 0)


def match_after(tokens: np.ndarray, hashes: np.ndarray, index: MatchIndex) -> tuple[int, int]:
    """(predicted next token or -1, match length) after the document `tokens`, given their gram_hashes (kept by
    the caller as the document grows, so each decoding step costs one scan instead of rehashing)."""
    n = len(tokens)
    if n < MATCH_MIN:
        return -1, 0
    key = hashes[n - 1]
    earlier = np.flatnonzero(hashes[MATCH_MIN - 1:n - 1] == key)
    doc_end = np.array([earlier[-1] + MATCH_MIN - 1 if len(earlier) else -1])
    ws_end = index.last_ends(np.array([key], dtype=np.uint64))
    at = np.array([n - 1])
    doc_len = int(_match_lengths(tokens, doc_end, tokens, at)[0])
    ws_len = int(_match_lengths(index.tokens, ws_end, tokens, at)[0])
    if max(doc_len, ws_len) < MATCH_MIN:
        return -1, 0
    if doc_len >= ws_len:
        return int(tokens[doc_end[0] + 1]), doc_len
    return int(index.tokens[ws_end[0] + 1]), ws_len
