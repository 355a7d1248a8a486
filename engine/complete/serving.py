"""From a .cllm file to completions: load a model, make the completer it ships with, complete.

`load_model` checks that the checkpoint's tokenizer and weights fit its config and warms the kernels up.
`make_completer` gives the completer real completions use: the transformer mixed with the workspace cache mixture
(engine/complete/mixture.py, plugged into generate.Completer's scoring seam) when the checkpoint stores mixture weights and
its workspace's training files can be read, else the transformer alone. `complete` completes through one shared
completer per model, for one-shot callers (the CLI, the demo); servers keep their own completer.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..model.checkpoint import CheckpointError, load_checkpoint
from ..data.corpus import scan
from .generate import Completer, Completion, CompletionOptions, Model
from .mixture import MixtureScorer, stored_mixture, workspace_scorer
from ..model.network import infer, new_cache
from ..model.params import num_params
from ..model.tokenizer import Tokenizer
from .workspace_index import INDEX_FILE, IndexBuilder, IndexSettings, index_fingerprint


def load_model(path: str | Path) -> Model:
    """Load a .cllm file for completion; CheckpointError (with what to do) when it cannot be used."""
    path = Path(path)
    ckpt = load_checkpoint(path)
    try:
        tokenizer = Tokenizer.from_json(ckpt.tokenizer_json)
    except ValueError as exc:
        raise CheckpointError(f"{path} holds no usable tokenizer ({exc}). Retrain with `cllm train`.") from exc
    cfg = ckpt.model_config
    if tokenizer.vocab_size > cfg.vocab_size:
        raise CheckpointError(f"{path}: tokenizer has {tokenizer.vocab_size} tokens but the model only "
                              f"{cfg.vocab_size}. Retrain with `cllm train`.")
    if ckpt.params.shape != (num_params(cfg),):
        raise CheckpointError(f"{path}: weights do not match the model config. Retrain with `cllm train`.")
    model = Model(cfg, np.ascontiguousarray(ckpt.params, dtype=np.float32), tokenizer, ckpt.metadata, path)
    warm_up(model)
    return model


def warm_up(model: Model) -> None:
    """Build the greedy head and run a 2-token prompt and decode steps (plain and greedy) so that the compiled
    kernels of every path are loaded (or compiled, after an upgrade) before the first request, which has a
    deadline."""
    cache = new_cache(model.config, 4)
    tokens = np.full(2, model.tokenizer.file_id, np.int32)
    infer(model.params, model.config, tokens, cache)
    infer(model.params, model.config, tokens[:1], cache)
    if model.greedy_head is not None:
        infer(model.params, model.config, tokens[:1], cache, greedy=model.greedy_head)


def make_completer(model: Model, cache_slots: int = 8) -> Completer:
    """The completer real completions use: mixing (`mixes`) when the checkpoint stores mixture weights and its
    workspace's training files can be read, else the transformer alone. Building the mixture's 5-gram reads and
    counts the training files (about a second for 1 MB of code), so servers call this off their event loop
    (a base model serving a workspace without a model of its own goes through `indexed_completer`)."""
    scorer = workspace_scorer(model.tokenizer, model.metadata)
    return Completer(model, cache_slots, scorer=scorer)


def indexed_completer(model: Model, model_dir: Path, serve: Callable[[Completer], None],
                      settings: IndexSettings | None = None, cache_slots: int = 8,
                      workspace: str | Path | None = None) -> IndexBuilder | None:
    """make_completer for servers of big workspaces: an IndexBuilder (not started) that builds or loads the
    workspace index (engine/complete/workspace_index.py, saved as model_dir/index.npz) and calls `serve` once, with a
    mixing completer, at its first snapshot; later snapshots are swapped into that completer's scorer. None when
    the checkpoint stores no mixture weights or its workspace is gone (the transformer alone serves).

    With `workspace`, the index covers that folder's C files (scanned as for training) instead of the
    checkpoint's training files: a base model (engine/train/pretrain.py) serving a workspace without a model yet."""
    mixture = stored_mixture(model.metadata)
    if workspace is None:
        workspace = model.metadata.get("workspace")
        files = [str(p) for p in model.metadata.get("train_files") or []]
    else:
        files = [doc.path for doc in scan(workspace).documents]
    if mixture is None or not workspace or not Path(workspace).is_dir():
        return None
    scorers: list[MixtureScorer] = []

    def on_snapshot(kn, index) -> None:
        if scorers:
            scorers[0].use(kn, index)
            return
        scorers.append(MixtureScorer(model.tokenizer, kn, index, mixture))
        serve(Completer(model, cache_slots, scorer=scorers[0]))

    return IndexBuilder(model.tokenizer, Path(workspace), files, Path(model_dir) / INDEX_FILE,
                        index_fingerprint(model.params, workspace), on_snapshot, settings or IndexSettings())


_shared: weakref.WeakKeyDictionary[Model, Completer] = weakref.WeakKeyDictionary()
_shared_lock = threading.Lock()


def shared_completer(model: Model) -> Completer:
    """The model's completer that `complete` uses: made on first use (make_completer), kept while the model lives."""
    with _shared_lock:
        completer = _shared.get(model)
        if completer is None:
            completer = _shared[model] = make_completer(model)
        return completer


def complete(model: Model, prefix: str, suffix: str = "", options: CompletionOptions | None = None, *,
             path: str | None = None) -> Completion:
    """Complete the code between `prefix` and `suffix` (of the file at workspace-relative `path`, if known)."""
    return shared_completer(model).complete(prefix, suffix, options, path=path, doc_key=path)
