"""A base model (written by `cllm pretrain`, engine/train/pretrain.py) as fine-tuning, evaluation and the servers use it.

A base is an ordinary .cllm file whose training metadata lists its corpus: every file's absolute path and sha256
(`manifest`). Fine-tuning starts from its weights and reuses its tokenizer (so the vocabulary is the base's),
and replays some of its corpus so that the workspace does not erase general C: `replay_documents` reads files
of the manifest that are still on disk with the same bytes. Evaluation leaves out held-out files whose sha256 is
in the manifest (`manifest_hashes`): the base has seen them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..model.checkpoint import CheckpointError, load_checkpoint, weights_sha256
from ..config import ModelConfig
from ..data.corpus import Document
from ..events import BaseRecord, EventError, TrainingMetadata
from ..model.tokenizer import Tokenizer


@dataclass
class Base:
    """A loaded base model: what fine-tuning starts from."""

    path: Path
    config: ModelConfig
    params: np.ndarray
    tokenizer: Tokenizer
    metadata: TrainingMetadata
    record: BaseRecord  # what a fine-tuned model records of this base


def load_base(path: str | os.PathLike) -> Base:
    """The base model at `path`; CheckpointError saying what is wrong when it cannot be used."""
    path = Path(path).expanduser().resolve()
    ckpt = load_checkpoint(path)
    try:
        tokenizer = Tokenizer.from_json(ckpt.tokenizer_json)
        metadata = TrainingMetadata.from_json(ckpt.metadata)
    except (ValueError, EventError) as exc:
        raise CheckpointError(f"{path} cannot serve as a base model ({exc}). Rebuild it with `cllm pretrain`.") from exc
    return Base(path=path, config=ckpt.model_config, params=ckpt.params, tokenizer=tokenizer, metadata=metadata,
                record=BaseRecord(path=str(path), weights_sha256=weights_sha256(ckpt)))


def manifest_hashes(metadata: TrainingMetadata) -> set[str]:
    """The sha256 of every file the model's corpus manifest lists (empty for a model that is not a base)."""
    return {entry.sha256 for entry in metadata.manifest}


def replay_documents(metadata: TrainingMetadata, n_bytes: int, seed: int,
                     exclude: Collection[str] = ()) -> list[Document]:
    """About `n_bytes` of the base's corpus to replay while fine-tuning: manifest files still on disk with the
    bytes the base learned, in a seeded order, none whose sha256 is in `exclude` (the workspace's own files).
    Named as the base trained on them: the absolute path without its leading '/'."""
    rng = np.random.default_rng(seed)
    entries = [entry for entry in metadata.manifest if entry.sha256 not in exclude]
    chosen: list[Document] = []
    total = 0
    for i in rng.permutation(len(entries)):
        if total >= n_bytes:
            break
        entry = entries[i]
        try:
            data = Path(entry.path).read_bytes()
        except OSError:
            continue
        if hashlib.sha256(data).hexdigest() != entry.sha256:
            continue  # changed since the base learned it
        text = data.decode("utf-8", errors="replace")
        chosen.append(Document(path=entry.path.lstrip("/"), text=text, size=len(data)))
        total += len(data)
    return chosen


def read_replay(paths: Sequence[str]) -> list[Document]:
    """The replayed documents a checkpoint recorded (`replay_files`), for resuming its run exactly; files gone
    since are left out."""
    documents = []
    for name in paths:
        try:
            data = Path("/", name).read_bytes()
        except OSError:
            continue
        documents.append(Document(path=name, text=data.decode("utf-8", errors="replace"), size=len(data)))
    return documents

