"""A model loaded for completion: weights, tokenizer and training record, read from a .cllm file once.

`load_model` checks that the checkpoint's tokenizer and weights fit its config, parses its training record into a
TrainingMetadata (engine/events.py; older files lack fields and still load) and warms the kernels up.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import ModelConfig
from ..data.windows import FIM_FORMAT
from ..events import EventError, TrainingMetadata
from .checkpoint import CheckpointError, load_checkpoint
from .network import GreedyHead, greedy_head, infer, new_cache
from .params import num_params
from .tokenizer import Tokenizer


def trained_context(metadata: TrainingMetadata, max_seq_len: int) -> int:
    """Positions a model's weights were trained at (positions beyond them are untrained): the context its file
    records (a fine-tune's window or its base's, the longer), else its training sequence length, else the model's
    max_seq_len."""
    for value in (metadata.context, metadata.seq_len, metadata.train_config.get("seq_len")):
        if isinstance(value, int) and value > 0:
            return min(value, max_seq_len)
    return max_seq_len


@dataclass(eq=False)
class Model:
    """A loaded model: weights, tokenizer and training record. `context` is the longest prompt + completion.
    Models compare by identity (their weights are arrays).

    The weights are immutable once the Model exists: derived copies (the int8 `greedy_head`) are built once
    and never rebuilt, so code that changes weights (training) must build a new Model from them."""

    config: ModelConfig
    params: np.ndarray
    tokenizer: Tokenizer
    metadata: TrainingMetadata
    path: Path | None = None
    _greedy: tuple[GreedyHead | None] | None = field(default=None, init=False, repr=False, compare=False)
    _greedy_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    @property
    def context(self) -> int:
        """Positions a prompt plus completion may use (trained_context)."""
        return trained_context(self.metadata, self.config.max_seq_len)

    @property
    def fills_middle(self) -> bool:
        """Whether the model was trained on suffix-first fill-in-the-middle (engine/data/windows.py), so prompts may
        carry the text after the cursor. Models from before that format get plain prompts: the older order hurt."""
        return self.metadata.fim == FIM_FORMAT

    @property
    def greedy_head(self) -> GreedyHead | None:
        """The int8 output head over the tokenizer's tokens for exact greedy decoding (model.greedy_head),
        built on first use (load_model builds it); None when the weights are not finite."""
        with self._greedy_lock:
            if self._greedy is None:
                rows = min(self.tokenizer.vocab_size, self.config.vocab_size)
                try:
                    self._greedy = (greedy_head(self.params, self.config, rows),)
                except ValueError:
                    self._greedy = (None,)
            return self._greedy[0]


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
    try:
        metadata = TrainingMetadata.from_json(ckpt.metadata or {})
    except EventError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    model = Model(cfg, np.ascontiguousarray(ckpt.params, dtype=np.float32), tokenizer, metadata, path)
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
