"""A match model: predict that the text goes on as it did the last time its recent tokens occurred.

Code repeats spans longer than the n-grams' three or four tokens (declaration lists, error handling, tables).
The model finds the most recent earlier occurrence of the last MATCH_ORDERS tokens, in the document or the
workspace, measures how far back it matches (up to MATCH_MAX) and predicts the token that followed the longest;
the mixture trusts it by that length (match_level). Where nothing matches, it skips the last token (a renamed
field) and predicts what followed the tokens before it (RECOVERED), as a compressor's repeated-offset match does.
Hash collisions are caught by comparing the tokens. Each prediction also says where the token it copies lies (its
origin: a position in the workspace's tokens, or past them in the document's), so that a suggestion can name the
file and line it was copied from (sources.py). See docs/decisions.md, "The match model".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit

from .ngram import suffix_hash_rows

MATCH_MIN = 6  # tokens that must match before a prediction is made; see docs/decisions.md, "The match model"
MATCH_ORDERS = (MATCH_MIN, 12, 24)  # gram lengths looked up
MATCH_MAX = 32  # a match is measured back this far at most
MATCH_LEVELS = 2 + len(MATCH_ORDERS)  # none; recovered; then by length: MATCH_MIN..11, 12..23, 24 and more
NO_MATCH, RECOVERED = 0, 1
_LENGTH_EDGES = np.array(MATCH_ORDERS[1:])
Match = tuple[np.ndarray, np.ndarray, np.ndarray]  # per position: predicted token or -1, length or level, origin


def match_level(length: np.ndarray | int, recovered: np.ndarray | bool = False) -> np.ndarray:
    """Level of a prediction: NO_MATCH for length 0, RECOVERED, then higher levels for longer direct matches."""
    length = np.asarray(length)
    direct = RECOVERED + 1 + np.searchsorted(_LENGTH_EDGES, length, side="right")
    return np.where(length == 0, NO_MATCH, np.where(recovered, RECOVERED, direct))


def gram_hashes(tokens: np.ndarray) -> np.ndarray:
    """Hashes of the grams of each of MATCH_ORDERS tokens ending at each position, shape (len(MATCH_ORDERS), n)
    (positions before the gram's length - 1 hash fewer tokens)."""
    return np.stack(suffix_hash_rows(np.asarray(tokens, dtype=np.int32), MATCH_ORDERS))


@njit(cache=True, nogil=True, inline="always")
def _match_length(source: np.ndarray, end: int, target: np.ndarray, at: int) -> int:
    """How many tokens source[..end] and target[..at] have in common going backwards (at most MATCH_MAX); 0 when
    end < 0."""
    n = 0
    while n < MATCH_MAX and end - n >= 0 and at - n >= 0 and source[end - n] == target[at - n]:
        n += 1
    return n


@njit(cache=True, nogil=True)
def _resolve_kernel(tokens: np.ndarray, hashes: np.ndarray, keys: np.ndarray, table_ends: np.ndarray,
                    workspace: np.ndarray, order: int, last: np.ndarray, doc_end: np.ndarray,
                    skip: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """_resolve, one position at a time (see there)."""
    predicted = np.full(len(last), -1, np.int64)
    length = np.zeros(len(last), np.int64)
    origin = np.full(len(last), -1, np.int64)
    for i in range(len(last)):
        at = last[i]
        if at < order - 1:
            continue
        d_end = doc_end[i] if doc_end[i] >= order - 1 else -1
        w_end = -1
        if len(keys):
            j = max(np.searchsorted(keys, hashes[at], side="right") - 1, 0)
            if keys[j] == hashes[at]:
                w_end = table_ends[j]
        d_len = _match_length(tokens, d_end, tokens, at)
        w_len = _match_length(workspace, w_end, tokens, at) if w_end + skip < len(workspace) else 0
        if d_len >= w_len and d_len >= MATCH_MIN:
            at_doc = min(max(d_end + skip, 0), len(tokens) - 1)
            predicted[i], length[i], origin[i] = tokens[at_doc], d_len, len(workspace) + at_doc
        elif d_len < w_len and w_len >= MATCH_MIN:
            predicted[i], length[i], origin[i] = workspace[w_end + skip], w_len, w_end + skip
    return predicted, length, origin


@njit(cache=True, nogil=True)
def _last_equal(row: np.ndarray, limit: int, key: np.uint64) -> int:
    """The last position before `limit` where row holds `key`, -1 when there is none."""
    for p in range(min(limit, len(row)) - 1, -1, -1):
        if row[p] == key:
            return p
    return -1


class MatchIndex:
    """The workspace side: for every gram of MATCH_ORDERS tokens in the training streams, its last occurrence;
    and, when built from a workspace index, which file each token span belongs to (`file_at`)."""

    def __init__(self, streams: Sequence[np.ndarray]) -> None:
        self.tokens = np.concatenate([np.asarray(s, dtype=np.int32) for s in streams] or [np.zeros(0, np.int32)])
        self._starts, self._files = np.zeros(0, np.int64), []
        all_hashes = gram_hashes(self.tokens)
        self._tables = []
        for o, order in enumerate(MATCH_ORDERS):
            ends = np.arange(order - 1, len(self.tokens) - 1)  # a gram with a token after it
            # the first in reverse order is the last occurrence
            keys, first = np.unique(all_hashes[o][ends][::-1], return_index=True)
            self._tables.append((keys, ends[::-1][first]))

    @classmethod
    def from_occurrences(cls, tokens: np.ndarray, tables: Sequence[tuple[np.ndarray, np.ndarray]],
                         files: Sequence[tuple[str, int, int]] = ()) -> MatchIndex:
        """The index of `tokens` from, per gram order, (hashes, end positions) sorted by hash then position; of
        several occurrences the last is used (workspace_index.py keeps them all to take a file's grams out).
        `files`: (path, start, length) of each file's token span."""
        index = cls.__new__(cls)
        index.tokens, index._tables = tokens, list(tables)
        spans = sorted((start, length, path) for path, start, length in files)
        index._starts = np.array([start for start, _, _ in spans], np.int64)
        index._files = [(path, start, length) for start, length, path in spans]
        return index

    def file_at(self, position: int) -> tuple[str, int] | None:
        """(path, start of its span) of the file whose tokens hold `position`, None when no known file does."""
        at = int(np.searchsorted(self._starts, position, side="right")) - 1
        if at < 0:
            return None
        path, start, length = self._files[at]
        return (path, start) if position < start + length else None

    def last_ends(self, o: int, hashes: np.ndarray) -> np.ndarray:
        """Position of the last token of the last occurrence of each hash of MATCH_ORDERS[o] tokens, -1 when the
        hash never occurred."""
        keys, ends = self._tables[o]
        if len(keys) == 0:
            return np.full(len(hashes), -1, dtype=np.int64)
        idx = np.maximum(np.searchsorted(keys, hashes, side="right") - 1, 0)
        return np.where(keys[idx] == hashes, ends[idx], -1)


def _resolve(tokens: np.ndarray, hashes: np.ndarray, index: MatchIndex, o: int, last: np.ndarray,
             doc_end: np.ndarray, skip: int) -> Match:
    """(predicted token or -1, match length, origin) for the grams of MATCH_ORDERS[o] tokens ending at `last`,
    given the end of each one's last earlier occurrence in the document (`doc_end`, -1: none): the longer of that
    match and the workspace's wins (the document's on a tie), predicting the token `skip` after its end. The origin
    is that token's position: below len(index.tokens) in the workspace's tokens, else len(index.tokens) plus its
    position in the document (-1 without a prediction)."""
    keys, ends = index._tables[o]
    return _resolve_kernel(tokens, hashes, keys, ends, index.tokens, MATCH_ORDERS[o], np.asarray(last, np.int64),
                           np.asarray(doc_end, np.int64), skip)


def _longest(candidates: Sequence[Match]) -> Match:
    """Per position, the (prediction, length, origin) of the candidate (one per gram order, shortest first) with
    the longest match; on a tie the shorter gram's (its occurrence is at least as recent)."""
    predicted, length, origin = candidates[0]
    for other, other_length, other_origin in candidates[1:]:
        better = other_length > length
        predicted, origin = np.where(better, other, predicted), np.where(better, other_origin, origin)
        length = np.where(better, other_length, length)
    return predicted, length, origin


def _occurrences(tokens: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per gram order: (the grams' hashes, the last earlier position with the same hash or -1), from a stable sort
    that keeps equal hashes in document order."""
    occurrences = []
    for hashes in gram_hashes(tokens):
        order = np.argsort(hashes, kind="stable")
        previous = np.full(len(hashes), -1, dtype=np.int64)
        same = hashes[order[1:]] == hashes[order[:-1]]
        previous[order[1:][same]] = order[:-1][same]
        occurrences.append((hashes, previous))
    return occurrences


def _matches(tokens: np.ndarray, occurrences: list[tuple[np.ndarray, np.ndarray]], index: MatchIndex, start: int,
             skip: int) -> Match:
    """longest_matches, given the document's _occurrences."""
    last = np.arange(start, len(tokens)) - skip
    candidates = []
    for o, (hashes, previous) in enumerate(occurrences):
        doc_end = np.where(last >= 0, previous[np.maximum(last, 0)], -1)
        candidates.append(_resolve(tokens, hashes, index, o, last, doc_end, skip))
    return _longest(candidates)


def longest_matches(tokens: np.ndarray, index: MatchIndex, start: int = 0,
                    skip: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(predicted token or -1, match length) for each of tokens[start:] from the match of the tokens ending
    `skip` before it: skip 1 is the direct match, skip 2 the recovery past one differing token."""
    tokens = np.asarray(tokens, dtype=np.int32)
    return _matches(tokens, _occurrences(tokens), index, start, skip)[:2]


def _combine(direct: Match, recovered: Match) -> Match:
    """(predicted token or -1, match_level, origin): the direct match where there is one, else the recovered one."""
    (predicted, length, origin), (fallback, fallback_length, fallback_origin) = direct, recovered
    use_direct = length > 0
    return (np.where(use_direct, predicted, fallback),
            match_level(np.where(use_direct, length, fallback_length), recovered=~use_direct),
            np.where(use_direct, origin, fallback_origin))


def match_predictions(tokens: np.ndarray, index: MatchIndex, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(predicted token or -1, match_level) for each of tokens[start:], from the tokens before it and `index`."""
    tokens = np.asarray(tokens, dtype=np.int32)
    occurrences = _occurrences(tokens)  # hashed and sorted once for both
    return _combine(_matches(tokens, occurrences, index, start, 1), _matches(tokens, occurrences, index, start, 2))[:2]


def match_after(tokens: np.ndarray, hashes: np.ndarray, index: MatchIndex, written: int) -> tuple[int, int, int]:
    """(predicted next token or -1, match_level, origin: see _resolve) after the document `tokens`, given their
    gram_hashes (kept by the caller as the document grows); only the first `written` tokens are copied from."""
    tokens = np.asarray(tokens, dtype=np.int32)
    n = len(tokens)
    if n < MATCH_MIN:
        return -1, NO_MATCH, -1

    def after(skip: int) -> Match:
        last = n - skip
        candidates = []
        for o, order_hashes in enumerate(hashes):
            # earlier occurrences whose copied token is written
            doc_end = np.array([_last_equal(order_hashes, max(min(last, written - skip), 0), order_hashes[last])])
            candidates.append(_resolve(tokens, order_hashes, index, o, np.array([last]), doc_end, skip))
        return _longest(candidates)

    direct = after(1)
    recovered = direct if direct[1][0] > 0 else after(2)  # the recovery is only needed where nothing matches
    predicted, level, origin = _combine(direct, recovered)
    return int(predicted[0]), int(level[0]), int(origin[0])
