"""A match model: predict that the text goes on as it did the last time its recent tokens occurred.

The n-gram models of engine/cache_model.py look at the last three or four tokens only. Code repeats much longer
spans (a declaration list, an error-handling line, a table copied between files), and that is where a compressor
like xz, which can copy any earlier span, beats them. The match model finds the most recent earlier occurrence of
the last MATCH_MIN tokens, in the current document or in the workspace's training files, measures how far back
the match goes (up to MATCH_MAX tokens) and predicts the token that followed it. The mixture then trusts the
prediction by how long the match is (match_level), the way compressors' match models do.

Copied code changes a token here and there (a renamed field, another constant in a table row). Where the recent
tokens match nowhere, the model recovers: it looks for the tokens before the last one and, skipping the token
that differs, predicts what followed them (the level RECOVERED), as a compressor's repeated-offset match does.

Hashes are baselines.suffix_hashes of MATCH_MIN tokens; a hash collision is caught by comparing the tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit

from .baselines import suffix_hashes

MATCH_MIN = 6  # tokens that must match before a prediction is made (4 measured worse on the demo corpus)
MATCH_MAX = 32  # a match is measured back this far at most
MATCH_LEVELS = 5  # none; recovered; MATCH_MIN..11; 12..23; 24 and more tokens
NO_MATCH, RECOVERED = 0, 1
_LENGTH_EDGES = np.array([12, 24])


def match_level(length: np.ndarray | int, recovered: np.ndarray | bool = False) -> np.ndarray:
    """Level of a prediction: NO_MATCH for length 0, RECOVERED, then higher levels for longer direct matches."""
    length = np.asarray(length)
    direct = RECOVERED + 1 + np.searchsorted(_LENGTH_EDGES, length, side="right")
    return np.where(length == 0, NO_MATCH, np.where(recovered, RECOVERED, direct))


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


def _resolve(tokens: np.ndarray, hashes: np.ndarray, index: MatchIndex, last: np.ndarray, doc_end: np.ndarray,
             skip: int) -> tuple[np.ndarray, np.ndarray]:
    """(predicted token or -1, match length) for the grams of `tokens` ending at `last`, given the end of each
    one's last earlier occurrence in the document (`doc_end`, -1 for none): the longer of that match and the
    workspace's wins (the document's on a tie, it is closer), and predicts the token `skip` after its end."""
    valid = last >= MATCH_MIN - 1
    doc_end = np.where(valid & (doc_end >= MATCH_MIN - 1), doc_end, -1)
    ws_end = np.where(valid, index.last_ends(hashes[np.maximum(last, 0)]), -1)
    doc_len = _match_lengths(tokens, doc_end, tokens, last)
    ws_len = _match_lengths(index.tokens, ws_end, tokens, last)
    ws_next = ws_end + skip
    ws_len = np.where(ws_next < len(index.tokens), ws_len, 0)  # the workspace ends before the predicted token
    use_doc = doc_len >= ws_len
    length = np.where(use_doc, doc_len, ws_len)
    # unmatched positions read some in-range token here; they are masked below
    workspace_next = index.tokens[np.clip(ws_next, 0, len(index.tokens) - 1)] if len(index.tokens) else -1
    predicted = np.where(use_doc, tokens[np.clip(doc_end + skip, 0, len(tokens) - 1)], workspace_next)
    found = length >= MATCH_MIN
    return np.where(found, predicted, -1), np.where(found, length, 0)


def longest_matches(tokens: np.ndarray, index: MatchIndex, start: int = 0,
                    skip: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(predicted token or -1, match length) for each of tokens[start:] from the match of the tokens ending
    `skip` before it: skip 1 is the direct match, skip 2 the recovery past one differing token."""
    tokens = np.asarray(tokens, dtype=np.int32)
    hashes = gram_hashes(tokens)
    # the last earlier position with the same gram hash (a stable sort keeps equal hashes in document order)
    order = np.argsort(hashes, kind="stable")
    previous = np.full(len(tokens), -1, dtype=np.int64)
    same = hashes[order[1:]] == hashes[order[:-1]]
    previous[order[1:][same]] = order[:-1][same]
    last = np.arange(start, len(tokens)) - skip
    return _resolve(tokens, hashes, index, last, np.where(last >= 0, previous[np.maximum(last, 0)], -1), skip)


def _combine(direct: tuple[np.ndarray, np.ndarray], recovered: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(predicted token or -1, match_level): the direct match where there is one, else the recovered one."""
    (predicted, length), (fallback, fallback_length) = direct, recovered
    use_direct = length > 0
    return (np.where(use_direct, predicted, fallback),
            match_level(np.where(use_direct, length, fallback_length), recovered=~use_direct))


def match_predictions(tokens: np.ndarray, index: MatchIndex, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(predicted token or -1, match_level) for each of tokens[start:], from the tokens before it and `index`."""
    return _combine(longest_matches(tokens, index, start, skip=1), longest_matches(tokens, index, start, skip=2))


def match_after(tokens: np.ndarray, hashes: np.ndarray, index: MatchIndex, written: int | None = None) -> tuple[int, int]:
    """(predicted next token or -1, match_level) after the document `tokens`, given their gram_hashes (kept by
    the caller as the document grows, so each decoding step costs a scan instead of rehashing). Only the first
    `written` tokens (default all) are copied from: the rest are a completion's own output."""
    tokens = np.asarray(tokens, dtype=np.int32)
    n = len(tokens)
    if n < MATCH_MIN:
        return -1, NO_MATCH

    copyable = n if written is None else written

    def after(skip: int) -> tuple[np.ndarray, np.ndarray]:
        last = n - skip
        earlier = np.flatnonzero(hashes[:min(last, copyable - skip)] == hashes[last])  # the copied token is written
        doc_end = np.array([earlier[-1] if len(earlier) else -1])
        return _resolve(tokens, hashes, index, np.array([last]), doc_end, skip)

    predicted, level = _combine(after(1), after(2))
    return int(predicted[0]), int(level[0])
