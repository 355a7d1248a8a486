"""The workspace index: the mixture's 5-gram counts and match index over a workspace's training files, built in
the background, capped in memory, saved beside the model and updated one file at a time.

Building both over a kernel-sized tree in one call would freeze a server for minutes, so an IndexBuilder reads
files in small batches on a low-priority thread and hands a snapshot to the serving MixtureScorer whenever the
index has doubled (completions never wait). Past IndexSettings.max_mb a deterministic sample of files (by a hash
of the path) is indexed. Counts are kept per file so that a changed file is subtracted and added back without
re-reading the others. `index.npz` (no pickle, atomic) carries a fingerprint of the weights and the files' sizes
and mtimes, so a restart updates only what changed on disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..model.checkpoint import params_sha256
from ..data.corpus import Document, read_documents
from ..files import atomic_write
from .match_model import MATCH_ORDERS, MatchIndex, gram_hashes
from .ngram import GramCounts, KneserNey, count_grams, merge_counts
from ..model.tokenizer import Tokenizer

log = logging.getLogger(__name__)

KN_ORDER = 5  # the workspace n-gram's order
INDEX_FILE = "index.npz"
FORMAT = 2  # bump when the saved arrays change meaning (2: only files that pass the read policy)
BYTES_PER_SOURCE_BYTE = 42  # index bytes per byte of C source (400 files of the kernel tree): the sampling estimate


@dataclass
class IndexSettings:
    """How the workspace index is built: its memory cap, the batch size and the pause between batches."""

    max_mb: float = 512
    batch_bytes: int = 128 * 1024
    pause_seconds: float = 0.002
    snapshot_min_tokens: int = 100_000  # the first snapshot after this many tokens, later ones when it doubled
    niceness: int = 10  # added to the CPU priority of the build's own thread: completions win the cores


@dataclass
class FileEntry:
    """One indexed file: its token span in the index's token buffer and the size and mtime it was read at."""

    start: int
    length: int
    mtime_ns: int
    size: int


def document_streams(tokenizer: Tokenizer, documents: Sequence[Document]) -> list[np.ndarray]:
    """Each document as the trainer saw it: path header, text, end of text."""
    return [np.concatenate([tokenizer.header_ids(d.path), ids, [tokenizer.eot_id]]).astype(np.int32)
            for d, ids in zip(documents, tokenizer.encode_batch([d.text for d in documents]))]


def _doc_positions(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(offset of each position in its document, length of its document) for documents laid end to end."""
    starts = np.cumsum(lengths) - lengths
    total = int(lengths.sum())
    offset = np.arange(total) - np.repeat(starts, lengths)
    return offset, np.repeat(lengths, lengths)


class WorkspaceIndex:
    """Per-file n-gram counts and gram occurrences of a set of files, merged on demand into a snapshot."""

    def __init__(self, vocab_size: int, pad_id: int) -> None:
        self.vocab_size, self.pad_id = vocab_size, pad_id
        self.files: dict[str, FileEntry] = {}
        self._buffer = np.zeros(1 << 16, np.int32)
        self._length = 0
        self._counts: list[list[GramCounts]] = [[] for _ in range(KN_ORDER)]  # parts, merged by _merge
        self._occurrences: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in MATCH_ORDERS]
        self.tokens_added = 0  # tokens counted since this object was made or loaded

    @property
    def tokens(self) -> np.ndarray:
        """The token buffer (a view): every indexed file's span, and the unreferenced spans of replaced ones."""
        return self._buffer[:self._length]

    def add(self, paths: Sequence[str], streams: Sequence[np.ndarray], stats: Sequence[tuple[int, int]]) -> None:
        """Index files given their token streams (document_streams) and (mtime_ns, size) when they were read."""
        if not streams:
            return
        lengths = np.array([len(s) for s in streams], np.int64)
        batch = np.concatenate(streams).astype(np.int32)
        base = self._length
        self._append(batch)
        for path, start, length, (mtime_ns, size) in zip(paths, np.cumsum(lengths) - lengths, lengths, stats):
            self.files[path] = FileEntry(base + int(start), int(length), mtime_ns, size)
        self._count(batch, lengths, sign=1)
        offset, doc_length = _doc_positions(lengths)
        for o, (order, hashes) in enumerate(zip(MATCH_ORDERS, gram_hashes(batch))):
            ends = np.flatnonzero((offset >= order - 1) & (offset < doc_length - 1))  # whole gram, a token after it
            keys, at = hashes[ends], (ends + base).astype(np.int32)  # positions fit: _append checks
            sort = np.lexsort((at, keys))
            self._occurrences[o].append((keys[sort], at[sort]))
        self.tokens_added += len(batch)

    def remove(self, path: str) -> None:
        """Take a file out: subtract its n-gram counts, drop its gram occurrences."""
        entry = self.files.pop(path)
        self._count(self._buffer[entry.start:entry.start + entry.length], np.array([entry.length]), sign=-1)
        self._merge()
        for o, [(keys, ends)] in enumerate(self._occurrences):
            keep = (ends < entry.start) | (ends >= entry.start + entry.length)
            self._occurrences[o] = [(keys[keep], ends[keep])]

    def snapshot(self) -> tuple[KneserNey, MatchIndex] | None:
        """The 5-gram and the match index of the files indexed so far (None while there are none)."""
        if not self.files:
            return None
        self._merge()
        kn = KneserNey.from_counts([parts[0] for parts in self._counts], self.vocab_size, self.pad_id)
        files = [(path, entry.start, entry.length) for path, entry in self.files.items()]
        return kn, MatchIndex.from_occurrences(self.tokens, [parts[0] for parts in self._occurrences], files)

    def memory_bytes(self) -> int:
        """Bytes held by the index and (about as much again as its counts) the snapshot built from it."""
        counts = sum(a.nbytes for parts in self._counts for p in parts for a in p.arrays())
        occurrences = sum(k.nbytes + e.nbytes for parts in self._occurrences for k, e in parts)
        return self.tokens.nbytes + 2 * counts + occurrences

    def _append(self, tokens: np.ndarray) -> None:
        need = self._length + len(tokens)
        if need > np.iinfo(np.int32).max:
            raise ValueError(f"a workspace index holds at most 2**31 tokens ({need:,} asked): lower max_mb")
        if need > len(self._buffer):
            grown = np.zeros(max(need, 2 * len(self._buffer)), np.int32)
            grown[:self._length] = self.tokens
            self._buffer = grown
        self._buffer[self._length:need] = tokens
        self._length = need

    def _count(self, tokens: np.ndarray, lengths: np.ndarray, sign: int) -> None:
        """Add (sign 1) or subtract (-1) the n-gram counts of documents laid end to end, each padded on its own
        with order - 1 pad ids (as KneserNey pads its one stream)."""
        pad = KN_ORDER - 1
        doc_index = np.repeat(np.arange(len(lengths)), lengths)
        at = np.arange(len(tokens)) + pad * (doc_index + 1)  # each document moved right by the pads before it
        stream = np.full(len(tokens) + pad * len(lengths), self.pad_id, np.int32)
        stream[at] = tokens
        for n, grams in enumerate(count_grams(stream, at, KN_ORDER)):
            grams.count *= sign
            self._counts[n].append(grams)

    def _merge(self) -> None:
        for parts in self._counts:
            if len(parts) > 1:
                parts[:] = [merge_counts(parts)]
        for o, parts in enumerate(self._occurrences):
            if len(parts) > 1:
                keys, ends = np.concatenate([k for k, _ in parts]), np.concatenate([e for _, e in parts])
                sort = np.lexsort((ends, keys))
                parts[:] = [(keys[sort], ends[sort])]

    # -- persistence -------------------------------------------------------------------------------------

    def save(self, path: Path, fingerprint: str) -> None:
        """Write the index to `path` (numpy .npz, atomic) under `fingerprint` (index_fingerprint)."""
        self._merge()
        names = sorted(self.files)
        arrays: dict[str, np.ndarray] = {
            "format": np.array(FORMAT), "fingerprint": np.array(fingerprint), "tokens": self.tokens,
            "paths": np.array(names, dtype=str),
            "spans": np.array([[self.files[p].start, self.files[p].length, self.files[p].mtime_ns, self.files[p].size]
                               for p in names], np.int64).reshape(-1, 4)}
        for n, parts in enumerate(self._counts):
            for name, array in zip(("keys", "context", "suffix", "token", "count"), parts[0].arrays() if parts else ()):
                arrays[f"kn{n}_{name}"] = array
        for o, parts in enumerate(self._occurrences):
            for name, array in zip(("keys", "ends"), parts[0] if parts else ()):
                arrays[f"match{o}_{name}"] = array
        atomic_write(path, lambda f: np.savez(f, **arrays))

    @classmethod
    def load(cls, path: Path, fingerprint: str, vocab_size: int, pad_id: int) -> WorkspaceIndex | None:
        """The index saved at `path` under `fingerprint`, or None when there is none, it is unreadable, or it was
        saved for another model or format."""
        try:
            with np.load(path, allow_pickle=False) as saved:
                if int(saved["format"]) != FORMAT or str(saved["fingerprint"]) != fingerprint:
                    return None
                index = cls(vocab_size, pad_id)
                index._append(saved["tokens"])
                for name, (start, length, mtime_ns, size) in zip(saved["paths"], saved["spans"].tolist()):
                    index.files[str(name)] = FileEntry(start, length, mtime_ns, size)
                if index.files:
                    index._counts = [[GramCounts(*(saved[f"kn{n}_{name}"] for name in
                                                   ("keys", "context", "suffix", "token", "count")))]
                                     for n in range(KN_ORDER)]
                    index._occurrences = [[(saved[f"match{o}_keys"], saved[f"match{o}_ends"])]
                                          for o in range(len(MATCH_ORDERS))]
                return index
        except (OSError, ValueError, KeyError, TypeError) as exc:
            if not isinstance(exc, FileNotFoundError):
                log.warning("ignoring the saved workspace index %s: %s", path, exc)
            return None


def index_fingerprint(params: np.ndarray, workspace: str) -> str:
    """What a saved index was built for: the model's weights (hence its tokenizer) and workspace, and the
    index's layout."""
    layout = f"{FORMAT}:{KN_ORDER}:{MATCH_ORDERS}:{workspace}:{params_sha256(params)}"
    return hashlib.sha256(layout.encode()).hexdigest()


def lower_thread_priority(niceness: int) -> None:
    """Add `niceness` to the calling thread's nice value (Linux schedules threads on their own; elsewhere, or
    when not permitted, nothing changes)."""
    with contextlib.suppress(OSError, AttributeError):
        ident = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, ident, min(os.getpriority(os.PRIO_PROCESS, ident) + niceness, 19))


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def sample_fraction(total_bytes: int, max_mb: float) -> float:
    """The fraction of the training files that fits in `max_mb` (1.0 when all of them do)."""
    return min(1.0, max_mb * 2**20 / max(total_bytes * BYTES_PER_SOURCE_BYTE, 1))


def sampled(path: str, fraction: float) -> bool:
    """True when `path` is in the deterministic sample of `fraction` of the files."""
    digest = hashlib.blake2b(path.encode("utf-8"), digest_size=8).digest()
    return fraction >= 1.0 or int.from_bytes(digest, "little") < fraction * 2**64


@dataclass
class IndexBuilder:
    """Builds, loads, serves and updates a workspace's index on its own thread (start) or the caller's (run).

    `on_snapshot(kn, match_index)` receives every new snapshot; `progress` says how far the build is."""

    tokenizer: Tokenizer
    root: Path
    files: Sequence[str]
    index_path: Path
    fingerprint: str
    on_snapshot: Callable[[KneserNey, MatchIndex], None]
    settings: IndexSettings = field(default_factory=IndexSettings)
    index: WorkspaceIndex | None = None
    loaded: bool = False  # the index came from index_path
    fraction: float = 1.0  # of the training files indexed (sample_fraction)
    progress: dict[str, Any] = field(default_factory=lambda: {"state": "pending"})
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> threading.Thread:
        """Run in a daemon thread."""
        thread = threading.Thread(target=self.run, kwargs={"own_thread": True}, name="cllm-index", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        """Ask the build to stop after its current batch."""
        self._stop.set()

    def run(self, own_thread: bool = False) -> None:
        """Load the saved index and bring its changed files up to date, or build it; then save it. On a thread
        of its own (`own_thread`), the build first lowers that thread's CPU priority by settings.niceness:
        tokenizing and sorting then take the cores only when completions leave them idle."""
        if own_thread:
            lower_thread_priority(self.settings.niceness)
        tok = self.tokenizer
        stats = {rel: _stat(self.root / rel) for rel in self.files}
        total = sum(s[1] for s in stats.values() if s is not None)
        self.fraction = sample_fraction(total, self.settings.max_mb)
        wanted = [rel for rel in self.files if stats[rel] is not None and sampled(rel, self.fraction)]
        self.index = WorkspaceIndex.load(self.index_path, self.fingerprint, tok.vocab_size, tok.eot_id)
        if self.index is not None and not all(sampled(rel, self.fraction) for rel in self.index.files):
            self.index = None  # saved under a larger cap (settings.max_mb was lowered since): build within this one
        self.loaded = self.index is not None
        if self.index is None:
            self.index = WorkspaceIndex(tok.vocab_size, tok.eot_id)
        else:
            self._publish()
        index = self.index
        with self._lock:
            gone = [rel for rel, entry in index.files.items() if stats.get(rel) != (entry.mtime_ns, entry.size)]
            for rel in gone:
                index.remove(rel)
        todo = [rel for rel in wanted if rel not in index.files]
        self.progress = {"state": "building", "files": len(index.files), "total": len(index.files) + len(todo),
                         "fraction": round(self.fraction, 4)}
        published = len(index.tokens) if self.loaded else 0
        for batch in self._batches(todo, stats):
            if self._stop.is_set() or index.memory_bytes() >= self.settings.max_mb * 2**20:
                break
            documents, _ = read_documents(self.root, batch)
            with self._lock:
                index.add([d.path for d in documents], document_streams(tok, documents),
                          [stats[d.path] for d in documents])
            self.progress["files"] = len(index.files)
            if len(index.tokens) - published >= max(self.settings.snapshot_min_tokens, published):
                published = len(index.tokens)
                self._publish()
            time.sleep(self.settings.pause_seconds)  # the completion thread's turn
        if gone or todo or not self.loaded:
            self._publish()
            if not self._stop.is_set():
                with self._lock:
                    index.save(self.index_path, self.fingerprint)
        self.progress = {"state": "ready", "files": len(index.files), "fraction": round(self.fraction, 4),
                         "mb": round(index.memory_bytes() / 2**20, 1), "loaded": self.loaded}

    def update_file(self, rel: str) -> bool:
        """Re-index one file after it was saved (its old counts out, its new text in) and publish a snapshot;
        False when the file is not part of the index (not a training file, or outside the sample)."""
        index = self.index
        if index is None or (rel not in index.files and rel not in self.files):
            return False
        stat = _stat(self.root / rel)
        with self._lock:
            if rel in index.files:
                index.remove(rel)
            elif stat is None or not sampled(rel, self.fraction):
                return False
            documents, _ = read_documents(self.root, [rel])
            if documents and stat is not None:
                index.add([rel], document_streams(self.tokenizer, documents), [stat])
        self._publish()
        return True

    def _publish(self) -> None:
        with self._lock:
            models = self.index.snapshot() if self.index is not None else None
        if models is not None:
            self.on_snapshot(*models)

    def _batches(self, paths: Sequence[str], stats: dict[str, tuple[int, int] | None]):
        batch: list[str] = []
        size = 0
        for rel in paths:
            batch.append(rel)
            size += stats[rel][1]
            if size >= self.settings.batch_bytes:
                yield batch
                batch, size = [], 0
        if batch:
            yield batch
