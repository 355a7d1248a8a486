"""Preparing a run's data: the scan, the time budget's sample, the tokenizer, the token files and the replay.

Before the first step: the scan, the tokenizer (trained on a deterministic sample of at most
TOKENIZER_SAMPLE_BYTES) and the tokenization (chunks tokenized in parallel into a memory-mapped token file, see
data.windows.token_file), each reporting a PhaseEvent and checking the cancel flag as it goes; a tree bigger than a
time budget can use is sampled down to what it can (budget_sample). A fine-tuning run replays some of its base's
corpus in the training stream (replayed); a run with focus files (the editors' learning from saves) repeats them
in it (focused).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..config import BudgetPolicy, CorpusConfig, TrainConfig, budget_sample_bytes
from ..data import corpus
from ..data.windows import num_windows, stream_bytes, token_file
from ..events import BaseRecord, PhaseEvent, SkippedFile, TrainingEvent, TrainingMetadata
from ..faults import fault_point
from ..model.tokenizer import Tokenizer
from .base import Base, read_replay, replay_documents
from .errors import TrainCancelled, TrainError

EVENT_INTERVAL = 0.25  # seconds between phase events (and the loop's step events)
TOKENIZER_SAMPLE_BYTES = 16_000_000  # the tokenizer learns its merges from at most this much training text
MEASURE_BYTES = 16_384  # a big file's tokens per byte are measured on its start (a time budget leaves out heavy ones)
FOCUS_SHARE = 0.5  # the least share of the workspace's training stream a run's focus files make; docs/decisions.md

@dataclass
class Data:
    """Everything the loop needs about the data, fixed for the run."""

    root: str | None
    documents: list
    skipped: list
    train_docs: list
    val_docs: list
    tokenizer: Tokenizer
    train_share: float  # share of the workspace's training text in `stream` (a time budget samples big trees)
    stream: np.ndarray
    val_stream: np.ndarray
    val_bytes: int
    n_windows: int
    steps_per_epoch: int
    base: BaseRecord | None = None  # the base fine-tuned from
    replay: list = field(default_factory=list)  # base-corpus documents replayed in the training stream
    seen_share: float = 1.0  # share of the workspace's training text in files this model's runs have trained on
    generation: int = 1  # runs the model has been trained in, this one included
    trained_before: dict[str, int] = field(default_factory=dict)  # earlier runs' training files -> last generation


@dataclass
class Documents:
    """The run's documents and their train / held-out split."""

    root: str | None
    all: list
    skipped: list
    train: list
    val: list
    train_share: float = 1.0  # share of the training side's bytes in `train` (below 1 when a time budget sampled it)
    seen_share: float = 1.0  # ... in `train` and the files earlier runs of the model trained on
    repeats: list = field(default_factory=list)  # more copies of the focus files in the training stream (focused)


def budget_sample(docs: Documents, time_budget: float | None, val_fraction: float,
                   trained_before: dict[str, int]) -> Documents:
    """With a time budget, the training and held-out files cut down to deterministic samples spread over the
    whole tree (corpus.sample_documents) of the size config.budget_sample_bytes gives, the held-out side in
    proportion; a workspace that fits is taken whole. The training sample takes the files not in
    `trained_before` (those earlier runs of a continued model trained on, with the run that last did) first, then
    the least recently trained; the held-out sample depends on the paths only, so a continued run validates on
    the same files. The model file's train_files and val_files list the samples."""
    limit = budget_sample_bytes(time_budget)
    if limit is None:
        return docs
    docs, too_big = _without_bigger_than(docs, limit, time_budget)
    train = corpus.sample_documents(docs.train, limit, rank=lambda doc: trained_before.get(doc.path, -1))
    sampled = {doc.path for doc in train}
    total = max(1, sum(doc.size for doc in docs.train) + too_big)
    seen = sum(doc.size for doc in docs.train if doc.path in sampled or doc.path in trained_before)
    return replace(docs, train=train, val=corpus.sample_documents(docs.val, int(limit * val_fraction)),
                   train_share=sum(doc.size for doc in train) / total, seen_share=seen / total)


def focused(docs: Documents, focus: Collection[str], val_fraction: float) -> Documents:
    """`docs` with the files named in `focus` (workspace-relative paths: the files just saved) on the training
    side, held out or not, and repeated in the training stream until they make at least FOCUS_SHARE of it: a short
    run learns most from the file being written. When the focus takes every held-out file, another file is held
    out (as corpus.split_documents picks one; none when `val_fraction` is 0), so that the run can still be
    validated on a file it does not train on. Names of no document are passed over."""
    wanted = set(focus)
    chosen = [doc for doc in docs.all if doc.path in wanted and doc.size > 0]
    if not chosen:
        return docs
    rest = [doc for doc in docs.train if doc.path not in wanted]
    val = [doc for doc in docs.val if doc.path not in wanted]
    if not val and rest and val_fraction > 0:
        rest, val = corpus.split_documents(rest, val_fraction) if len(rest) >= 2 else ([], rest)
    chosen_bytes, rest_bytes = sum(doc.size for doc in chosen), sum(doc.size for doc in rest)
    copies = max(1, math.ceil(FOCUS_SHARE * rest_bytes / ((1.0 - FOCUS_SHARE) * chosen_bytes)))
    return replace(docs, train=rest + chosen, val=val, repeats=chosen * (copies - 1))


def _without_bigger_than(docs: Documents, limit: int, time_budget: float) -> tuple[Documents, int]:
    """`docs` without the files bigger than the whole `limit` a time budget tokenizes (one such file would spend
    the budget alone), which join the skipped files with their reason, and their training bytes. A workspace
    made only of such files keeps them (the sample takes one)."""
    reason = f"too big for the time budget (a {time_budget:g} s run tokenizes about {limit:,} bytes)"
    too_big = {doc.path: reason for doc in (*docs.train, *docs.val) if doc.size > limit}
    if not too_big or all(doc.path in too_big for doc in docs.train):
        return docs, 0
    return _without(docs, too_big), sum(doc.size for doc in docs.train if doc.path in too_big)


def load_documents(source, val_fraction: float, corpus_config: CorpusConfig, phase: Phase) -> Documents:
    """Scan (or take) the documents and split them into training and held-out files."""
    hidden = ""
    if isinstance(source, (str, os.PathLike)):
        root = Path(source)
        if not root.is_dir():
            raise TrainError(f"{root} is not a folder")
        scanned = corpus.scan(root, corpus_config, progress=lambda seen, expected: phase.advance(1, expected))
        phase.end()
        fault_point("scanned")
        documents, root_name = list(scanned.documents), str(root.resolve())
        skipped = [SkippedFile(path, reason) for path, reason in scanned.skipped]
        hidden = "" if documents else _hidden_files_message(scanned, corpus_config)
    else:
        documents, root_name, skipped, hidden = list(source), None, [], ""
    if not documents:
        found = f" ({corpus.skip_summary(s.reason for s in skipped)})" if skipped else ""
        raise TrainError(f"no C files (.c, .h) to learn from in {root_name or 'the given documents'}{found}{hidden}")
    train_docs, val_docs = corpus.split_documents(documents, val_fraction)
    if not train_docs:
        train_docs, val_docs = documents, []
    return Documents(root=root_name, all=documents, skipped=skipped, train=train_docs, val=val_docs)


def _hidden_files_message(scanned: corpus.ScanResult, config: CorpusConfig) -> str:
    """': ignore rules hide N C files (n by RULE, ...); ...' for a scan that found nothing, or ''."""
    hidden = corpus.hidden_by_ignore_rules(scanned, config)
    if not hidden:
        return ""
    total = sum(count for _, count in hidden)
    rules = ", ".join(f"{count:,} by {rule or 'a git ignore rule'}" for rule, count in hidden[:3])
    more = f" and {len(hidden) - 3} more rules" if len(hidden) > 3 else ""
    untracked = " untracked" if scanned.in_git else ""
    return (f": ignore rules hide {total:,}{untracked} C file{'s' * (total != 1)} ({rules}{more}); train with --no-gitignore "
            f"(setting training.noGitignore) to take them")


class Phase:
    """Progress of one phase before the first step: PhaseEvents at most every EVENT_INTERVAL seconds (and one at
    its end), and the cancel flag checked at every advance, so that a cancel ends the phase at once."""

    def __init__(self, name: str, unit: str, emit: Callable[[TrainingEvent], None], cancel: threading.Event,
                 total: int | None = None):
        self.name, self.unit, self.emit, self.cancel, self.total = name, unit, emit, cancel, total
        self.done = 0
        self._last_event = -math.inf

    def advance(self, amount: int, total: int | None = None) -> None:
        """Count `amount` more units done (and the total, when it becomes known); TrainCancelled on cancel."""
        self.check_cancel()
        self.done += amount
        self.total = total if total is not None else self.total
        now = time.perf_counter()
        if now - self._last_event >= EVENT_INTERVAL:
            self._last_event = now
            self.emit(PhaseEvent(phase=self.name, done=self.done, total=self.total, unit=self.unit))

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise TrainCancelled(f"cancelled during the {self.name} phase, before the first step: no model written")

    def end(self) -> None:
        """The phase's last event: done == total."""
        self.emit(PhaseEvent(phase=self.name, done=self.done, total=self.done, unit=self.unit))


def replayed(start: Base | None, resumed: TrainingMetadata | None, docs: Documents, cfg: TrainConfig) -> list:
    """The base-corpus documents a fine-tuning run replays: about replay_fraction of its training bytes, none
    that is also a workspace file; a resumed or continued run rereads the ones its model recorded."""
    if resumed is not None:
        return read_replay(resumed.replay_files)
    if start is None or cfg.replay_fraction == 0:
        return []
    n_bytes = int(stream_bytes(docs.train) * cfg.replay_fraction / (1.0 - cfg.replay_fraction))
    return replay_documents(start.metadata, n_bytes, cfg.seed, {doc.sha256 for doc in docs.all})


def encode(docs: Documents, cfg: TrainConfig, vocab_size: int, tokenizer: Tokenizer | None, folder: Path,
            emit: Callable[[TrainingEvent], None], cancel: threading.Event, replay: list) -> Data:
    """Train the tokenizer on the training files (unless resuming or fine-tuning) and encode both streams into
    token files in `folder` (data.token_file): the training stream followed by the `replay` documents."""
    if tokenizer is None:
        tokenizer = _train_tokenizer(docs.train, vocab_size, Phase("tokenizer", "bytes", emit, cancel))
        fault_point("tokenizer-trained")
    docs = _without_heavy_tokens(docs, tokenizer, cfg.time_budget)
    train_docs = [*docs.train, *docs.repeats, *replay]
    phase = Phase("tokenize", "bytes", emit, cancel, total=stream_bytes(train_docs) + stream_bytes(docs.val))
    folder.mkdir(parents=True, exist_ok=True)
    gone: dict[str, str] = {}  # files deleted or changed since the scan -> why

    def left_out(doc: corpus.Document, reason: str) -> None:
        gone[doc.path] = reason

    stream = token_file(train_docs, tokenizer, folder, phase.advance, left_out)
    val_stream = token_file(docs.val, tokenizer, folder, phase.advance, left_out)
    phase.end()
    docs = _without(docs, gone)
    val_bytes = stream_bytes(docs.val)
    n_windows = num_windows(stream.size, cfg.seq_len)
    micro_batches = -(-n_windows // cfg.batch_size)
    fault_point("tokenized")
    return Data(
        root=docs.root, documents=docs.all, skipped=docs.skipped, train_docs=docs.train, val_docs=docs.val,
        tokenizer=tokenizer, train_share=docs.train_share, seen_share=docs.seen_share, stream=stream,
        val_stream=val_stream, val_bytes=val_bytes,
        n_windows=n_windows, steps_per_epoch=max(1, -(-micro_batches // cfg.grad_accum)), replay=replay,
    )


def _without_heavy_tokens(docs: Documents, tokenizer: Tokenizer, time_budget: float | None) -> Documents:
    """With a time budget, `docs` without the files that tokenize into more tokens than the whole budget
    tokenizes (budget_sample_bytes at the policy's bytes per token): their tokens per byte, measured on their
    first MEASURE_BYTES with the run's tokenizer, times their size. A firmware image written as a C array of hex
    bytes is such a file: it would spend the budget alone. They join the skipped files with the measured rate;
    the training file of fewest tokens always stays."""
    limit = budget_sample_bytes(time_budget)
    if limit is None:
        return docs
    max_tokens = limit / BudgetPolicy().bytes_per_token
    estimates = {}
    for doc, text in corpus.read_texts([doc for doc in (*docs.train, *docs.val) if doc.size > max_tokens]):
        sample = text[:MEASURE_BYTES].encode("utf-8")[:MEASURE_BYTES]
        per_byte = len(tokenizer.encode(sample.decode("utf-8", errors="ignore"))) / max(1, len(sample))
        if doc.size * per_byte > max_tokens:
            estimates[doc.path] = (doc.size * per_byte, per_byte)
    if all(doc.path in estimates for doc in docs.train):
        estimates.pop(min((doc.path for doc in docs.train), key=lambda path: estimates[path][0]))
    return _without(docs, {path: f"tokenizes badly for the time budget ({per_byte:.2f} tokens per byte, about "
                                 f"{tokens:,.0f} tokens where a {time_budget:g} s run tokenizes about "
                                 f"{max_tokens:,.0f})" for path, (tokens, per_byte) in estimates.items()})


def _without(docs: Documents, gone: dict[str, str]) -> Documents:
    """`docs` without the files deleted or changed since the scan (`gone`: path -> reason), which join the skipped
    files with their reason. TrainError when no training file is left."""
    if not gone:
        return docs

    def kept(documents: list) -> list:
        return [doc for doc in documents if doc.path not in gone]

    docs = replace(docs, all=kept(docs.all), train=kept(docs.train), val=kept(docs.val), repeats=kept(docs.repeats),
                   skipped=docs.skipped + [SkippedFile(path, reason) for path, reason in gone.items()])
    if not docs.train:
        raise TrainError(f"every training file was deleted or changed after the scan of {docs.root}; train again")
    return docs


def _train_tokenizer(documents: Sequence, vocab_size: int, phase: Phase) -> Tokenizer:
    """A tokenizer trained on a deterministic sample of at most TOKENIZER_SAMPLE_BYTES of `documents` (all of a
    small workspace). The library's training runs in a background thread: the texts it reads report progress,
    and the cancel flag is watched meanwhile, so a cancel during its merge computation returns at once (the
    abandoned daemon thread ends with the process)."""
    sample = corpus.sample_documents(documents, TOKENIZER_SAMPLE_BYTES)
    phase.total = sum(doc.size for doc in sample)

    def texts():
        for doc, text in corpus.read_texts(sample, lambda doc, reason: phase.advance(doc.size)):  # reported later
            phase.advance(doc.size)
            yield text

    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["tokenizer"] = Tokenizer.train(texts(), vocab_size)
        except Exception as exc:  # handed to the waiting thread below
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="cllm-tokenizer", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(EVENT_INTERVAL)
        phase.check_cancel()
    phase.check_cancel()
    if "error" in outcome:
        raise TrainError(str(outcome["error"])) from None
    phase.end()
    return outcome["tokenizer"]
