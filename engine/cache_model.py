"""A workspace cache model mixed with the transformer: copy what the workspace and the open file already say.

Three next-token predictors are mixed linearly, p = w_T p_transformer + w_K p_kn + w_C p_cache:
- the transformer (its context is short: the training sequence length);
- a Kneser-Ney 5-gram over the workspace's training files (baselines.KneserNey), which can copy identifiers and
  whole lines from other files the way a compressor does;
- a document cache: a Witten-Bell n-gram over the tokens of the current file before the cursor, which copies
  names and lines from far back in the same file, beyond the transformer's window.

The weights depend on how much evidence the two n-gram models have at the current position (the longest context
each has seen before), so the mixture trusts copying where it is reliable and the transformer elsewhere. They are
fitted by expectation-maximisation on held-out token probabilities; `cllm eval` fits them on one half of the
evaluated files and scores the other half (and vice versa), so no file is scored with weights fitted on it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from .baselines import KneserNey, suffix_hashes
from .generate import MIN_PROMPT_TOKENS, Completer, Completion, CompletionOptions, Model, build_prompt, heal_start

CACHE_ORDER = 4
COMPONENTS = 3  # transformer, workspace 5-gram, document cache


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


def cache_distribution(tokens: np.ndarray, vocab_size: int, order: int = CACHE_ORDER) -> tuple[np.ndarray, int]:
    """(P(next token | tokens) over the vocabulary, matched order) under the same Witten-Bell document cache."""
    tokens = np.asarray(tokens, dtype=np.int32)
    p = np.full(vocab_size, 1.0 / vocab_size)
    matched = 0
    if len(tokens) == 0:
        return p, matched
    hashes = suffix_hashes(tokens, order)
    for n in range(1, order + 1):
        if len(tokens) < n - 1:
            break
        if n == 1:
            followers = tokens
        else:
            target = hashes[n - 1][-1]
            at = np.flatnonzero(hashes[n - 1][n - 2:-1] == target) + n - 1  # positions following a match
            followers = tokens[at]
        if len(followers) == 0:
            continue
        counts = np.bincount(followers, minlength=vocab_size).astype(np.float64)
        distinct = float(np.count_nonzero(counts))
        p = (counts + distinct * p) / (len(followers) + distinct)
        matched = n
    return p, matched


KN_ORDER = 5
N_BUCKETS = (KN_ORDER + 1) * (CACHE_ORDER + 1)


def evidence_bucket(kn_matched: np.ndarray | int, cache_matched: np.ndarray | int) -> np.ndarray:
    """Bucket index of positions from the two n-grams' matched orders (0..KN_ORDER, 0..CACHE_ORDER)."""
    return np.asarray(kn_matched) * (CACHE_ORDER + 1) + np.asarray(cache_matched)


@dataclass
class Mixture:
    """Mixture weights per evidence bucket: weights[bucket] = (w_transformer, w_kn, w_cache), each row sums to 1."""

    weights: np.ndarray

    def mix(self, probs: np.ndarray, buckets: np.ndarray) -> np.ndarray:
        """Mixed probability of each position: probs (n, 3) of the three components -> (n,)."""
        return np.einsum("nk,nk->n", probs, self.weights[buckets])


def fit_mixture(probs: np.ndarray, buckets: np.ndarray, iterations: int = 40, prior: float = 5.0) -> Mixture:
    """EM-fitted weights from component probabilities (n, 3) of held-out tokens and their buckets.

    Each bucket's weights are pulled towards the global weights by `prior` pseudo-tokens, so sparse buckets fall
    back on the overall mix instead of overfitting a handful of tokens.
    """
    probs = np.maximum(np.asarray(probs, dtype=np.float64), 1e-300)
    global_w = np.full(COMPONENTS, 1.0 / COMPONENTS)
    weights = np.tile(global_w, (N_BUCKETS, 1))
    for _ in range(iterations):
        resp = probs * weights[buckets]
        resp /= resp.sum(axis=1, keepdims=True)
        global_w = resp.mean(axis=0)
        sums = np.zeros((N_BUCKETS, COMPONENTS))
        np.add.at(sums, buckets, resp)
        counts = sums.sum(axis=1, keepdims=True)
        weights = (sums + prior * global_w) / (counts + prior)
    return Mixture(weights)


def component_probs(model_nats: np.ndarray, kn: KneserNey, tokens: np.ndarray, start: int,
                    vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(probs (n, 3), buckets (n,)) for tokens[start:] of one document: the transformer's probability (from its
    losses `model_nats`), the workspace 5-gram's and the document cache's, and each position's evidence bucket."""
    cache_p, cache_matched = cache_probs(tokens, vocab_size, start)
    probs = np.stack([np.exp(-np.asarray(model_nats, dtype=np.float64)), np.exp(kn.logprobs(tokens, start)), cache_p], axis=1)
    buckets = evidence_bucket(kn.matched_orders(tokens, start), cache_matched)
    return probs, buckets


class MixtureCompleter(Completer):
    """A Completer that decodes from the mixture instead of the transformer alone (same prompts, healing, stops).

    The two n-gram models read the document itself, not the prompt: the file's path header and the prefix up to
    the point where token healing takes tokens back, then every generated token, healing included. Two ways of
    treating the healed bytes differently measured worse on the demo corpus (8.0 % exact match, 0.260 edit
    similarity): the transformer alone while healing (5.0 %, 0.203), and n-gram mass only on tokens that cover
    all healed bytes (7.5 %, 0.240), although both avoid the rare crawl through an indentation one space at a time.
    """

    fast_greedy = False  # the mixture needs every transformer logit exact

    def __init__(self, model: Model, kn: KneserNey, mixture: Mixture, cache_slots: int = 1) -> None:
        super().__init__(model, cache_slots)
        self.kn, self.mixture = kn, mixture
        self._document = np.zeros(0, np.int32)

    def complete(self, prefix: str, suffix: str = "", options: CompletionOptions | None = None, *,
                 path: str | None = None, doc_key: Any = None, cancel: threading.Event | None = None) -> Completion:
        """As Completer.complete, with the n-gram models' document context set up first."""
        tok, options = self.model.tokenizer, options or CompletionOptions()
        max_new = max(0, min(options.max_tokens, self.model.context - MIN_PROMPT_TOKENS))
        prompt = build_prompt(tok, prefix, suffix, path, self.model.context - max_new)
        healed = len(tok.decode_bytes(prompt.ids[heal_start(prefix, prompt, tok):prompt.prefix_end]))
        raw = prefix.encode("utf-8")
        kept = raw[:len(raw) - healed].decode("utf-8", errors="ignore")
        header = tok.header_ids(path) if path else np.array([tok.file_id], np.int32)
        self._document = np.concatenate([header, tok.encode(kept)]).astype(np.int32)
        return super().complete(prefix, suffix, options, path=path, doc_key=doc_key, cancel=cancel)

    def _prefill(self, slot, prompt: np.ndarray) -> np.ndarray:
        return self._mixed(super()._prefill(slot, prompt))

    def _step(self, slot, token: int) -> np.ndarray:
        self._document = np.append(self._document, np.int32(token))
        return self._mixed(super()._step(slot, token))

    def _mixed(self, logits: np.ndarray) -> np.ndarray:
        """Log of the mixed next-token distribution after the current document context."""
        vocab = self.model.tokenizer.vocab_size
        x = logits[:vocab].astype(np.float64)
        p_model = np.exp(x - x.max())
        p_model /= p_model.sum()
        probe = np.append(self._document[-self.kn.order:], np.int32(0))  # matched orders depend on the context only
        p_cache, cache_matched = cache_distribution(self._document, vocab)
        w = self.mixture.weights[evidence_bucket(self.kn.matched_orders(probe, len(probe) - 1)[0], cache_matched)]
        p = w[0] * p_model + w[1] * self.kn.distribution(self._document) + w[2] * p_cache
        return np.log(np.maximum(p, 1e-300))
