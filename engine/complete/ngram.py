"""Hashed n-gram counts over token ids: the suffix hashes every n-gram model keys on, the interpolated back-off
chain, and an interpolated modified Kneser-Ney model.

Used by the completion mixture's workspace 5-gram and document cache, the match model's lookups, and `cllm eval`'s
5-gram baseline (which shares the model's tokenizer, so its scores compare directly).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit

_HASH_SEED = np.uint64(0x243F6A8885A308D3)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


@njit(cache=True, nogil=True, inline="always")
def _extend_hash(h: np.uint64, token: np.int64) -> np.uint64:
    """Hash of (sequence hashed as `h`) + one more token; splitmix64 finaliser so keys spread evenly."""
    z = h + (np.uint64(token) + np.uint64(1)) * _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@njit(cache=True, nogil=True)
def _hash_rows(stream: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """The rows of suffix_hash_rows as one (len(wanted), len(stream)) array: the row of order n is built from the
    row of order n - 1 in place, last position first (each position reads its left neighbour's old value)."""
    out = np.empty((len(wanted), len(stream)), np.uint64)
    row = np.full(len(stream), _HASH_SEED, np.uint64)
    w = 0
    for n in range(wanted[-1] + 1):
        if n > 0:
            for i in range(len(stream) - 1, -1, -1):
                row[i] = _extend_hash(row[i - 1] if i > 0 else _HASH_SEED, np.int64(stream[i]))
        if w < len(wanted) and wanted[w] == n:
            out[w] = row
            w += 1
    return out


def suffix_hashes(stream: np.ndarray, order: int) -> list[np.ndarray]:
    """hashes[n][i] = hash of the n tokens ending at stream[i] (hashes[0] is the empty sequence), for n <= order.

    Positions i < n - 1 hash a shorter sequence than n tokens; callers only read positions where it is complete.
    """
    return suffix_hash_rows(stream, range(order + 1))


def suffix_hash_rows(stream: np.ndarray, orders: Sequence[int]) -> list[np.ndarray]:
    """suffix_hashes' rows for the given orders only (ascending), computed in one compiled pass per order
    (no temporary arrays, the interpreter free meanwhile: the workspace index hashes on a background thread)."""
    return list(_hash_rows(np.asarray(stream, dtype=np.int32), np.asarray(orders, dtype=np.int64)))


@njit(cache=True, nogil=True)
def _next_hashes(previous: np.ndarray, token: np.int64) -> np.ndarray:
    out = np.empty(len(previous), np.uint64)
    out[0] = _HASH_SEED
    for n in range(1, len(previous)):
        out[n] = _extend_hash(previous[n - 1], token)
    return out


def next_suffix_hashes(previous: np.ndarray | None, token: int, order: int) -> np.ndarray:
    """hashes[0..order] (as suffix_hashes) at a new last position holding `token`, from the hashes at the position
    before it (`previous`, shape (order + 1,); None at the start of a stream): extends a stream one token at a time."""
    if previous is None:
        previous = np.full(order + 1, _HASH_SEED, dtype=np.uint64)
    return _next_hashes(np.asarray(previous, np.uint64)[:order + 1], np.int64(token))


def interpolate(levels: Sequence[tuple[np.ndarray, np.ndarray, float, float]], vocab_size: int,
                out: np.ndarray | None = None, scale: float = 1.0) -> np.ndarray:
    """The distribution of an interpolated back-off chain, lowest level first from the uniform p_0:
    p_n = (scatter(tokens_n, values_n) + gamma_n p_{n-1}) / total_n, computed top-down with scalar coefficients.
    With `out`, adds scale * p_k into it (for mixtures) and returns it."""
    p = np.zeros(vocab_size) if out is None else out
    coef = scale
    for tokens, values, gamma, total in reversed(levels):
        p[tokens] += values * (coef / total)
        coef *= gamma / total
    p += coef / vocab_size
    return p


def _discounts(counts: np.ndarray) -> np.ndarray:
    """Modified Kneser-Ney discounts D(0..3) (Chen & Goodman) from the counts of one order; D(0) = 0."""
    n = [np.count_nonzero(counts == k) for k in range(1, 5)]
    if n[0] == 0 or n[1] == 0:
        return np.array([0.0, 0.5, 1.0, 1.5])
    y = n[0] / (n[0] + 2 * n[1])
    d = [0.0]
    for k in range(1, 4):
        ratio = n[k] / n[k - 1] if n[k - 1] else 0.0
        d.append(min(max(k - (k + 1) * y * ratio, 0.0), float(k)))
    return np.array(d)


@dataclass
class _OrderTable:
    """Counts of one n-gram order: n-grams sorted by hash (for scoring), grouped by context (for distributions)."""

    keys: np.ndarray           # sorted n-gram hashes
    discounted: np.ndarray     # max(c - D(c), 0) per n-gram, same order as keys
    ctx_keys: np.ndarray       # sorted unique context hashes
    ctx_total: np.ndarray      # sum of counts per context
    ctx_gamma: np.ndarray      # D1 N1 + D2 N2 + D3 N3+ per context (the back-off mass before dividing by total)
    ctx_start: np.ndarray      # followers of ctx_keys[j] are by_ctx_tokens[ctx_start[j]:ctx_start[j + 1]]
    by_ctx_tokens: np.ndarray
    by_ctx_discounted: np.ndarray


def _lookup(sorted_keys: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index, found) of each query in a sorted key array."""
    idx = np.searchsorted(sorted_keys, queries)
    idx_clipped = np.minimum(idx, max(len(sorted_keys) - 1, 0))
    found = (idx < len(sorted_keys)) & (sorted_keys[idx_clipped] == queries) if len(sorted_keys) else np.zeros(len(queries), bool)
    return idx_clipped, found


def _build_order(ngram: np.ndarray, context: np.ndarray, token: np.ndarray, counts: np.ndarray) -> _OrderTable:
    """One order's table from its unique n-grams (hash, context hash, last token, count)."""
    d = _discounts(counts)
    d_of = d[np.minimum(counts, 3).astype(np.int64)]
    discounted = np.maximum(counts - d_of, 0.0)
    order = np.argsort(ngram)
    by_ctx = np.argsort(context, kind="stable")
    ctx_sorted = context[by_ctx]
    ctx_keys, ctx_start, ctx_sizes = np.unique(ctx_sorted, return_index=True, return_counts=True)
    seg = np.repeat(np.arange(len(ctx_keys)), ctx_sizes)
    total = np.bincount(seg, weights=counts[by_ctx], minlength=len(ctx_keys))
    gamma = np.bincount(seg, weights=d_of[by_ctx], minlength=len(ctx_keys))
    return _OrderTable(
        keys=ngram[order], discounted=discounted[order], ctx_keys=ctx_keys, ctx_total=total, ctx_gamma=gamma,
        ctx_start=np.append(ctx_start, len(ctx_sorted)), by_ctx_tokens=token[by_ctx], by_ctx_discounted=discounted[by_ctx],
    )


@dataclass
class GramCounts:
    """Raw counts of the n-grams of one order n, one entry per distinct n-gram, sorted by its hash."""

    keys: np.ndarray     # n-gram hashes (uint64), sorted
    context: np.ndarray  # hash of its first n - 1 tokens
    suffix: np.ndarray   # hash of its last n - 1 tokens: the (n-1)-gram whose continuation count it adds to
    token: np.ndarray    # its last token (int32)
    count: np.ndarray    # occurrences (int32: 4 bytes a gram, the workspace index holds millions)

    def arrays(self) -> tuple[np.ndarray, ...]:
        return self.keys, self.context, self.suffix, self.token, self.count


def count_grams(stream: np.ndarray, ends: np.ndarray, order: int) -> list[GramCounts]:
    """GramCounts of orders 1..order over the n-grams of `stream` ending at `ends` (positions with at least
    order - 1 tokens before them)."""
    stream = np.asarray(stream, dtype=np.int32)
    hashes = suffix_hashes(stream, order)
    counts = []
    for n in range(1, order + 1):
        keys, first, raw = np.unique(hashes[n][ends], return_index=True, return_counts=True)
        at = ends[first]
        counts.append(GramCounts(keys, hashes[n - 1][at - 1], hashes[n - 1][at], stream[at], raw.astype(np.int32)))
    return counts


def merge_counts(parts: Sequence[GramCounts]) -> GramCounts:
    """One GramCounts holding the summed counts of `parts` (negative counts subtract); n-grams left with no
    occurrence are dropped."""
    keys, context, suffix, token, count = (np.concatenate(column) for column in zip(*(p.arrays() for p in parts)))
    unique, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    total = np.rint(np.bincount(inverse, weights=count, minlength=len(unique))).astype(np.int32)
    live = total > 0
    return GramCounts(unique[live], context[first][live], suffix[first][live], token[first][live], total[live])


class KneserNey:
    """Interpolated modified Kneser-Ney n-gram model over token ids (default order 5).

    Raw counts at the highest order, continuation counts below, uniform under the unigrams, so every token has
    probability > 0. N-grams are keyed by 64-bit hashes in sorted arrays: scoring a file is a few `searchsorted`."""

    def __init__(self, documents: Sequence[np.ndarray], vocab_size: int, pad_id: int, order: int = 5):
        """Count n-grams over `documents` (token arrays) joined into one stream; `pad_id` (end of text) fills the
        positions before the first token, as `logprobs` and `distribution` pad their contexts."""
        if order < 1:
            raise ValueError(f"order must be at least 1, got {order}")
        self.order, self.vocab_size, self.pad_id = order, vocab_size, pad_id
        stream = self._padded(np.concatenate([np.asarray(d, dtype=np.int32) for d in documents] or [np.zeros(0, np.int32)]))
        self._set_tables(count_grams(stream, np.arange(order - 1, len(stream)), order))

    @classmethod
    def from_counts(cls, counts: Sequence[GramCounts], vocab_size: int, pad_id: int) -> KneserNey:
        """The model of raw n-gram counts (count_grams, one GramCounts per order 1..order), e.g. merged from the
        counts of many documents, each padded on its own (engine/complete/workspace_index.py)."""
        kn = cls.__new__(cls)
        kn.order, kn.vocab_size, kn.pad_id = len(counts), vocab_size, pad_id
        kn._set_tables(counts)
        return kn

    def _set_tables(self, counts: Sequence[GramCounts]) -> None:
        """Kneser-Ney tables from raw counts: the highest order keeps them, each lower order counts the distinct
        longer n-grams it is the suffix of (its continuation count)."""
        self.tokens = int(counts[0].count.sum()) if counts else 0
        if self.tokens == 0:
            raise ValueError("no training tokens for the n-gram model")
        self.tables: list[_OrderTable] = []
        for n, grams in enumerate(counts, start=1):
            if n < self.order:
                suffixes, cont = np.unique(counts[n].suffix, return_counts=True)
                idx, _ = _lookup(suffixes, grams.keys)
                weights = cont[idx].astype(np.float64)
            else:
                weights = grams.count.astype(np.float64)
            self.tables.append(_build_order(grams.keys, grams.context, grams.token, weights))

    def _padded(self, tokens: np.ndarray) -> np.ndarray:
        return np.concatenate([np.full(self.order - 1, self.pad_id, dtype=np.int32), np.asarray(tokens, dtype=np.int32)])

    def logprobs(self, tokens: np.ndarray, start: int = 0) -> np.ndarray:
        """Natural-log probabilities of tokens[start:], each given all tokens before it (padded at the front)."""
        stream = self._padded(tokens)
        hashes = suffix_hashes(stream, self.order)
        ends = np.arange(self.order - 1 + start, len(stream))
        p = np.full(len(ends), 1.0 / self.vocab_size)
        for n, table in enumerate(self.tables, start=1):
            ci, cfound = _lookup(table.ctx_keys, hashes[n - 1][ends - 1])
            ni, nfound = _lookup(table.keys, hashes[n][ends])
            numer = np.where(nfound, table.discounted[ni], 0.0) + table.ctx_gamma[ci] * p
            p = np.where(cfound, numer / np.where(cfound, table.ctx_total[ci], 1.0), p)
        with np.errstate(divide="ignore"):  # tiny corpora can give all-zero discounts: unseen tokens get log 0
            return np.log(p)

    def matched_orders(self, tokens: np.ndarray, start: int = 0) -> np.ndarray:
        """For each of tokens[start:], the longest order n whose (n-1)-token context occurred in training."""
        stream = self._padded(tokens)
        hashes = suffix_hashes(stream, self.order)
        ends = np.arange(self.order - 1 + start, len(stream))
        matched = np.zeros(len(ends), dtype=np.int64)
        for n, table in enumerate(self.tables, start=1):
            _, found = _lookup(table.ctx_keys, hashes[n - 1][ends - 1])
            matched = np.where(found, n, matched)
        return matched

    def distribution(self, context: np.ndarray) -> np.ndarray:
        """P(next token | context) over the whole vocabulary (float64, sums to 1)."""
        return self.matched_distribution(context)[0]

    def matched_distribution(self, context: np.ndarray) -> tuple[np.ndarray, int]:
        """(P(next token | context), the longest order n whose (n-1)-token context occurred in training)."""
        levels, matched = self.levels_after(self.context_hashes(context))
        return interpolate(levels, self.vocab_size), matched

    def context_hashes(self, context: np.ndarray) -> np.ndarray:
        """Hashes of the last 0..order-1 tokens of `context` (padded as in `logprobs`), the key of levels_after; equal
        to suffix_hashes at the context's last position, so callers extending a context can keep them."""
        hashes = suffix_hashes(self._padded(context)[-self.order:], self.order)
        return np.array([h[-1] for h in hashes[:self.order]], dtype=np.uint64)

    def levels_after(self, context_hashes: np.ndarray) -> tuple[list, int]:
        """(the back-off levels of `interpolate` after a context given by its context_hashes, matched order)."""
        levels = []
        matched = 0
        for n, table in enumerate(self.tables, start=1):
            key = context_hashes[n - 1]
            j = int(np.searchsorted(table.ctx_keys, key))
            if j == len(table.ctx_keys) or table.ctx_keys[j] != key:
                continue
            lo, hi = table.ctx_start[j], table.ctx_start[j + 1]  # a context's followers are distinct tokens
            levels.append((table.by_ctx_tokens[lo:hi], table.by_ctx_discounted[lo:hi], table.ctx_gamma[j],
                           table.ctx_total[j]))
            matched = n
        return levels, matched

    def greedy_line(self, context: np.ndarray, decode_bytes, max_tokens: int = 64, stop_ids: tuple[int, ...] = ()) -> str:
        """Most likely continuation of `context` token by token up to the end of the line (newline excluded), a stop
        id or `max_tokens`; `decode_bytes` maps ids to bytes."""
        ids = list(np.asarray(context, dtype=np.int32)[-(self.order - 1):]) if self.order > 1 else []
        out: list[int] = []
        for _ in range(max_tokens):
            token = int(np.argmax(self.distribution(np.array(ids, dtype=np.int32))))
            if token in stop_ids:
                break
            out.append(token)
            ids = (ids + [token])[-(self.order - 1):] if self.order > 1 else []
            if b"\n" in decode_bytes([token]):
                break
        return decode_bytes(out).decode("utf-8", errors="replace").split("\n", 1)[0]
