"""Training data: documents -> one token stream -> shuffled windows per epoch, some turned fill-in-the-middle.

Fill-in-the-middle uses the suffix-prefix-middle order: [fim_prefix] [fim_suffix] S [fim_middle] P [eot], so the
text before the cursor runs straight into the text to write (see docs/decisions.md, "Fill-in-the-middle order").
Window i is the seq_len + 1 tokens from i * seq_len, so every token is a target once per epoch (a short last
window is padded with -1 targets). Everything random about an epoch comes from one Generator seeded with
(seed, epoch), so resuming at (epoch, batch) replays the same data.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .corpus import Document, read_texts

FIM_EXTRA_TOKENS = 4  # fim_prefix, fim_suffix, fim_middle, eot
FIM_FORMAT = "spm"  # recorded in checkpoint metadata ("fim") by models trained with FIM windows
IGNORE = -1
# Text read and tokenized per encode_batch call, at most (a file larger than this is a batch of its own): what the
# tokenization holds at once, whatever the workspace's size. encode_batch is parallel inside; progress and cancel
# are checked between batches.
ENCODE_BATCH_BYTES = 256_000


@dataclass(frozen=True)
class FimTokens:
    """The special ids of a fill-in-the-middle window: [prefix] P [suffix] S [middle] M [eot]."""

    prefix: int
    suffix: int
    middle: int
    eot: int

    @classmethod
    def from_tokenizer(cls, tokenizer) -> "FimTokens":
        return cls(tokenizer.fim_prefix_id, tokenizer.fim_suffix_id, tokenizer.fim_middle_id, tokenizer.eot_id)


@dataclass(frozen=True)
class EpochPlan:
    """One epoch's visiting order of windows, FIM choice per visit and FIM cut point per visit."""

    order: np.ndarray  # (n,) window ids
    fim: np.ndarray  # (n,) bool
    cuts: np.ndarray  # (n,) cut positions within the FIM content: prefix = content[:cut], suffix = content[cut:]


def token_stream(documents: Iterable, tokenizer) -> np.ndarray:
    """All documents encoded with `tokenizer.encode_document` and concatenated (int32)."""
    parts = [ids for ids, _ in _encoded_batches(documents, tokenizer, ENCODE_BATCH_BYTES, lambda doc, reason: None)]
    if not parts:
        return np.zeros(0, dtype=np.int32)
    return np.concatenate(parts).astype(np.int32, copy=False)


def token_file(documents: Iterable, tokenizer, folder: str | os.PathLike,
               progress: Callable[[int], None] = lambda encoded_bytes: None,
               gone: Callable[[Document, str], None] = lambda doc, reason: None,
               batch_bytes: int = ENCODE_BATCH_BYTES) -> np.ndarray:
    """token_stream(documents) without holding it or the texts in memory: batches of at most `batch_bytes` are
    tokenized into a temporary file in `folder`, memory-mapped read-only (uint16 when the vocabulary fits) and
    unlinked. A file changed since the scan goes to `gone(document, reason)`; `progress(bytes)` follows each batch
    and whatever it raises (a cancelled training) stops the encoding."""
    dtype = np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.int32
    fd, path = tempfile.mkstemp(prefix=".tokens-", suffix=".bin", dir=Path(folder))
    try:
        with os.fdopen(fd, "wb") as f:
            for ids, encoded_bytes in _encoded_batches(documents, tokenizer, batch_bytes, gone):
                f.write(ids.astype(dtype).tobytes())
                progress(encoded_bytes)
        empty = os.path.getsize(path) == 0
        return np.zeros(0, dtype=dtype) if empty else np.memmap(path, dtype=dtype, mode="r")
    finally:
        with contextlib.suppress(OSError):  # where the system keeps an open file, it stays until the next run
            os.unlink(path)


def _encoded_batches(documents: Iterable, tokenizer, batch_bytes: int,
                     gone: Callable[[Document, str], None]) -> Iterator[tuple[np.ndarray, int]]:
    """(encode_document ids of the next documents worth at most `batch_bytes`, their stream_bytes), tokenized in
    one encode_batch call; a file left out (`gone`) adds its bytes to the next batch (progress reaches the total)."""
    batch: list[tuple[str, str]] = []
    size = 0
    gone_bytes = 0

    def left_out(doc: Document, reason: str) -> None:
        nonlocal gone_bytes
        gone_bytes += _document_bytes(doc)
        gone(doc, reason)

    for doc, text in read_texts(documents, left_out):
        n = _document_bytes(doc)
        if batch and size + n > batch_bytes:
            yield _encode_batch(batch, tokenizer), size + gone_bytes
            batch, size, gone_bytes = [], 0, 0
        batch.append((doc.path, text))
        size += n
    if batch or gone_bytes:
        yield _encode_batch(batch, tokenizer), size + gone_bytes


def _encode_batch(batch: Sequence[tuple[str, str]], tokenizer) -> np.ndarray:
    """The encode_document ids of the (path, text) pairs of `batch`, concatenated: [file] path "\\n" text [eot] each."""
    if not batch:
        return np.zeros(0, dtype=np.int32)
    encoded = tokenizer.encode_batch([path + "\n" for path, _ in batch] + [text for _, text in batch])
    file_id, eot = np.array([tokenizer.file_id], np.int32), np.array([tokenizer.eot_id], np.int32)
    parts = []
    for header, text in zip(encoded[:len(batch)], encoded[len(batch):]):
        parts += [file_id, header, text, eot]
    return np.concatenate(parts)


def stream_bytes(documents: Iterable) -> int:
    """UTF-8 bytes the stream of `documents` encodes: each file's path line and text (special tokens are free)."""
    return sum(map(_document_bytes, documents))


def _document_bytes(doc) -> int:
    return len(doc.path.encode("utf-8")) + 1 + doc.text_bytes


def num_windows(n_tokens: int, seq_len: int) -> int:
    """Windows needed so that every token after the first is a target exactly once."""
    return 0 if n_tokens < 2 else -(-(n_tokens - 1) // seq_len)


def epoch_plan(n_windows: int, seq_len: int, seed: int, epoch: int, fim_rate: float) -> EpochPlan:
    """The deterministic (seed, epoch) order of windows and their FIM transforms."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n_windows)
    content = seq_len + 1 - FIM_EXTRA_TOKENS
    fim = rng.random(n_windows) < (fim_rate if content >= 1 else 0.0)
    cuts = rng.integers(0, max(content, 0) + 1, size=n_windows)
    return EpochPlan(order=order, fim=fim, cuts=cuts)


def sequential_plan(n_windows: int) -> EpochPlan:
    """Every window once, in stream order, never FIM: the validation pass."""
    return _in_order(np.arange(n_windows))


def spread_plan(n_windows: int, count: int) -> EpochPlan:
    """At most `count` windows spread evenly over all `n_windows` (the first and the last included), in stream
    order, never FIM: the validation pass of a held-out stream too long to score whole."""
    if n_windows <= count:
        return sequential_plan(n_windows)
    return _in_order(np.unique(np.linspace(0, n_windows - 1, count).round().astype(np.int64)))


def _in_order(windows: np.ndarray) -> EpochPlan:
    return EpochPlan(order=windows, fim=np.zeros(len(windows), dtype=bool), cuts=np.zeros(len(windows), dtype=np.int64))


def fill_batch(
    inputs: np.ndarray,
    targets: np.ndarray,
    stream: np.ndarray,
    plan: EpochPlan,
    start: int,
    seq_len: int,
    fim: FimTokens,
) -> int:
    """Write the windows plan.order[start : start + len(inputs)] into `inputs` / `targets` (int32, (B, seq_len))
    and return how many rows were filled (fewer at the end of the plan). Padding: eot inputs, ignored targets."""
    rows = min(len(inputs), len(plan.order) - start)
    for row in range(rows):
        visit = start + row
        sequence = _window(stream, int(plan.order[visit]), seq_len, bool(plan.fim[visit]), plan.cuts[visit], fim)
        n = len(sequence) - 1
        inputs[row, :n] = sequence[:-1]
        targets[row, :n] = sequence[1:]
        inputs[row, n:] = fim.eot
        targets[row, n:] = IGNORE
    return rows


def _window(stream: np.ndarray, window: int, seq_len: int, as_fim: bool, cut: int, fim: FimTokens) -> np.ndarray:
    """The tokens of one window; as FIM, its first seq_len - 3 tokens cut in two and rearranged (fim_sequence)."""
    begin = window * seq_len
    chunk = stream[begin:begin + seq_len + 1]
    if not as_fim or len(chunk) < seq_len + 1:
        return chunk
    return fim_sequence(chunk[:seq_len + 1 - FIM_EXTRA_TOKENS], int(cut), fim)


def fim_sequence(content: np.ndarray, cut: int, fim: FimTokens) -> np.ndarray:
    """content as a fill-in-the-middle sequence (suffix first, see the module doc), FIM_EXTRA_TOKENS longer."""
    return np.concatenate([
        [fim.prefix, fim.suffix], content[cut:], [fim.middle], content[:cut], [fim.eot],
    ]).astype(np.int32, copy=False)


def count_targets(targets: np.ndarray) -> int:
    """Number of targets that count towards the loss (not IGNORE)."""
    return int(np.count_nonzero(targets != IGNORE))
