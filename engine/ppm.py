"""A byte-level PPM model for the cache mixture: the character-level near-repeats token copying misses.

Counts of the next byte after every context of ORDERS bytes (0 to 16) are kept in hashed tables: one over the
workspace's training files (read-only once built, so scorers and threads share it) and one over the current file
before the cursor (small, rebuilt or extended per document). A byte's probability blends the orders from the
shortest to the longest, PPMD-style (interpolated absolute discounting, DISCOUNT), each order's workspace counts
and then the current file's:

    p <- (max(c(ctx, b) - D, 0) + D * u(ctx) * p) / c(ctx)

with c(ctx) the bytes seen after ctx, u(ctx) the distinct ones; an order whose context was never seen passes p
through. Every step keeps sum_b p(b) = 1 exactly (each table counts a byte after a context only when it can store
both entries, so the counts stay consistent when the memory cap is reached).

The mixture needs a probability per token: the product of the probabilities of the token's bytes, times the
probability that the text does not go on into a longer token (the mass of the next bytes that extend the token to
a longer vocabulary entry is taken away). A token is then the longest vocabulary entry that the byte model's text
starts with, so the probabilities of all tokens sum to at most 1 (mass of texts that no token covers exactly is
lost, never counted twice): the mixture's bits stay honest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from .tokenizer import Tokenizer

ORDERS = (0, 2, 4, 8, 16)  # of those tried on the demo corpus, the best: more orders blend worse
DISCOUNT = 0.8
MAX_SLOTS = 1 << 22  # the workspace table's memory cap: 16 bytes a slot, 64 MiB
MAX_LOAD = 0.75  # share of slots filled before new contexts are no longer stored
_ORDERS = np.array(ORDERS, np.int64)
_HISTORY = ORDERS[-1]
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@numba.njit(cache=True, nogil=True)
def _mix(x: np.uint64) -> np.uint64:
    """splitmix64's finaliser: a well-spread 64-bit hash of x."""
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


@numba.njit(cache=True, nogil=True)
def _context_keys(buf: np.ndarray, i: int, orders: np.ndarray, out: np.ndarray) -> None:
    """out[k] = the (non-zero) key of the context of orders[k] bytes before buf[i]; 0 where fewer bytes precede."""
    h = np.uint64(0)
    d = 0
    for k in range(len(orders)):
        while d < orders[k] and i - d - 1 >= 0:
            h = (h ^ np.uint64(buf[i - d - 1] + 1)) * _GOLDEN
            d += 1
        out[k] = (_mix(h + np.uint64(orders[k])) | np.uint64(1)) if d == orders[k] else np.uint64(0)


@numba.njit(cache=True, nogil=True)
def _find(keys: np.ndarray, key: np.uint64) -> int:
    """The slot holding key, or -(the empty slot where it would go) - 1 (linear probing)."""
    mask = np.int64(len(keys) - 1)
    s = np.int64(key & np.uint64(mask))
    while True:
        k = keys[s]
        if k == key:
            return s
        if k == 0:
            return -s - 1
        s = (s + 1) & mask


@numba.njit(cache=True, nogil=True)
def _pair_key(ctx: np.uint64, b: int) -> np.uint64:
    return _mix(ctx ^ (np.uint64(b + 1) * np.uint64(0xD6E8FEB86659FD93))) | np.uint64(1)


@numba.njit(cache=True, nogil=True)
def _count(keys, counts, distinct, used, limit, ctx, b, sign) -> None:
    """Count (sign 1) or uncount (sign -1) byte b after context ctx. A new context or pair is stored only while
    used[0] < limit; an uncount touches only what a count stored, so counts and distinct stay consistent."""
    pair = _pair_key(ctx, b)
    ps = _find(keys, pair)
    if sign < 0:
        if ps < 0 or counts[ps] == 0:
            return
        cs = _find(keys, ctx)
        counts[ps] -= 1
        counts[cs] -= 1
        if counts[ps] == 0:
            distinct[cs] -= 1
        return
    cs = _find(keys, ctx)
    if ps < 0 or cs < 0:
        if used[0] + (ps < 0) + (cs < 0) > limit:
            return
        if ps < 0:
            ps = -ps - 1
            keys[ps] = pair
            used[0] += 1
        cs = _find(keys, ctx)
        if cs < 0:
            cs = -cs - 1
            keys[cs] = ctx
            used[0] += 1
    if counts[ps] == 0:
        distinct[cs] += 1
    counts[ps] += 1
    counts[cs] += 1


@numba.njit(cache=True, nogil=True)
def _count_bytes(keys, counts, distinct, used, limit, data, start, end, orders, sign) -> None:
    """Count (sign 1) or uncount (-1) every byte of data[start:end] after its contexts in data."""
    ctxs = np.zeros(len(orders), np.uint64)
    for i in range(start, end):
        _context_keys(data, i, orders, ctxs)
        for k in range(len(orders)):
            if ctxs[k] == 0:
                break
            _count(keys, counts, distinct, used, limit, ctxs[k], data[i], sign)


@numba.njit(cache=True, nogil=True)
def _context_stats(wk, wc, wd, dk, dc, dd, ctxs, stats) -> None:
    """stats[k, table] = (bytes seen, distinct bytes seen) after the context ctxs[k] in the workspace's table (0)
    and the file's (1); zeros where unseen. Looked up once for all the bytes scored after the same contexts."""
    stats[:] = 0.0
    for k in range(len(ctxs)):
        if ctxs[k] == 0:
            break
        cs = _find(wk, ctxs[k])
        if cs >= 0:
            stats[k, 0, 0], stats[k, 0, 1] = wc[cs], wd[cs]
        cs = _find(dk, ctxs[k])
        if cs >= 0:
            stats[k, 1, 0], stats[k, 1, 1] = dc[cs], dd[cs]


@numba.njit(cache=True, nogil=True)
def _byte_prob(wk, wc, dk, dc, ctxs, stats, b, discount) -> float:
    """P(b | the contexts ctxs with their _context_stats), blending every order: the workspace's counts, then
    the current file's; an order of a table whose context is unseen passes p through."""
    p = 1.0 / 256.0
    for k in range(len(ctxs)):
        if ctxs[k] == 0:
            break
        pair = _pair_key(ctxs[k], b)
        if stats[k, 0, 0] > 0:
            ps = _find(wk, pair)
            c = wc[ps] if ps >= 0 else 0
            p = (max(c - discount, 0.0) + discount * stats[k, 0, 1] * p) / stats[k, 0, 0]
        if stats[k, 1, 0] > 0:
            ps = _find(dk, pair)
            c = dc[ps] if ps >= 0 else 0
            p = (max(c - discount, 0.0) + discount * stats[k, 1, 1] * p) / stats[k, 1, 0]
    return p


@numba.njit(cache=True, nogil=True)
def _token_probs(wk, wc, wd, dk, dc, dd, history, tokens, token_start, token_bytes, token_node, child_start,
                 child_bytes, passes, ends, orders, discount, out) -> None:
    """out[j] = P(token tokens[j] next | history) (see BytePPM.token_probs); 0 for a token without bytes."""
    n = len(history)
    keep = min(n, _HISTORY)
    longest = 0
    for j in range(len(tokens)):
        t = tokens[j]
        longest = max(longest, token_start[t + 1] - token_start[t])
    buf = np.zeros(keep + longest, np.uint8)
    buf[:keep] = history[n - keep:n]
    ctxs = np.zeros(len(orders), np.uint64)
    stats = np.zeros((len(orders), 2, 2))
    for j in range(len(tokens)):
        t = tokens[j]
        if token_start[t + 1] == token_start[t]:
            out[j] = 0.0
            continue
        p, m = 1.0, keep
        for q in range(token_start[t], token_start[t + 1]):
            _context_keys(buf, m, orders, ctxs)
            _context_stats(wk, wc, wd, dk, dc, dd, ctxs, stats)
            p *= _byte_prob(wk, wc, dk, dc, ctxs, stats, token_bytes[q], discount)
            buf[m] = token_bytes[q]
            m += 1
        _context_keys(buf, m, orders, ctxs)
        _context_stats(wk, wc, wd, dk, dc, dd, ctxs, stats)
        node = token_node[t]
        extends = 0.0
        for e in range(child_start[node], child_start[node + 1]):
            extends += _byte_prob(wk, wc, dk, dc, ctxs, stats, child_bytes[e], discount)
        out[j] = p * passes[t] * max(1.0 - (1.0 - ends[t]) * extends, 0.0)


@dataclass(frozen=True)
class ByteTable:
    """One hashed count table: keys (0 = empty slot), the count of each pair (context, byte) and context, and the
    distinct bytes seen after each context; `used` slots of which at most `limit` are filled."""

    keys: np.ndarray
    counts: np.ndarray
    distinct: np.ndarray
    used: np.ndarray
    limit: int

    @classmethod
    def for_bytes(cls, n_bytes: int, max_slots: int = MAX_SLOTS) -> ByteTable:
        """An empty table with room for the contexts of about n_bytes bytes, at most max_slots slots."""
        wanted = 2 * len(ORDERS) * max(n_bytes, 64) / MAX_LOAD
        slots = min(max_slots, 1 << int(np.ceil(np.log2(wanted))))
        return cls(np.zeros(slots, np.uint64), np.zeros(slots, np.int32), np.zeros(slots, np.int32),
                   np.zeros(1, np.int64), int(slots * MAX_LOAD))

    def count(self, data: np.ndarray, start: int, end: int, sign: int = 1) -> None:
        """Count (sign 1) or take back (sign -1) the bytes data[start:end] of a text data, after their contexts."""
        _count_bytes(self.keys, self.counts, self.distinct, self.used, self.limit, data, start, end, _ORDERS, sign)

    @property
    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(keys, counts, distinct), as the kernels take them."""
        return self.keys, self.counts, self.distinct


class VocabularyTrie:
    """The tokenizer's tokens as byte strings: each token's bytes (token_start[t]:token_start[t + 1] of
    token_bytes), and for each token's node the bytes that extend it to a prefix of a longer token."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        pieces = [tokenizer.token_bytes(t) for t in range(tokenizer.vocab_size)]
        self.token_start = np.cumsum([0] + [len(p) for p in pieces]).astype(np.int64)
        self.token_bytes = np.frombuffer(b"".join(pieces), np.uint8).copy()
        prefixes = {p[:n] for p in pieces for n in range(1, len(p) + 1)}
        children: dict[bytes, set[int]] = {}
        for prefix in prefixes:
            children.setdefault(prefix[:-1], set()).add(prefix[-1])
        nodes = {piece: n for n, piece in enumerate(sorted(set(pieces)))}
        self.token_node = np.array([nodes[p] for p in pieces], np.int64)
        edges = [sorted(children.get(piece, ())) for piece in sorted(nodes, key=nodes.get)]
        self.child_start = np.cumsum([0] + [len(e) for e in edges]).astype(np.int64)
        self.child_bytes = np.array([b for e in edges for b in e], np.int64)
        by_bytes = {piece: t for t, piece in enumerate(pieces) if piece}
        prefixes = [[by_bytes[p[:n]] for n in range(1, len(p)) if p[:n] in by_bytes] for p in pieces]
        # the tokens that are a shorter start of token t: prefix_ids[prefix_start[t]:prefix_start[t + 1]]
        self.prefix_start = np.cumsum([0] + [len(q) for q in prefixes]).astype(np.int64)
        self.prefix_ids = np.array([q for qs in prefixes for q in qs], np.int64)

    def through(self, goes_on: np.ndarray) -> np.ndarray:
        """For each token, the product of goes_on over the shorter tokens it starts with."""
        logs = np.log(np.maximum(goes_on, 1e-300))[self.prefix_ids]
        sums = np.bincount(np.repeat(np.arange(len(self.token_node)), np.diff(self.prefix_start)), weights=logs,
                           minlength=len(self.token_node))
        return np.exp(sums)


def token_ends(trie: VocabularyTrie, streams: list[np.ndarray], prior: float = 1.0) -> np.ndarray:
    """ends[t] = how often the tokenizer ends a token at t when the text goes on with a byte that would extend t
    to a prefix of a longer token, from the token `streams` of the training text: BPE does not always take the
    longest token (its merges and its pre-tokenizer decide), and a byte model must know where it stops. Smoothed
    towards the overall rate by `prior` pseudo-counts."""
    n_tokens = len(trie.token_node)
    ended, passed = np.zeros(n_tokens), np.zeros(n_tokens)
    widths = np.diff(trie.child_start)[trie.token_node]
    extension = np.repeat(np.arange(n_tokens) * 256, widths) + np.concatenate(
        [trie.child_bytes[trie.child_start[n]:trie.child_start[n + 1]] for n in trie.token_node])
    for stream in streams:
        stream = np.asarray(stream, np.int64)
        nonempty = stream[1:][trie.token_start[stream[1:] + 1] > trie.token_start[stream[1:]]]
        before = stream[:-1][trie.token_start[stream[1:] + 1] > trie.token_start[stream[1:]]]
        pairs = before * 256 + trie.token_bytes[trie.token_start[nonempty]]
        ended += np.bincount(before[np.isin(pairs, extension)], minlength=n_tokens)
        occurrences = np.bincount(stream, minlength=n_tokens)
        passed += np.bincount(trie.prefix_ids, weights=np.repeat(occurrences, np.diff(trie.prefix_start)),
                              minlength=n_tokens)
    rate = (ended.sum() + 1) / (ended.sum() + passed.sum() + 2)
    return (ended + prior * rate) / (ended + passed + prior)


class BytePPM:
    """The byte model over a workspace's files: token probabilities after a document's bytes (`token_probs`),
    with the current document's counts in a table of its own."""

    def __init__(self, tokenizer: Tokenizer, texts: list[bytes], max_slots: int = MAX_SLOTS) -> None:
        self.trie = VocabularyTrie(tokenizer)
        self.table = ByteTable.for_bytes(sum(len(t) for t in texts), max_slots)
        for text in texts:
            data = np.frombuffer(text, np.uint8)
            self.table.count(data, 0, len(data))
        self.ends = token_ends(self.trie, [tokenizer.encode(t.decode("utf-8", errors="replace")) for t in texts])
        self.passes = self.trie.through(1.0 - self.ends)

    def token_probs(self, document: ByteTable, history: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """P(each of `tokens` next | the document's bytes `history`), with `document` holding the counts of the
        document's own bytes (ByteTable.count of history, or of part of it).

        The token is what a walk down the byte model stops at: the probability of its bytes, times, at each
        shorter token it passes, the chance the tokenizer goes on (1 - ends), times the chance it stops at the
        token: the next byte does not extend it, or does and the tokenizer ends it anyway (ends). Walks that
        stop between tokens are lost mass, so the tokens' probabilities sum to at most 1."""
        out = np.zeros(len(tokens))
        trie = self.trie
        _token_probs(*self.table.arrays, *document.arrays, history, np.asarray(tokens, np.int64),
                     trie.token_start, trie.token_bytes, trie.token_node, trie.child_start, trie.child_bytes,
                     self.passes, self.ends, _ORDERS, DISCOUNT, out)
        return out

    def text_probs(self, tokens: np.ndarray) -> np.ndarray:
        """P of each of `tokens` (a document's text tokens) under the workspace and the document's bytes before
        it, the document's table counting them as it goes, as PPM does."""
        trie = self.trie
        tokens = np.asarray(tokens, np.int64)
        ends = np.cumsum(trie.token_start[tokens + 1] - trie.token_start[tokens])
        data = np.concatenate([trie.token_bytes[trie.token_start[t]:trie.token_start[t + 1]] for t in tokens]
                              ) if len(tokens) else np.zeros(0, np.uint8)
        document = ByteTable.for_bytes(len(data))
        out = np.zeros(len(tokens))
        done = 0
        for j, at in enumerate(np.r_[0, ends[:-1]]):
            document.count(data, done, at)
            done = at
            out[j] = self.token_probs(document, data[:at], tokens[j:j + 1])[0]
        return out
