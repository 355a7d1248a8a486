"""The model's loss on whole held-out files, and the mixture weights fitted on it.

Training and `cllm eval` measure the same thing: every file scored from its start (after its path header) with
sliding windows as long as the training sequences, stride half a window. The trainer fits the completion mixture's
weights here too, reading the transformer's whole distribution at each position (document_scores); that costs more
per token the further into its file the token is, so batch_seconds times it at the files' typical position
(see docs/decisions.md, "Timing held-out scoring"). Nothing here decodes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..config import ModelConfig
from ..data.corpus import Document, sample_documents
from ..faults import fault_point
from ..complete.match_model import MatchIndex
from ..complete.mixture import PooledProbs, fitted_mixture, mixture_metadata, workspace_models
from ..model.network import make_scratch, token_losses
from ..complete.ngram import KneserNey
from ..model.tokenizer import Tokenizer

_BATCH = 4

Progress = Callable[[str, int, int], None]


def score_windows(length: int, first_target: int, window: int) -> list[tuple[int, int]]:
    """(start, first scored target) of each window over a sequence: targets are positions 1..length-1.

    Window w feeds tokens[start:start+window] and predicts positions start+1..start+window; it scores only those not
    scored by an earlier window, so after the first window every target sees at least window - stride tokens.
    """
    stride = max(window // 2, 1)
    out, scored_to, start = [], first_target, 0
    while scored_to < length:
        end = min(start + window, length - 1)
        if end + 1 > scored_to:
            out.append((start, scored_to))
            scored_to = end + 1
        start += stride
    return out


def document_nats(params: np.ndarray, config: ModelConfig, tokenizer: Tokenizer, documents: Sequence[Document],
                  window: int, progress: Progress | None = None,
                  on_logits: Callable[[int, np.ndarray], None] | None = None) -> list[np.ndarray]:
    """Per document, the model's loss (nats) on each token of its text, from the start of the file (after its path
    header) in sliding windows of `window` tokens, stride half a window. `on_logits(document index, logits (k,
    vocab))` sees each document's positions in order."""
    jobs: list[tuple[int, np.ndarray, int, int]] = []
    nats: list[np.ndarray] = []
    headers = []
    for d, doc in enumerate(documents):
        header = tokenizer.header_ids(doc.path)
        tokens = np.concatenate([header, tokenizer.encode(doc.text)])
        headers.append(len(header))
        nats.append(np.zeros(len(tokens) - len(header)))
        jobs += [(d, tokens, start, first) for start, first in score_windows(len(tokens), len(header), window)]
    scratch = make_scratch(config, _BATCH, window)
    for b in range(0, len(jobs), _BATCH):
        batch = jobs[b:b + _BATCH]
        inputs = np.zeros((_BATCH, window), dtype=np.int32)
        targets = np.full((_BATCH, window), -1, dtype=np.int32)
        for row, (_, tokens, start, first) in enumerate(batch):
            chunk = tokens[start:start + window + 1]
            inputs[row, :len(chunk) - 1] = chunk[:-1]
            keep = slice(first - start - 1, len(chunk) - 1)
            targets[row, keep] = chunk[1:][keep]
        losses = token_losses(params, inputs, targets, config, scratch)
        logits = scratch.logits[:_BATCH * window].reshape(_BATCH, window, -1)
        for row, (d, tokens, start, first) in enumerate(batch):
            last = min(start + window, len(tokens) - 1)
            nats[d][first - headers[d]:last + 1 - headers[d]] = losses[row, first - start - 1:last - start]
            if on_logits:
                on_logits(d, logits[row, first - start - 1:last - start])
        if progress:
            progress("bits per byte", min(b + _BATCH, len(jobs)), len(jobs))
    return nats


def document_scores(params: np.ndarray, config: ModelConfig, tokenizer: Tokenizer, documents: Sequence[Document],
                    window: int, kn: KneserNey, progress: Progress | None = None
                    ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """(document_nats, each document's text tokens' probabilities under the mixture's pooled component, the
    transformer's uncertainty level at each of them), in one pass: both need the transformer's whole distribution
    at each position (engine/complete/mixture.py PooledProbs)."""
    pools = []
    for doc in documents:
        header = tokenizer.header_ids(doc.path)
        tokens = np.concatenate([header, tokenizer.encode(doc.text)])
        pools.append(PooledProbs(kn, tokens, len(header), tokenizer.vocab_size))
    nats = document_nats(params, config, tokenizer, documents, window, progress,
                         on_logits=lambda d, logits: pools[d].add(logits))
    return nats, [pool.probs for pool in pools], [pool.uncertainty for pool in pools]


def bits_and_bytes(nats: Sequence[np.ndarray], documents: Sequence[Document]) -> tuple[float, int]:
    """(total bits of the per-token losses `nats`, total UTF-8 bytes of `documents`)."""
    return sum(float(n.sum()) for n in nats) / math.log(2), sum(len(d.text.encode("utf-8")) for d in documents)


def heldout_mixture(params: np.ndarray, config: ModelConfig, tokenizer: Tokenizer, documents: Sequence[Document],
                    train_documents: Sequence[Document], window: int,
                    models: tuple[KneserNey, MatchIndex] | None = None,
                    progress: Progress | None = None,
                    copying: Sequence[tuple[np.ndarray, np.ndarray]] | None = None) -> dict[str, Any] | None:
    """The checkpoint metadata entry ("mixture") with weights fitted on the held-out `documents`; None without
    held-out or training documents. The trainer passes the `models` and `copying` probabilities it already has;
    `progress` follows the forward passes."""
    if not documents or not train_documents:
        return None
    kn, index = models or workspace_models(tokenizer, train_documents)
    scores = document_scores(params, config, tokenizer, documents, window, kn, progress)
    fault_point("mixture-fit")
    return mixture_metadata(fitted_mixture(*scores, kn, index, tokenizer, documents, copying)[0])


def scoring_batches(lengths: Sequence[tuple[int, int]], window: int) -> int:
    """The forward batches document_nats runs over documents of (tokens with the path header, header tokens)."""
    windows = sum(len(score_windows(length, header, window)) for length, header in lengths)
    return -(-windows // _BATCH)


def affordable(documents: Sequence[Document], lengths: Sequence[tuple[int, int]], window: int,
               max_batches: int) -> list[Document]:
    """The `documents` (of `lengths`: tokens with the path header, header tokens) that document_nats scores in at
    most `max_batches` forward batches: all, or a deterministic sample (corpus.sample_documents by windows)."""
    windows = {doc.path: len(score_windows(length, header, window)) for doc, (length, header) in zip(documents, lengths)}
    return sample_documents(documents, max_batches * _BATCH, size=lambda doc: windows[doc.path])


def typical_position(lengths: Sequence[int]) -> int:
    """The position in its file at which a token costs the pooled component what tokens of files of `lengths`
    tokens cost on average: the cost grows linearly with the position (the document cache scans the file so far),
    so the average is the cost at the tokens' mean position, sum(n^2) / (2 sum(n))."""
    total = sum(lengths)
    return sum(n * n for n in lengths) // (2 * total) if total else 0


def batch_seconds(params: np.ndarray, config: ModelConfig, window: int, kn: KneserNey, lengths: Sequence[int]) -> float:
    """Seconds one batch of document_scores takes with `params` over files of `lengths` tokens: a forward batch
    (the second of two: the first may load the kernels) and the pooled component over a batch's scored tokens at the
    files' typical_position, in a document of random tokens (a slight underestimate)."""
    scratch = make_scratch(config, _BATCH, window)
    inputs, targets = np.zeros((_BATCH, window), dtype=np.int32), np.zeros((_BATCH, window), dtype=np.int32)
    token_losses(params, inputs, targets, config, scratch)
    begin = time.perf_counter()
    token_losses(params, inputs, targets, config, scratch)
    forward = time.perf_counter() - begin
    scored = _BATCH * max(window // 2, 1)
    start = max(typical_position(lengths) - scored // 2, 1)
    tokens = np.random.default_rng(0).integers(0, config.vocab_size, start + scored, dtype=np.int32)
    pool = PooledProbs(kn, tokens, start, config.vocab_size)
    begin = time.perf_counter()
    pool.add(np.zeros((scored, config.vocab_size), dtype=np.float32))
    return forward + time.perf_counter() - begin
