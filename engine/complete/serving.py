"""A model serving completions: the one object the CLI, the language server and the HTTP server complete through.

A `ServedModel` holds a loaded model (engine/model/loaded.py) and its completer. The transformer alone serves at
once; when the checkpoint stores mixture weights and its workspace's files can be read, a workspace index
(engine/complete/workspace_index.py, saved as index.npz in the model folder) is built or loaded, and its first
snapshot swaps in the completer that mixes the transformer with the workspace cache model (engine/complete/
mixture.py); later snapshots (a saved file) update it. Every face builds the cache model this way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..data.corpus import scan
from ..model.loaded import Model, load_model
from .confidence import thresholds_or_default
from .generate import Completer, Completion, CompletionOptions
from .mixture import MixtureScorer, stored_mixture
from .workspace_index import INDEX_FILE, IndexBuilder, IndexSettings, index_fingerprint

log = logging.getLogger(__name__)


class ServedModel:
    """One model serving completions, mixed with the workspace cache model once its index is built. Thread-safe.

    `model_dir` holds the index (the model file's folder unless given). With `workspace`, the index covers that
    folder's C files (scanned as for training) instead of the checkpoint's training files: a base model
    (engine/train/pretrain.py) serving a workspace without a model of its own yet."""

    def __init__(self, model: Model, model_dir: str | Path | None = None, settings: IndexSettings | None = None, *,
                 workspace: str | Path | None = None, cache_slots: int = 8):
        self.cache_slots = cache_slots
        self.ready = threading.Event()  # set once the mixing completer is in place, or known to be unavailable
        self._lock = threading.Lock()
        self._install(model, model_dir, settings, workspace)

    @classmethod
    def open(cls, path: str | Path, model_dir: str | Path | None = None, settings: IndexSettings | None = None, *,
             workspace: str | Path | None = None) -> ServedModel:
        """Load the .cllm file at `path` (CheckpointError when it cannot be used) and serve it; call `build` or
        `start` to mix in the workspace cache model."""
        return cls(load_model(path), model_dir, settings, workspace=workspace)

    def _install(self, model: Model, model_dir: str | Path | None, settings: IndexSettings | None,
                 workspace: str | Path | None) -> None:
        folder = Path(model_dir) if model_dir is not None else (model.path.parent if model.path else None)
        with self._lock:
            self.model, self.index = model, None
            self._plan = (folder, settings or IndexSettings(), workspace)
            self._completer = Completer(model, self.cache_slots)
            self.ready.clear()

    @property
    def mixes(self) -> bool:
        """Whether completions mix the workspace cache model in (False until the index's first snapshot)."""
        return self._completer.mixes

    def _serve(self, model: Model, completer: Completer) -> None:
        with self._lock:
            if self.model is model:
                self._completer = completer

    def build(self, own_thread: bool = False, then: Callable[[], None] | None = None) -> None:
        """Build or load the workspace index on this thread (at lower CPU priority with `own_thread`); the
        transformer alone keeps serving when it cannot be built. `then` runs after the build; `ready` is set
        then, unless the model was swapped meanwhile."""
        model, (model_dir, settings, workspace) = self.model, self._plan
        try:
            index = _index_builder(self, model, model_dir, settings, workspace)
            with self._lock:
                current = self.model is model
                if current:
                    self.index = index
            if index is not None and current:
                index.run(own_thread=own_thread)
        except Exception as exc:  # the transformer alone keeps serving
            log.warning("cache model unavailable for %s: %s", model.path, exc)
        if then is not None:
            then()
        with self._lock:
            if self.model is model:
                self.ready.set()

    def start(self, then: Callable[[], None] | None = None) -> threading.Thread:
        """`build` on a daemon thread of its own, at lower CPU priority."""
        thread = threading.Thread(target=self.build, args=(True, then), name="cllm-mixture", daemon=True)
        thread.start()
        return thread

    def swap(self, model: Model, model_dir: str | Path | None = None, settings: IndexSettings | None = None, *,
             workspace: str | Path | None = None) -> None:
        """Serve `model` instead (the transformer alone until `build` or `start` has built its index); the old
        model's index build stops."""
        if self.index is not None:
            self.index.stop()
        self._install(model, model_dir, settings, workspace)

    def stop(self) -> None:
        """Stop the index build (server shutdown or a model replaced)."""
        if self.index is not None:
            self.index.stop()

    def file_saved(self, rel: str) -> None:
        """A workspace file (relative path) was saved: update the index for that file only, off the caller's thread."""
        index = self.index
        if index is not None:
            threading.Thread(target=index.update_file, args=(rel,), name="cllm-index-save", daemon=True).start()

    def threshold(self, eagerness: str) -> float:
        """The confidence a suggestion needs to be shown at `eagerness`: the model's fitted threshold, or the default
        one for models that carry none (engine/complete/confidence.py)."""
        return thresholds_or_default(self.model.metadata.thresholds)[eagerness]

    def complete(self, prefix: str, suffix: str = "", options: CompletionOptions | None = None, *,
                 path: str | None = None, doc_key: Any = None, cancel: threading.Event | None = None,
                 on_text: Callable[[str], None] | None = None, lines_before: int = 0) -> Completion:
        """Complete the code between `prefix` and `suffix` (of the file at workspace-relative `path`, if known);
        see generate.Completer.complete."""
        return self._completer.complete(prefix, suffix, options, path=path, doc_key=doc_key, cancel=cancel,
                                        on_text=on_text, lines_before=lines_before)


def _index_builder(served: ServedModel, model: Model, model_dir: Path | None, settings: IndexSettings,
                   workspace: str | Path | None) -> IndexBuilder | None:
    """The IndexBuilder (not started) whose snapshots serve `model` mixed; None when the checkpoint stores no
    mixture weights or its workspace is gone."""
    mixture = stored_mixture({"mixture": model.metadata.mixture})
    if workspace is None:
        workspace = model.metadata.workspace
        files = [str(p) for p in model.metadata.train_files]
    else:
        files = [doc.path for doc in scan(workspace).documents]
    if mixture is None or model_dir is None or not workspace or not Path(workspace).is_dir():
        return None
    scorers: list[MixtureScorer] = []

    def on_snapshot(kn, index) -> None:
        if scorers:
            scorers[0].use(kn, index)
            return
        scorers.append(MixtureScorer(model.tokenizer, kn, index, mixture))
        served._serve(model, Completer(model, served.cache_slots, scorer=scorers[0]))

    return IndexBuilder(model.tokenizer, Path(workspace), files, model_dir / INDEX_FILE,
                        index_fingerprint(model.params, workspace), on_snapshot, settings)
