"""How a run starts: from scratch, from a base, continuing a model, or resuming an interrupted run.

`decide_start` is the one policy, from the user's flags and what exists on disk; the CLI, the Workspace and
`pretrain` ask it. Each RunStart variant opens its own state (`open()`: the shape and tokenizer the run keeps, the
metadata and lineage of the model it goes on from, and a `first_state` for the weights and Adam moments once the
data is known). `best_base` is the one place that says which base is used when the user names none.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Union

import numpy as np

from ..errors import CllmError
from ..config import ModelConfig
from ..events import BaseRecord, EventError, TrainingMetadata
from ..model import checkpoint as ckpt_io
from ..model.loaded import trained_context
from ..model.params import init_params
from ..model.tokenizer import Tokenizer
from ..paths import default_base_path
from . import shipped
from .base import Base, load_base
from .errors import TrainError


@dataclass
class RunRecord:
    """What the model file records of a run besides its position: loss and validation history, best weights."""

    best_val: float = math.inf  # validation loss of `best_params`
    best_bpb: float | None = None
    best_params: np.ndarray | None = None
    loss_history: list[tuple[int, float]] = field(default_factory=list)
    val_history: list = field(default_factory=list)  # EpochEvents

    def keep_if_best(self, val_loss: float, bpb: float, params: np.ndarray) -> None:
        """Copy `params` as the best weights when `val_loss` beats the best so far."""
        if val_loss < self.best_val:
            self.best_val, self.best_bpb = val_loss, bpb
            if self.best_params is None:
                self.best_params = params.copy()
            else:
                np.copyto(self.best_params, params)

    def weights(self, current: np.ndarray) -> np.ndarray:
        """The weights to ship: the best validated ones, or `current` when nothing was validated."""
        return self.best_params if self.best_params is not None else current


@dataclass
class State:
    """The resumable state of a run: weights, optimizer, data position, early-stopping record, run record."""

    params: np.ndarray
    m: np.ndarray
    v: np.ndarray
    step: int = 0
    epoch: int = 0
    batch: int = 0  # optimizer steps done within `epoch`
    tokens: int = 0
    best_epoch_val: float = math.inf  # best epoch-end validation loss (patience)
    bad_epochs: int = 0
    schedule_steps: int | None = None  # the learning-rate schedule's length once fitted to a time budget
    adam_steps: int = 0  # AdamW steps taken by earlier runs of a continued model (its bias correction goes on)
    record: RunRecord = field(default_factory=RunRecord)


def _zero_moments(params: np.ndarray) -> State:
    return State(params=params, m=np.zeros_like(params), v=np.zeros_like(params))


@dataclass
class Opened:
    """What a start hands the run. `first_state(model_cfg, seed, val_files)` builds the weights and moments once
    the run's shape and held-out files are known."""

    first_state: Callable[[ModelConfig, int, list[str]], State]
    shape: ModelConfig | None = None  # the shape the run keeps (None: the requested one, vocabulary from the data)
    tokenizer: Tokenizer | None = None  # None: trained on the data
    meta: TrainingMetadata | None = None  # of the model resumed or continued
    base: Base | None = None  # the base a run from a base starts from
    base_params: np.ndarray | None = None  # the weights of the base the model descends from, blended at the end
    defaults: str = "budget"  # who picks the unset settings: "budget", "finetune" or "" (resume: the model's)
    keeps_dropout: bool = False  # the shape is the model's but dropout is the requested one
    generation: int = 1  # runs the model has been trained in, this one included
    trained_before: dict[str, int] = field(default_factory=dict)  # earlier runs' training files -> generation
    resumed_from: str | None = None
    start_weights: np.ndarray | None = None  # the weights the model gone on from serves (--only-better validates)

    @property
    def base_record(self) -> BaseRecord | None:
        return self.base.record if self.base else self.meta.base if self.meta else None

    def context(self, model_cfg: ModelConfig, seq_len: int) -> int:
        """Positions the run's weights are trained at: its window, or the longer one of the weights it goes on
        from (a base's or a continued model's: the run keeps what they learned there)."""
        own = min(seq_len, model_cfg.max_seq_len)
        inherited = self.base.metadata if self.base is not None else self.meta
        return own if inherited is None else max(own, trained_context(inherited, model_cfg.max_seq_len))

    def model_config(self, requested: ModelConfig, tokenizer: Tokenizer) -> ModelConfig:
        """The run's model shape: the model's or the base's (with the requested dropout), else `requested`."""
        if self.shape is None:
            return replace(requested, vocab_size=tokenizer.vocab_size)
        return replace(self.shape, dropout=requested.dropout) if self.keeps_dropout else self.shape


@dataclass(frozen=True)
class Fresh:
    """From scratch: random weights, a tokenizer trained on the data."""

    def open(self) -> Opened:
        return Opened(first_state=lambda model_cfg, seed, val_files: _zero_moments(init_params(model_cfg, seed)))


@dataclass(frozen=True)
class FromBase:
    """Fine-tuning a base (engine/train/base.py): its weights, shape and tokenizer; fresh Adam moments."""

    path: str | os.PathLike

    def open(self) -> Opened:
        base = load_base(self.path)
        return Opened(first_state=lambda *_: _zero_moments(np.array(base.params, dtype=np.float32)),
                      shape=base.config, tokenizer=base.tokenizer, base=base, base_params=base.params,
                      defaults="finetune", keeps_dropout=True, start_weights=base.params)


@dataclass(frozen=True)
class Continue:
    """A new run of a model this trainer wrote (see `continuable`): its current weights, Adam moments, shape and
    tokenizer under a new schedule; the files its earlier runs trained on are recorded (lineage)."""

    path: str | os.PathLike

    def open(self) -> Opened:
        loaded, meta = _load_resumable(self.path)
        generation = meta.generation or 1
        return Opened(first_state=lambda _cfg, _seed, val_files: _continued_state(loaded, meta, val_files),
                      shape=loaded.model_config, tokenizer=Tokenizer.from_json(loaded.tokenizer_json), meta=meta,
                      base_params=_recorded_base_params(meta), defaults="finetune", keeps_dropout=True,
                      generation=generation + 1, start_weights=loaded.params,
                      trained_before={**meta.trained_before, **dict.fromkeys(meta.train_files, generation)})


@dataclass(frozen=True)
class Resume:
    """The interrupted run of a model, going on exactly where it stopped (N + M steps equal N + M bitwise)."""

    path: str | os.PathLike

    def open(self) -> Opened:
        loaded, meta = _load_resumable(self.path)
        return Opened(first_state=lambda *_: _resume_state(loaded, meta), shape=loaded.model_config,
                      tokenizer=Tokenizer.from_json(loaded.tokenizer_json), meta=meta,
                      base_params=_recorded_base_params(meta), defaults="", generation=meta.generation or 1,
                      trained_before=dict(meta.trained_before), resumed_from=str(self.path))


RunStart = Union[Fresh, FromBase, Continue, Resume]


@dataclass(frozen=True)
class StartRequest:
    """What the user asked for about a run's start (`cllm train`'s flags, the editors' options)."""

    workspace: str | os.PathLike
    resume: str | None = None
    continue_from: str | None = None
    fresh: bool = False
    base: str | None = None
    no_base: bool = False
    own_model: str | os.PathLike | None = None  # the workspace's model, continued when there (None: --out given)
    shape: tuple[str, ...] = ()  # the shape options given (flag names): they ask for a model of their own
    kept_shape: dict[str, int] = field(default_factory=dict)  # ModelConfig fields a continued model must have


def best_base() -> Path | None:
    """The base a run fine-tunes when the user names none: the user's cached base when it loads, else the base
    shipped in the package (engine/train/shipped.py)."""
    return shipped.best_base(default_base_path())


def decide_start(request: StartRequest, verify: bool = True,
                 refused: Callable[[str], None] = lambda reason: None) -> RunStart:
    """The run's start: --resume; else continuing (--continue-from, or the workspace's own model when it is there)
    unless --fresh or --base; else a base (--base, or `best_base` unless --no-base or a shape option); else Fresh.
    `verify` checks a model to continue (`continuable`), telling `refused` why one cannot be. ValueError for
    flags that contradict each other."""
    r = request
    for other in ("fresh", "resume", "base"):
        if r.continue_from and getattr(r, other):
            raise ValueError(f"--continue-from and --{other} contradict each other: give one")
    continued = None if r.fresh or r.resume or r.base else _continued(r, verify, refused)
    if continued is not None:
        return continued
    if r.base and r.no_base:
        raise ValueError("--base and --no-base contradict each other: give one")
    if r.base and r.resume:
        raise ValueError("--base does not go with --resume: the resumed model already started from its base")
    if r.base and r.shape:
        raise ValueError(f"--{r.shape[0].replace('_', '-')} cannot change with --base: the model's shape and "
                         "vocabulary come from the base")
    if r.resume:
        return Resume(r.resume)
    base = r.base or (None if r.no_base or r.shape else best_base())
    return FromBase(str(base)) if base else Fresh()


def _continued(r: StartRequest, verify: bool, refused: Callable[[str], None]) -> Continue | None:
    """Continue the named model, or the workspace's own when it is there; None when it cannot be continued."""
    candidate = r.continue_from or r.own_model
    if candidate is None or not (r.continue_from or os.path.isfile(candidate)):
        return None
    reason = continuable(candidate, r.workspace, r.kept_shape) if verify else None
    if reason is not None:
        refused(reason)
        return None
    return Continue(str(candidate))


def continuable(path: str | os.PathLike, workspace: str | os.PathLike, shape: dict[str, int]) -> str | None:
    """Why a run on `workspace` cannot continue the model file at `path` (None when it can): the file must be a
    model this trainer wrote for that same folder, with its optimizer state, and every ModelConfig field in
    `shape` (what the user asked for) must equal the model's."""
    try:
        loaded = ckpt_io.load_checkpoint(path)
        meta = TrainingMetadata.from_json(loaded.metadata)
    except (CllmError, EventError, OSError) as exc:
        return str(exc)
    if meta.workspace != str(Path(workspace).resolve()):
        return f"{path} was trained on {meta.workspace or 'other files'}, not on {Path(workspace).resolve()}"
    if meta.resume is None:
        return f"{path} holds no optimizer state"
    changed = [name for name, value in shape.items() if getattr(loaded.model_config, name) != value]
    if changed:
        return f"{path} has another {', '.join(changed)}"
    return None


def training_metadata(path: str | os.PathLike, loaded: ckpt_io.Checkpoint) -> TrainingMetadata:
    """The checkpoint's training metadata; TrainError naming the field when it is malformed."""
    try:
        return TrainingMetadata.from_json(loaded.metadata)
    except EventError as exc:
        raise TrainError(f"{path}: {exc}") from None


def _load_resumable(path: str | os.PathLike) -> tuple[ckpt_io.Checkpoint, TrainingMetadata]:
    """The checkpoint to go on from and its metadata, refusing one without optimizer state or position."""
    loaded = ckpt_io.load_checkpoint(path, with_optimizer=True)
    meta = training_metadata(path, loaded)
    if loaded.optimizer is None or meta.resume is None:
        raise TrainError(f"{path} holds no optimizer state or data position, so training cannot resume from it")
    return loaded, meta


def _recorded_base_params(meta: TrainingMetadata) -> np.ndarray | None:
    """The weights of the base a resumed or continued model descends from (its metadata's `base`), so that the run
    blends with them at the end as a run from the base does; None without a base, or when its file is gone or
    holds other weights now."""
    if meta.base is None:
        return None
    try:
        base = ckpt_io.load_checkpoint(meta.base.path)
    except CllmError:
        return None
    return base.params if ckpt_io.weights_sha256(base) == meta.base.weights_sha256 else None


def _resume_state(loaded: ckpt_io.Checkpoint, meta: TrainingMetadata) -> State:
    """The run state recorded in a checkpoint written by this trainer."""
    opt, position = loaded.optimizer, meta.resume
    has_best = meta.val_loss is not None
    record = RunRecord(
        best_val=float(meta.val_loss) if has_best else math.inf, best_bpb=meta.val_bits_per_byte if has_best else None,
        best_params=np.array(loaded.params, dtype=np.float32) if has_best else None,
        loss_history=list(meta.loss_history), val_history=list(meta.val_history),
    )
    return State(
        params=np.array(opt.get("params", loaded.params), dtype=np.float32), m=np.array(opt["m"], dtype=np.float32),
        v=np.array(opt["v"], dtype=np.float32), step=position.step, epoch=position.epoch, batch=position.batch,
        tokens=position.tokens,
        best_epoch_val=math.inf if position.best_epoch_val is None else float(position.best_epoch_val),
        bad_epochs=position.bad_epochs, schedule_steps=position.schedule_steps,
        adam_steps=max(0, int(opt["step"]) - position.step), record=record,
    )


def _continued_state(loaded: ckpt_io.Checkpoint, meta: TrainingMetadata, val_files: Collection[str]) -> State:
    """A continued run's first state: the model's current weights and Adam moments (Adam's step count goes on, for
    its bias correction) under a new schedule from step 0. The best weights and their validation loss carry over
    when the held-out files are the same ones, so the model file changes only to weights that validate better."""
    previous = _resume_state(loaded, meta)
    record = previous.record if list(val_files) == meta.val_files else RunRecord()
    record.loss_history, record.val_history = [], []
    return State(params=previous.params, m=previous.m, v=previous.v,
                 adam_steps=previous.adam_steps + previous.step, record=record)
