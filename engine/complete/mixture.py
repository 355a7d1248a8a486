"""The workspace cache mixture: copy what the workspace and the open file already say.

Five next-token predictors are mixed linearly: the transformer; a Kneser-Ney 5-gram over the workspace's training
files (ngram.py); a Witten-Bell cache of the current file before the cursor; a match model (match_model.py) for
spans that repeat longer than the n-grams see; and the renormalised product of the first three (`pooled`). The
weights depend on the copying models' evidence at the position and on the transformer's certainty, and are fitted
by EM on held-out tokens; the trainer stores them in the checkpoint, and engine/complete/serving.py rebuilds the n-gram and match index
from the workspace for the MixtureScorer a Completer decodes through (None: transformer alone). See docs/decisions.md, "The workspace cache mixture".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from ..data.corpus import Document
from .match_model import MATCH_LEVELS, MATCH_ORDERS, MatchIndex, match_after, match_predictions
from .ngram import KneserNey, interpolate, next_suffix_hashes, suffix_hash_rows, suffix_hashes
from ..model.tokenizer import ChunkedEncoder, Tokenizer
from .sources import Copy, CopyTracker
from .workspace_index import KN_ORDER, WorkspaceIndex, document_streams

CACHE_ORDER = 4
COMPONENTS = 5  # transformer, workspace 5-gram, document cache, match model, their geometric pool
POOL = (0.5, 0.3, 0.2)  # exponents of the transformer, the 5-gram and the cache in the pooled component
# The transformer's next-token entropy (nats) splits positions into sure / unsure / lost (uncertainty_level).
# see docs/decisions.md, "Mixture weights by the transformer's certainty"
UNCERTAINTY_EDGES = (1.0, 2.5)
UNCERTAINTY_LEVELS = len(UNCERTAINTY_EDGES) + 1


def pooled(log_transformer: np.ndarray, p_kn: np.ndarray, p_cache: np.ndarray) -> np.ndarray:
    """The pooled component's distribution: p_T^a p_kn^b p_cache^c / Z with (a, b, c) = POOL, from the
    transformer's log-probabilities and the two n-grams' distributions over the vocabulary (all positive)."""
    a, b, c = POOL
    q = np.maximum(p_kn, 1e-300)  # in place from here: this runs for every generated token
    np.log(q, out=q)
    q *= b
    r = np.maximum(p_cache, 1e-300)
    np.log(r, out=r)
    r *= c
    q += r
    q += a * log_transformer
    q -= q.max()
    np.exp(q, out=q)
    q /= q.sum()
    return q


def uncertainty_level(p: np.ndarray, log_p: np.ndarray) -> int:
    """The transformer's uncertainty level at a position (0 .. UNCERTAINTY_LEVELS - 1) from its next-token
    probabilities and their logarithms: where the entropy falls among UNCERTAINTY_EDGES."""
    return int(np.searchsorted(UNCERTAINTY_EDGES, -float(p @ log_p)))


def _cumulative_within(keys: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """out[i] = number of j < i with keys[j] == keys[i] and flags[j]."""
    order = np.argsort(keys, kind="stable")
    sorted_keys, sorted_flags = keys[order], flags[order].astype(np.int64)
    running = np.cumsum(sorted_flags) - sorted_flags  # exclusive prefix sum over the sorted order
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    group_start = np.repeat(starts, np.diff(np.r_[starts, len(keys)]))
    out = np.empty(len(keys), dtype=np.int64)
    out[order] = running - running[group_start]
    return out


def _rank_within(keys: np.ndarray) -> np.ndarray:
    """rank[i] = how many j < i have keys[j] == keys[i]."""
    return _cumulative_within(keys, np.ones(len(keys), dtype=bool))


def cache_probs(tokens: np.ndarray, vocab_size: int, start: int = 0, order: int = CACHE_ORDER) -> tuple[np.ndarray, np.ndarray]:
    """(probability, matched order) of each of tokens[start:] under a Witten-Bell n-gram of the tokens before it.

    P_n(w | h) = (c(h w) + u(h) P_{n-1}(w | h')) / (c(h) + u(h)), counts over the earlier tokens only, u(h) the
    number of distinct tokens seen after h, P_0 uniform; an unseen context passes P_{n-1} through. The matched
    order is the longest n - 1 whose context occurred before (0 when not even the last token did).
    """
    tokens = np.asarray(tokens, dtype=np.int32)
    hashes = suffix_hashes(tokens, order)
    ends = np.arange(len(tokens))
    p = np.full(len(tokens), 1.0 / vocab_size)
    matched = np.zeros(len(tokens), dtype=np.int64)
    for n in range(1, order + 1):
        valid = ends >= n - 1  # the n-gram ending here lies inside the document
        ctx = np.where(ends >= 1, hashes[n - 1][ends - 1], hashes[0][0]) if n > 1 else hashes[0]
        gram = hashes[n]
        # positions with an incomplete n-gram get unique keys so they match nothing
        ctx = np.where(valid, ctx, np.uint64(0xFFFF_FFFF_0000_0000) + ends.astype(np.uint64))
        gram = np.where(valid, gram, np.uint64(0xFFFF_FFFE_0000_0000) + ends.astype(np.uint64))
        c_gram = _rank_within(gram)
        c_ctx = _rank_within(ctx)
        distinct = _cumulative_within(ctx, c_gram == 0)  # distinct tokens seen after this context so far
        seen = valid & (c_ctx > 0)
        p = np.where(seen, (c_gram + distinct * p) / np.maximum(c_ctx + distinct, 1), p)
        matched = np.where(seen, n, matched)
    return p[start:], matched[start:]


@njit(cache=True, nogil=True)
def _followers(row: np.ndarray, tokens: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """(distinct tokens, counts) of what followed earlier occurrences of the current context: tokens[p + 1] for
    lo <= p < hi where row[p] equals the hash at the last position. One pass, no document-sized temporaries."""
    key = row[len(tokens) - 1]
    found = 0
    for p in range(lo, hi):
        found += row[p] == key
    followers = np.empty(found, np.int32)
    found = 0
    for p in range(lo, hi):
        if row[p] == key:
            followers[found] = tokens[p + 1]
            found += 1
    followers.sort()
    starts = np.flatnonzero(np.diff(followers) != 0) + 1
    bounds = np.concatenate((np.zeros(1, np.int64), starts, np.full(1, len(followers), np.int64)))
    seen = followers[bounds[:-1]] if len(followers) else followers
    return seen, np.diff(bounds) if len(followers) else np.zeros(0, np.int64)


class DocumentCache:
    """The document cache while decoding: the document's tokens, suffix hashes and token counts, extended one token at
    a time, so that each next-token distribution is a scan of the hashes instead of a rehash of the document."""

    def __init__(self, tokens: np.ndarray, vocab_size: int, order: int = CACHE_ORDER) -> None:
        tokens = np.asarray(tokens, dtype=np.int32)
        self.vocab_size, self.order, self.length = vocab_size, order, len(tokens)
        self._depth = max(order, KN_ORDER - 1)  # rows 0.._depth for the n-grams, then the match orders
        self._rows = [*range(self._depth + 1), *MATCH_ORDERS]
        capacity = max(64, 2 * len(tokens))
        self._tokens = np.zeros(capacity, np.int32)
        self._tokens[:len(tokens)] = tokens
        self._hashes = np.zeros((len(self._rows), capacity), np.uint64)
        if len(tokens):
            self._hashes[:, :len(tokens)] = np.stack(suffix_hash_rows(tokens, self._rows))
        self._chain = self._chain_at_end()
        self._counts = np.bincount(tokens, minlength=vocab_size)
        self.written = len(tokens)  # the tokens the copying models learn from: the document's, not generated ones

    def _chain_at_end(self) -> np.ndarray | None:
        """Every order's hash at the last position (None when empty), from which `append` extends the rows."""
        if self.length == 0:
            return None
        tail = suffix_hashes(self.tokens[-self._rows[-1]:], self._rows[-1])
        return np.array([row[-1] for row in tail], dtype=np.uint64)

    def rewind(self, n: int) -> None:
        """Keep only the first n tokens (at most the written ones), so that a document changed near its end is
        extended with `append` instead of rebuilt."""
        n = min(n, self.written)
        self._counts -= np.bincount(self._tokens[n:self.written], minlength=self.vocab_size)
        self.length = self.written = n
        self._chain = self._chain_at_end()

    @property
    def tokens(self) -> np.ndarray:
        """The document's tokens so far (a view)."""
        return self._tokens[:self.length]

    def append(self, token: int, generated: bool = False) -> None:
        """Add one token at the end of the document; a `generated` one (the completion's own output) is context
        for every model but never counted or copied, so a completion cannot feed on itself (it looped)."""
        if self.length == len(self._tokens):
            self._tokens = np.concatenate([self._tokens, np.zeros_like(self._tokens)])
            self._hashes = np.concatenate([self._hashes, np.zeros_like(self._hashes)], axis=1)
        self._chain = next_suffix_hashes(self._chain, token, self._rows[-1])
        self._hashes[:, self.length] = self._chain[self._rows]
        self._tokens[self.length] = token
        self.length += 1
        if not generated:
            self._counts[token] += 1
            self.written = self.length

    def distribution(self) -> tuple[np.ndarray, int]:
        """(P(next token | document) over the vocabulary, matched order) under the Witten-Bell cache of
        cache_probs."""
        levels, matched = self.levels()
        return interpolate(levels, self.vocab_size), matched

    def levels(self) -> tuple[list, int]:
        """(the Witten-Bell back-off levels of ngram.interpolate after the document, matched order)."""
        tokens, n_tokens = self.tokens, self.length
        levels = []
        matched = 0
        for n in range(1, self.order + 1):
            if n_tokens < n - 1 or n_tokens == 0:
                break
            if n == 1:  # every written token follows the empty context
                if self.written == 0:
                    continue
                seen = np.flatnonzero(self._counts)
                counts = self._counts[seen]
            else:
                # the written tokens following an earlier occurrence of the context
                seen, counts = _followers(self._hashes[n - 1], tokens, n - 2, max(self.written - 1, 0))
                if len(seen) == 0:
                    continue
            levels.append((seen, counts.astype(np.float64), float(len(seen)), float(counts.sum() + len(seen))))
            matched = n
        return levels, matched

    def ngram_levels(self, kn: KneserNey) -> tuple[list, int]:
        """kn's back-off levels and matched order after the document (as kn.matched_distribution), from the
        document's own suffix hashes when they reach kn's context length (the same hash function)."""
        if kn.order - 1 > self._depth or self.length < kn.order - 1 or self.length == 0:
            return kn.levels_after(kn.context_hashes(self.tokens[-kn.order:]))
        return kn.levels_after(self._hashes[:kn.order, self.length - 1])

    def match(self, index: MatchIndex) -> tuple[int, int]:
        """(predicted next token or -1, match_level) of the match model after the document."""
        return self.copy(index)[:2]

    def copy(self, index: MatchIndex) -> tuple[int, int, int]:
        """match, and the origin of the predicted token (match_model._resolve)."""
        return match_after(self.tokens, self._hashes[-len(MATCH_ORDERS):, :self.length], index, self.written)


def cache_distribution(tokens: np.ndarray, vocab_size: int, order: int = CACHE_ORDER) -> tuple[np.ndarray, int]:
    """(P(next token | tokens) over the vocabulary, matched order) under the same Witten-Bell document cache."""
    return DocumentCache(tokens, vocab_size, order).distribution()


N_BUCKETS = (KN_ORDER + 1) * (CACHE_ORDER + 1) * MATCH_LEVELS * UNCERTAINTY_LEVELS


def evidence_bucket(kn_matched: np.ndarray | int, cache_matched: np.ndarray | int,
                    match_level: np.ndarray | int, uncertainty: np.ndarray | int = 0) -> np.ndarray:
    """Bucket index of positions from the n-grams' matched orders, the match level and the transformer's
    uncertainty_level (the last digit, so that a bucket computed at level 0 plus the level is the bucket with it)."""
    copying = (np.asarray(kn_matched) * (CACHE_ORDER + 1) + np.asarray(cache_matched)) * MATCH_LEVELS + np.asarray(match_level)
    return copying * UNCERTAINTY_LEVELS + np.asarray(uncertainty)


def _bucket_groups() -> np.ndarray:
    """The group of each bucket that fit_mixture pulls its weights towards: its (match level, uncertainty level)."""
    buckets = np.arange(N_BUCKETS)
    return (buckets // UNCERTAINTY_LEVELS) % MATCH_LEVELS * UNCERTAINTY_LEVELS + buckets % UNCERTAINTY_LEVELS


@dataclass
class Mixture:
    """Mixture weights per evidence bucket: weights[bucket] = (w_transformer, w_kn, w_cache, w_match, w_pooled),
    each row sums to 1."""

    weights: np.ndarray

    def mix(self, probs: np.ndarray, buckets: np.ndarray) -> np.ndarray:
        """Mixed probability of each position: probs (n, COMPONENTS) of the components -> (n,)."""
        return np.einsum("nk,nk->n", probs, self.weights[buckets])


def fit_mixture(probs: np.ndarray, buckets: np.ndarray, iterations: int = 40, prior: float = 5.0) -> Mixture:
    """EM-fitted weights from component probabilities (n, COMPONENTS) of held-out tokens and their buckets.

    Each bucket's weights are pulled towards its group's (same match level and uncertainty) by `prior`
    pseudo-tokens, and those towards the global weights likewise, so a sparse bucket does not overfit a handful of
    tokens. See docs/decisions.md, "Mixture buckets and their fallback".
    """
    probs = np.maximum(np.asarray(probs, dtype=np.float64), 1e-300)
    group_of = _bucket_groups()
    global_w = np.full(COMPONENTS, 1.0 / COMPONENTS)
    weights = np.tile(global_w, (N_BUCKETS, 1))
    for _ in range(iterations):
        resp = probs * weights[buckets]
        resp /= resp.sum(axis=1, keepdims=True)
        global_w = resp.mean(axis=0)
        sums = np.zeros((N_BUCKETS, COMPONENTS))
        np.add.at(sums, buckets, resp)
        group_sums = np.zeros((MATCH_LEVELS * UNCERTAINTY_LEVELS, COMPONENTS))
        np.add.at(group_sums, group_of, sums)
        group_w = (group_sums + prior * global_w) / (group_sums.sum(axis=1, keepdims=True) + prior)
        weights = (sums + prior * group_w[group_of]) / (sums.sum(axis=1, keepdims=True) + prior)
    return Mixture(weights)


class PooledProbs:
    """The pooled component's probability of each of tokens[start:] of one document, and the uncertainty_level
    there, from the transformer's logits fed in order, computed as MixtureScorer.scores does while decoding."""

    def __init__(self, kn: KneserNey, tokens: np.ndarray, start: int, vocab_size: int) -> None:
        self._kn, self._tokens, self._vocab = kn, np.asarray(tokens, dtype=np.int32), vocab_size
        self._document = DocumentCache(self._tokens[:start], vocab_size)
        self.probs = np.zeros(len(tokens) - start)
        self.uncertainty = np.zeros(len(tokens) - start, dtype=np.int64)
        self._done = 0

    def add(self, logits: np.ndarray) -> None:
        """The logits (k, vocab or more) of the transformer at the next k positions."""
        for row in logits:
            token = int(self._tokens[self._document.length])
            p_kn = interpolate(self._document.ngram_levels(self._kn)[0], self._vocab)
            p_cache = self._document.distribution()[0]
            p, log_p = softmax(row[:self._vocab])
            self.probs[self._done] = pooled(log_p, p_kn, p_cache)[token]
            self.uncertainty[self._done] = uncertainty_level(p, log_p)
            self._document.append(token)
            self._done += 1


def softmax(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, log-probabilities), float64, from logits, with one pass of exp."""
    log_p = logits.astype(np.float64)
    log_p -= log_p.max()
    p = np.exp(log_p)
    total = p.sum()
    p /= total
    log_p -= np.log(total)
    return p, log_p


def copying_probs(kn: KneserNey, index: MatchIndex, tokens: np.ndarray, start: int,
                  vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(probs (n, 3), buckets (n,)) for tokens[start:] of one document: the 5-gram's, the document cache's and the
    match model's probability, and each position's bucket at uncertainty level 0. Independent of the transformer."""
    tokens = np.asarray(tokens, dtype=np.int32)
    cache_p, cache_matched = cache_probs(tokens, vocab_size, start)
    predicted, level = match_predictions(tokens, index, start)
    match_p = np.where(predicted < 0, 1.0 / vocab_size, (predicted == tokens[start:]).astype(np.float64))
    probs = np.stack([np.exp(kn.logprobs(tokens, start)), cache_p, match_p], axis=1)
    return probs, evidence_bucket(kn.matched_orders(tokens, start), cache_matched, level)


def with_transformer(model_nats: np.ndarray, copying: np.ndarray, pooled_p: np.ndarray) -> np.ndarray:
    """The component probs (n, COMPONENTS): the transformer's (from its losses `model_nats`), the copying models'
    (copying_probs) and the pooled component's (`pooled_p`, from PooledProbs)."""
    return np.column_stack([np.exp(-np.asarray(model_nats, dtype=np.float64)), copying, pooled_p])


def copying_parts(kn: KneserNey, index: MatchIndex, tokenizer: Tokenizer,
                  documents: Sequence[Document]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each document's copying_probs over its text (after its path header, as heldout.document_nats scores it)."""
    parts = []
    for doc in documents:
        header = tokenizer.header_ids(doc.path)
        tokens = np.concatenate([header, tokenizer.encode(doc.text)])
        parts.append(copying_probs(kn, index, tokens, len(header), tokenizer.vocab_size))
    return parts


def fitted_mixture(nats: Sequence[np.ndarray], pooled_p: Sequence[np.ndarray], uncertainty: Sequence[np.ndarray],
                   kn: KneserNey, index: MatchIndex, tokenizer: Tokenizer, documents: Sequence[Document],
                   copying: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
                   ) -> tuple[Mixture, list[tuple[np.ndarray, np.ndarray]]]:
    """(mixture fitted on `documents`, each document's (component probs, buckets)) from the transformer's per-token
    `nats`, the pooled component's `pooled_p` and the uncertainty levels (heldout.document_scores), and the
    documents' copying_parts (computed here when not given)."""
    copying = copying if copying is not None else copying_parts(kn, index, tokenizer, documents)
    parts = [(with_transformer(doc_nats, probs, doc_pooled), buckets + doc_uncertainty)
             for doc_nats, doc_pooled, doc_uncertainty, (probs, buckets) in zip(nats, pooled_p, uncertainty, copying)]
    mixture = fit_mixture(np.concatenate([p for p, _ in parts]), np.concatenate([b for _, b in parts]))
    return mixture, parts


def workspace_models(tokenizer: Tokenizer, documents: Sequence[Document]) -> tuple[KneserNey, MatchIndex]:
    """The workspace 5-gram and match index over training documents as the trainer saw them, in one call: what the
    incremental build of workspace_index.py ends with."""
    index = WorkspaceIndex(tokenizer.vocab_size, tokenizer.eot_id)
    index.add([d.path for d in documents], document_streams(tokenizer, documents), [(0, d.size) for d in documents])
    models = index.snapshot()
    if models is None:
        raise ValueError("no training tokens for the n-gram model")
    return models


# what stored weights were fitted for: weights of another bucket layout are not used
_LAYOUT = {"kn_order": KN_ORDER, "cache_order": CACHE_ORDER, "match_orders": list(MATCH_ORDERS),
           "match_levels": MATCH_LEVELS}


def mixture_metadata(mixture: Mixture) -> dict[str, Any]:
    """The checkpoint metadata entry ("mixture") that stores fitted weights."""
    return {**_LAYOUT, "uncertainty_edges": list(UNCERTAINTY_EDGES), "pool": list(POOL),
            "weights": mixture.weights.round(6).tolist()}


def stored_mixture(metadata: dict[str, Any]) -> Mixture | None:
    """The mixture stored in checkpoint metadata, or None when absent or for another bucket layout. Older weights
    serve as fitted: without a pooled component (no "pool"), at every uncertainty level (no "uncertainty_edges")."""
    entry = metadata.get("mixture")
    if not isinstance(entry, dict) or any(entry.get(key) != value for key, value in _LAYOUT.items()):
        return None
    try:
        weights = np.asarray(entry.get("weights"), dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if "uncertainty_edges" not in entry and weights.ndim == 2 and len(weights) * UNCERTAINTY_LEVELS == N_BUCKETS:
        weights = np.repeat(weights, UNCERTAINTY_LEVELS, axis=0)
    elif entry.get("uncertainty_edges") != list(UNCERTAINTY_EDGES):
        return None
    if weights.shape == (N_BUCKETS, COMPONENTS - 1) and "pool" not in entry:
        weights = np.concatenate([weights, np.zeros((N_BUCKETS, 1))], axis=1)
    if (weights.shape != (N_BUCKETS, COMPONENTS) or entry.get("pool") not in (None, list(POOL))
            or not np.all(np.isfinite(weights)) or weights.min() < 0):
        return None
    return Mixture(weights / np.maximum(weights.sum(axis=1, keepdims=True), 1e-12))


REUSE_MAX_NEW = 256  # new tokens up to which the document cache is extended rather than rebuilt


class MixtureScorer:
    """Decoding from the mixture instead of the transformer alone: the scorer (generate.Scorer) a Completer hands
    each request's document and the transformer's logits to (same prompts, healing and stops as without it).

    The n-gram and match models read the document itself: the path header and the prefix up to where token healing
    takes tokens back, then every generated token as context only (never a source to copy from).
    See docs/decisions.md, "Token healing under the mixture". It also tracks which picked tokens the match model
    predicted, to say where a suggestion was copied from (sources.py, `copied_from`).
    """

    def __init__(self, tokenizer: Tokenizer, kn: KneserNey, index: MatchIndex, mixture: Mixture) -> None:
        self.tokenizer, self.mixture = tokenizer, mixture
        self.models = (kn, index)
        self._document = DocumentCache(np.zeros(0, np.int32), tokenizer.vocab_size)
        self._encoder = ChunkedEncoder(tokenizer)
        self._copies = CopyTracker(tokenizer)
        self._header, self._path = 0, None
        self._warm_up()

    def _warm_up(self) -> None:
        """Load the compiled kernels of scoring (hashing, the cache's followers, the match) now, on the thread
        that makes the scorer, instead of in the first request, which has a deadline."""
        warm = DocumentCache(np.tile(np.arange(MATCH_ORDERS[-1], dtype=np.int32), 2), self.tokenizer.vocab_size)
        warm.append(0)
        warm.levels()
        warm.match(self.models[1])

    def use(self, kn: KneserNey, index: MatchIndex) -> None:
        """Serve from another 5-gram and match index (a newer snapshot of the workspace index) from the next
        token on: one reference swap, so a completion in progress never waits and never sees half of one."""
        self.models = (kn, index)

    def begin_document(self, prefix: str, healed: bytes, path: str | None) -> None:
        """The copying models' document context: the path header and the prefix before the healed bytes. The last
        request's cache is rewound and extended when only its last REUSE_MAX_NEW tokens differ (typing)."""
        tok = self.tokenizer
        raw = prefix.encode("utf-8")
        kept = raw[:len(raw) - len(healed)].decode("utf-8", errors="ignore")
        header = tok.header_ids(path) if path else np.array([tok.file_id], np.int32)
        tokens = np.concatenate([header, self._encoder.encode(kept)])
        self._copies.begin()
        self._header, self._path = len(header), path
        document = self._document
        same = min(len(tokens), document.written)
        differ = np.flatnonzero(document.tokens[:same] != tokens[:same])
        same = int(differ[0]) if len(differ) else same
        if len(tokens) - same > REUSE_MAX_NEW:
            self._document = DocumentCache(tokens, tok.vocab_size)
            return
        document.rewind(same)
        for token in tokens[same:]:
            document.append(int(token))

    def append(self, token: int) -> None:
        """A generated token: context for the copying models from now on, never a source to copy."""
        self._copies.picked(token)
        self._document.append(token, generated=True)

    def copied_from(self, tokens: int) -> Copy | None:
        """Where the suggestion of `tokens` tokens decoded since begin_document was copied from (sources.py)."""
        return self._copies.copy(tokens, self._document.tokens, self._header, self._path)

    def scores(self, logits: np.ndarray) -> np.ndarray:
        """Log of the mixed next-token distribution after the document context, from the transformer's fp32 logits
        (the pooled component only where it has weight)."""
        vocab = self.tokenizer.vocab_size
        p, log_transformer = softmax(logits[:vocab])
        uncertainty = uncertainty_level(p, log_transformer)
        kn, index = self.models
        cache_levels, cache_matched = self._document.levels()
        kn_levels, kn_matched = self._document.ngram_levels(kn)
        predicted, level, origin = self._document.copy(index)
        self._copies.expect(predicted, origin, index)
        w = self.mixture.weights[evidence_bucket(kn_matched, cache_matched, level, uncertainty)]
        p_kn, p_cache = interpolate(kn_levels, vocab), interpolate(cache_levels, vocab)
        p *= w[0]
        p += w[1] * p_kn
        p += w[2] * p_cache
        if predicted >= 0:
            p[predicted] += w[3]
        else:
            p += w[3] / vocab
        if w[4] > 0:
            p += w[4] * pooled(log_transformer, p_kn, p_cache)
        return np.log(np.maximum(p, 1e-300))
