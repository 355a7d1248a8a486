"""Training: corpus -> tokenizer -> windows -> spheres -> AdamW, with validation, checkpoints and events.

One optimizer step = grad_accum micro-batches of batch_size windows, run by the spheres (engine/train/spheres.py) into
one reduced gradient of the mean token loss, clipped to a global norm, then one AdamW step. The learning rate
warms up linearly and decays on a cosine to min_lr_ratio * lr over the planned run (epochs x steps per epoch;
--max-steps stops the run without reshaping the schedule, so a resumed run replays it exactly; with
--time-budget the schedule is fitted, after every step once a few are timed, to the steps the budget holds). A
budgeted run started with `explicit` (what `cllm train` was given) takes the settings the user left unset from
config.budget_defaults, sized to the training data.

Before the first step: the scan, the tokenizer (trained on a deterministic sample of at most
TOKENIZER_SAMPLE_BYTES) and the tokenization (chunks tokenized in parallel into a memory-mapped token file, see
data.token_file), each reporting a PhaseEvent and checking the cancel flag as it goes; the time budget counts
them, and a tree bigger than a time budget can use is sampled down to what it can (_budget_sample). After each
epoch: validation loss and bits per byte on the held-out files (at most VALIDATION_WINDOWS windows spread over
them), a checkpoint, early stopping after `patience` epochs without improvement. The model file always holds the
best weights seen by validation; the current weights, Adam moments and data position ride along so that N steps +
resume M steps equal N + M steps bitwise. A time budget keeps room for the work after the last step
(FinishEstimate: validation, the mixture's fit, the held-out line scoring, the model file); a budgeted run
prepares the held-out scoring's weight-independent inputs (workspace models, copying models' probabilities) at
its first stop check, so that their time is spent before its stop decisions and the rest is timed, not guessed.
Progress goes to `on_event` as the typed events of engine/events.py (step events at most 4 per second;
docs/protocol.md lists them), and the model file's training metadata is an events.TrainingMetadata.

A run is three parts: `_Run` (the loop: steps, schedule fit, stop rules, validation, saving), `_Telemetry` (the
spheres' statistics and the rate of step events) and `_RunRecord` (loss history, validation history, the best
weights), which the model file records.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..model import checkpoint as ckpt_io
from ..data import corpus
from .base import Base, load_base, read_replay, replay_documents
from ..config import (CorpusConfig, ModelConfig, TrainConfig, budget_defaults, budget_sample_bytes, finetune_defaults,
                     from_dict, to_dict)
from ..data.windows import (FIM_FORMAT, EpochPlan, FimTokens, epoch_plan, fill_batch, num_windows, spread_plan, stream_bytes,
                   token_file)
from ..errors import CllmError
from ..eval.evaluate import HELDOUT_POSITIONS, line_exact_match
from ..events import (BaseRecord, CheckpointEvent, DoneEvent, EpochEvent, EventError, PhaseEvent, ResumePosition,
                     RunSettings, RunStats, SkippedFile, StartEvent, StepEvent, TrainingEvent, TrainingMetadata)
from ..faults import fault_point
from ..model.loaded import Model
from ..eval.heldout import affordable, batch_seconds, heldout_mixture, scoring_batches
from ..model.kernels import adamw_step
from ..complete.mixture import MixtureScorer, copying_parts, fitted_mixture, stored_mixture, workspace_models
from ..model.params import decay_mask, init_params
from .spheres import Spheres, StepResult, resolve_threads
from ..model.tokenizer import Tokenizer

_MODEL_FIELDS = {f.name for f in fields(ModelConfig)}
EVENT_INTERVAL = 0.25  # seconds between step events
FIT_WINDOW = 20  # recent steps whose median time fits a time-budgeted schedule
LOSS_HISTORY_POINTS = 200
VALIDATION_WINDOWS = 256  # held-out windows one validation pass scores at most (spread evenly; all when fewer)
TOKENIZER_SAMPLE_BYTES = 16_000_000  # the tokenizer learns its merges from at most this much training text
MIXTURE_HELDOUT_BYTES = 200_000  # held-out text the completion mixture's weights are fitted on, at most
MIXTURE_TRAIN_BYTES = 2_000_000  # training text behind the workspace models of that fit, at most
MIXTURE_BUDGET_SHARE = 0.1  # of a time budget for the forward passes of the mixture's fit (_time_scoring)
LINE_PROBE_POSITIONS = 2  # line completions timed once in a run with a time budget, to foresee the held-out scoring
# After fine-tuning a base, the best weights are moved part of the way back towards the base's, tuned * s + base *
# (1 - s) for the shares s here in turn, while that validates better (_blend_with_base). Weight-space ensembles of
# a model and its fine-tuned self generalise better than either (Wortsman et al., 2022, "Robust fine-tuning of
# zero-shot models", WiSE-FT): the fine-tune memorises its workspace within a few passes, and the held-out files
# are new code. On three PyPI projects' held-out files (600-s fine-tunes of a /usr/include base, 2 cores), s = 0.7
# took the transformer from 1.008 to 0.975 bits per byte (psycopg2), 1.293 to 1.218 (bitarray) and 1.104 to 1.052
# (psutil), the mixture from 0.805 to 0.791, 0.948 to 0.917 and 0.839 to 0.824; on psycopg2 s = 0.85 gave 0.978
# and s = 0.5 1.033. Completions cost the same: the architecture is unchanged.
TUNED_SHARES = (0.85, 0.7, 0.55, 0.4)


class TrainError(CllmError, ValueError):
    """The training cannot start: the message says why (no C files, impossible settings, bad checkpoint)."""


class TrainCancelled(TrainError):
    """The cancel flag was set before the first step (scan, tokenizer, tokenization): no model was written and
    an existing model file is untouched."""


@dataclass
class _Data:
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
class _RunRecord:
    """What the model file records of a run besides its position: loss and validation history, best weights."""

    best_val: float = math.inf  # validation loss of `best_params`
    best_bpb: float | None = None
    best_params: np.ndarray | None = None
    loss_history: list[tuple[int, float]] = field(default_factory=list)
    val_history: list[EpochEvent] = field(default_factory=list)

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
class _State:
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
    record: _RunRecord = field(default_factory=_RunRecord)


@dataclass
class FinishEstimate:
    """Seconds the work after a run's last step will take, by part (what a time budget keeps free for it)."""

    validation: float  # the last validation pass (a run that stops inside an epoch)
    blend: float  # the validation passes of the blends with the base (fine-tuning)
    mixture: float  # forward passes over the held-out sample and the fit of the mixture's weights
    lines: float  # the held-out line exact match
    save: float  # writing the model file

    def total(self) -> float:
        return self.validation + self.blend + self.mixture + self.lines + self.save


@dataclass
class _HeldoutInputs:
    """What the end-of-run held-out scoring needs that does not depend on the weights, prepared once: deterministic
    samples of at most MIXTURE_HELDOUT_BYTES held-out and MIXTURE_TRAIN_BYTES training text (all of a small
    workspace), the workspace models over the latter and the copying models' probabilities on the held-out
    documents the fit scores (None without a workspace folder or held-out files), and with a time budget what the
    rest of the scoring will cost: the forward batches over those documents, and the seconds of one such batch and
    of the weights' fit, timed here (_time_scoring)."""

    val_docs: list
    train_docs: list
    fit_docs: list = field(default_factory=list)  # the held-out documents the mixture is fitted on (_time_scoring)
    models: tuple | None = None
    copying: list | None = None
    batches: int = 0
    batch_seconds: float = 0.0
    fit_seconds: float = 0.0


def warmup_steps(cfg: TrainConfig, total_steps: int) -> int:
    """Warm-up length of a `total_steps` run: cfg.warmup_steps, but at most cfg.warmup_fraction of the run, so
    short runs (a time budget, a small workspace) spend most of their steps at the peak rate."""
    return min(cfg.warmup_steps, int(cfg.warmup_fraction * total_steps))


def learning_rate(step: int, cfg: TrainConfig, total_steps: int) -> float:
    """Linear warm-up (see warmup_steps) then cosine decay to cfg.min_lr_ratio * cfg.lr."""
    warmup = warmup_steps(cfg, total_steps)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def apply_update(params: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray, decay: np.ndarray,
                 sq_norm: float, lr: float, step: int, cfg: TrainConfig) -> None:
    """The control sphere's update after the reduction: clip `grad` in place to cfg.grad_clip (global L2 norm,
    from the reduction's `sq_norm`), then AdamW step number step + 1 on the flat buffers."""
    norm = math.sqrt(sq_norm)
    if cfg.grad_clip > 0 and norm > cfg.grad_clip:
        np.multiply(grad, np.float32(cfg.grad_clip / norm), out=grad)
    adamw_step(params, grad, m, v, decay, lr, cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay, step + 1)


def train(
    root_or_documents: str | os.PathLike | Sequence,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    out_path: str | os.PathLike,
    on_event: Callable[[TrainingEvent], None] | None = None,
    resume: str | os.PathLike | None = None,
    cancel: threading.Event | None = None,
    explicit: Collection[str] | None = None,
    corpus_config: CorpusConfig = CorpusConfig(),
    cluster: str | None = None,
    base: str | os.PathLike | None = None,
    continue_from: str | os.PathLike | None = None,
) -> DoneEvent:
    """Train on a workspace folder (or a list of corpus.Document) and write the model to `out_path`.

    `explicit` names the settings the user chose (ModelConfig/TrainConfig fields); given it, a fresh run with a
    time budget lets config.budget_defaults pick the others from the training data's size (the start event lists
    them under "auto"). Without it (None) the configs are used as they are. `corpus_config` decides which files
    of a folder are scanned (engine/data/corpus.py). `cluster` (a Ray address or "auto") runs the spheres as Ray actors
    (engine/train/cluster.py) instead of on local threads: same weights, bitwise. Setting `cancel` stops the run within
    about a second in any phase: after the current step with the model written, or before the first step with
    TrainCancelled.
    `base` (a .cllm file, engine/train/base.py) fine-tunes: the run starts from the base's weights, shape and tokenizer
    (model_cfg only lends its dropout), replays train_cfg.replay_fraction of base-corpus text, and with
    `explicit` takes its unset settings from config.finetune_defaults. Ignored when resuming.
    `continue_from` (a model this module wrote for the same workspace, see `continuable`) starts a new run from
    its current weights, Adam moments, shape and tokenizer, with a new schedule (and fine-tuning's defaults given
    `explicit`); a time budget then samples the files its earlier runs did not train on first, then the least
    recently trained (the model records them), and the done event's corpus_seen grows from run to run. Ignored
    when resuming; `base` is ignored when continuing.
    Returns the done event. Raises TrainError for unusable input, SphereError/CheckpointError for failures
    during the run (the last checkpoint written stays intact)."""
    started = time.perf_counter()
    emit = on_event or (lambda event: None)
    cancel = cancel or threading.Event()
    out_path = Path(out_path)
    _check_train_config(train_cfg)
    loaded, loaded_meta = _load_resume(resume) if resume is not None else (None, None)
    prior, prior_meta = _load_resume(continue_from) if continue_from is not None and loaded is None else (None, None)
    start = load_base(base) if base is not None and loaded is None and prior is None else None
    trained = loaded or prior  # the model whose shape and tokenizer the run keeps
    _check_model_config(trained.model_config if trained else start.config if start else model_cfg, train_cfg)
    tokenizer = Tokenizer.from_json(trained.tokenizer_json) if trained else start.tokenizer if start else None
    docs = _load_documents(root_or_documents, train_cfg.val_fraction, corpus_config, _Phase("scan", "files", emit, cancel))
    generation, trained_before = _lineage(loaded_meta, prior_meta)
    docs = _budget_sample(docs, train_cfg.time_budget, train_cfg.val_fraction, trained_before)
    auto: dict[str, Any] = {}
    if explicit is not None and loaded is None:
        policy = finetune_defaults if start or prior else budget_defaults
        auto = policy(stream_bytes(docs.train), train_cfg.time_budget, model_cfg, train_cfg, explicit)
        model_cfg = replace(model_cfg, **{k: v for k, v in auto.items() if k in _MODEL_FIELDS})
        train_cfg = replace(train_cfg, **{k: v for k, v in auto.items() if k not in _MODEL_FIELDS})
    trained_meta = loaded_meta or prior_meta
    data = _encode(docs, train_cfg, model_cfg.vocab_size, tokenizer, out_path.parent, emit, cancel,
                   _replay(start, trained_meta, docs, train_cfg))
    data.base = start.record if start else trained_meta.base if trained_meta else None
    data.generation, data.trained_before = generation, trained_before
    if loaded:
        model_cfg = loaded.model_config
    elif prior or start:
        model_cfg = replace(prior.model_config if prior else start.config, dropout=model_cfg.dropout)
    else:
        model_cfg = replace(model_cfg, vocab_size=data.tokenizer.vocab_size)
    if loaded:
        state = _resume_state(loaded, loaded_meta)
    elif prior:
        same_heldout = [doc.path for doc in data.val_docs] == prior_meta.val_files
        state = _continued_state(prior, prior_meta, same_heldout)
    else:
        state = _base_state(start) if start else _fresh_state(model_cfg, train_cfg.seed)
    if data.root is not None:
        corpus.write_consolidated(data.documents, out_path.parent / "repo_code.txt")
    threads = train_cfg.spheres if cluster is not None else resolve_threads(train_cfg.threads, train_cfg.spheres)
    total_steps = state.schedule_steps or train_cfg.epochs * data.steps_per_epoch
    emit(PhaseEvent(phase="train", done=state.step, total=total_steps, unit="steps"))
    emit(StartEvent(
        workspace=data.root, files=len(data.documents), skipped=data.skipped, corpus=corpus.stats(data.documents),
        train_files=len(data.train_docs), val_files=len(data.val_docs), tokens=int(data.stream.size),
        val_tokens=int(data.val_stream.size), vocab_size=model_cfg.vocab_size, params=int(state.params.size),
        epochs=train_cfg.epochs, steps_per_epoch=data.steps_per_epoch, total_steps=total_steps, step=state.step,
        spheres=train_cfg.spheres, threads=threads, resumed_from=str(resume) if resume else None,
        settings=RunSettings(batch_size=train_cfg.batch_size, seq_len=train_cfg.seq_len,
                             grad_accum=train_cfg.grad_accum, lr=train_cfg.lr, warmup_steps=train_cfg.warmup_steps,
                             warmup_fraction=train_cfg.warmup_fraction, weight_decay=train_cfg.weight_decay,
                             dropout=model_cfg.dropout, time_budget=train_cfg.time_budget,
                             replay_fraction=train_cfg.replay_fraction if data.replay else 0.0),
        auto=sorted(auto),
    ))
    with _open_spheres(model_cfg, train_cfg, threads, cluster) as spheres:
        base_params = start.params if start else _recorded_base_params(trained_meta) if trained_meta else None
        run = _Run(data, model_cfg, train_cfg, state, spheres, emit, cancel, out_path, started, total_steps,
                   base_params=base_params)
        return run.loop()


def _open_spheres(model_cfg: ModelConfig, train_cfg: TrainConfig, threads: int, cluster: str | None):
    """The run's spheres: a pool of `threads` threads, or one Ray actor per sphere on `cluster`."""
    shard = -(-train_cfg.batch_size // train_cfg.spheres)
    if cluster is None:
        return Spheres(model_cfg, train_cfg.spheres, threads, shard, train_cfg.seq_len)
    from .cluster import ClusterSpheres  # imports Ray, an optional dependency

    return ClusterSpheres(model_cfg, train_cfg.spheres, shard, train_cfg.seq_len, cluster)


class _Telemetry:
    """The spheres' statistics over a run (throughput, load imbalance, sync overhead) and the rate limit of
    step events: one at most every EVENT_INTERVAL seconds, its throughput measured since the previous one."""

    def __init__(self, threads: int):
        self.threads = threads
        self.tokens = 0
        self.step_seconds = 0.0
        self.useful_seconds = 0.0  # summed busy time of the spheres, per thread
        self.imbalance_sum = 0.0
        self.steps = 0
        self.last_loss: float | None = None
        self._last_event = -math.inf
        self._event_tokens = 0
        self._event_time = time.perf_counter()

    def add(self, result: StepResult, wall: float, loss: float) -> None:
        """Fold one optimizer step of `wall` seconds into the run's totals."""
        self.tokens += result.tokens
        self.step_seconds += wall
        self.useful_seconds += float(result.busy.sum()) / self.threads
        self.imbalance_sum += result.load_imbalance
        self.steps += 1
        self.last_loss = loss
        self._event_tokens += result.tokens

    def event_rate(self) -> float | None:
        """None while the last step event is recent; else the tokens per second since it (starting a new one)."""
        now = time.perf_counter()
        if now - self._last_event < EVENT_INTERVAL:
            return None
        rate = self._event_tokens / max(now - self._event_time, 1e-9)
        self._last_event, self._event_time, self._event_tokens = now, now, 0
        return rate

    def sync_overhead(self, result: StepResult, wall: float) -> float:
        """Share of one step's `wall` seconds the threads did not compute (waits and the reduction)."""
        return max(0.0, 1.0 - float(result.busy.sum()) / self.threads / wall)

    def tokens_per_second(self) -> float:
        """Training tokens over the summed step time so far (0 before the first step)."""
        return self.tokens / max(self.step_seconds, 1e-9) if self.steps else 0.0

    def averages(self) -> RunStats:
        """Run averages: tokens/s over the step time, load imbalance, sync overhead (idle + control share)."""
        seconds = max(self.step_seconds, 1e-9)
        return RunStats(
            tokens_per_second=self.tokens_per_second(),
            load_imbalance=self.imbalance_sum / max(self.steps, 1),
            sync_overhead=max(0.0, 1.0 - self.useful_seconds / seconds) if self.steps else 0.0,
            step_ms=1000.0 * self.step_seconds / max(self.steps, 1),
        )


class _Run:
    """The epoch/step loop of one train() call."""

    def __init__(self, data: _Data, model_cfg: ModelConfig, train_cfg: TrainConfig, state: _State, spheres: Spheres,
                 emit: Callable[[TrainingEvent], None], cancel: threading.Event, out_path: Path, started: float,
                 total_steps: int, base_params: np.ndarray | None = None):
        self.data, self.model_cfg, self.cfg, self.state = data, model_cfg, train_cfg, state
        self.base_params = base_params  # the weights of the base the model descends from (None without one)
        self.base_share: float | None = None  # of the base's weights in the stored ones, once blended
        self.spheres, self.emit, self.cancel, self.out_path = spheres, emit, cancel, out_path
        self.started, self.total_steps = started, total_steps
        self.planned_steps = train_cfg.epochs * data.steps_per_epoch
        self.fim = FimTokens.from_tokenizer(data.tokenizer)
        self.decay = decay_mask(model_cfg)
        self.grad = np.zeros_like(state.params)
        shape = (train_cfg.grad_accum, train_cfg.batch_size, train_cfg.seq_len)
        self.inputs, self.targets = np.zeros(shape, np.int32), np.zeros(shape, np.int32)
        self.telemetry = _Telemetry(spheres.n_threads)
        self.history_every = max(1, total_steps // LOSS_HISTORY_POINTS)
        self.step_walls: list[float] = []
        self.validate_seconds: float | None = None  # last measured duration of a validation pass
        self.validation_batch_seconds: float | None = None  # one validation batch, timed once before the first pass
        self.save_seconds: float | None = None  # last measured duration of writing the model file
        self.mixture: dict[str, Any] | None = None  # cache-model weights (engine/complete/mixture.py), fitted at the end
        self.heldout: _HeldoutInputs | None = None  # prepared once (_heldout_inputs)
        self.line_exact_match: float | None = None  # of the shipped completer on held-out lines, measured at the end
        self.line_seconds: float | None = None  # one held-out line completion, timed once (_line_seconds)

    def loop(self) -> DoneEvent:
        """Run epochs until done or a stop rule fires; write the final model; return the done event."""
        s, cfg = self.state, self.cfg
        reason, validated = "completed", True
        while s.epoch < cfg.epochs and reason == "completed":
            plan = epoch_plan(self.data.n_windows, cfg.seq_len, cfg.seed, s.epoch, cfg.fim_rate)
            epoch_loss, epoch_tokens = 0.0, 0
            while s.batch < self.data.steps_per_epoch and reason == "completed":
                result = self._step(plan)
                epoch_loss += result.loss_sum
                epoch_tokens += result.tokens
                reason, validated = self._stop_reason(result), False
            if s.batch < self.data.steps_per_epoch:
                break  # stopped inside the epoch
            s.epoch, s.batch = s.epoch + 1, 0
            ended = self._end_epoch(epoch_loss / max(epoch_tokens, 1))
            reason, validated = (ended if reason == "completed" else reason), True
            if reason == "completed" and s.epoch < cfg.epochs:
                self._save()
        if not validated:
            self._validate_current()
        if reason != "cancelled":
            self._blend_with_base()
            reason = self._score_heldout(reason)
        path = self._save()
        return self._done(path, reason)

    def _blend_with_base(self) -> None:
        """Fine-tuning: replace the best weights by their blend with the base's, tuned * s + base * (1 - s), going
        down TUNED_SHARES while each blend validates better than the weights before it (none kept when the first
        does not beat the fine-tuned ones). Stops where it is when the cancel flag is set meanwhile."""
        record = self.state.record
        if self.base_params is None or record.best_params is None:
            return
        tuned, share = record.best_params.copy(), 1.0
        for candidate in TUNED_SHARES:
            blend = (candidate * tuned + (1.0 - candidate) * self.base_params).astype(np.float32)
            scored = self._validation(blend)
            if scored is None or scored[0] >= record.best_val:
                break
            record.keep_if_best(*scored, blend)
            share = candidate
        self.base_share = round(1.0 - share, 6)

    def _score_heldout(self, reason: str) -> str:
        """Fit the completion mixture's weights (workspace runs), then measure the line exact match of the completer
        the model ships (the mixture, else the transformer alone) at HELDOUT_POSITIONS; both on the samples of
        _heldout_inputs. Returns "cancelled", with nothing recorded, when the cancel flag is set meanwhile, else
        `reason`."""
        def check_cancel(*_) -> None:
            if self.cancel.is_set():
                raise TrainCancelled("cancelled while scoring the held-out files")

        d, weights = self.data, self.state.record.weights(self.state.params)
        try:
            h = self._heldout_inputs()
            if h.models is not None:
                self.mixture = heldout_mixture(weights, self.model_cfg, d.tokenizer, h.fit_docs, h.train_docs,
                                               self._window(), h.models, progress=check_cancel, copying=h.copying)
            mixture = stored_mixture({"mixture": self.mixture}) if self.mixture else None
            scorer = None if h.models is None or mixture is None else MixtureScorer(d.tokenizer, *h.models, mixture)
            check_cancel()
            self.line_exact_match = line_exact_match(self._shipped_model(weights), h.val_docs, scorer)
        except TrainCancelled:
            self.mixture, self.line_exact_match = None, None
            return "cancelled"
        return reason

    def _window(self) -> int:
        """The held-out scoring's window: the training sequence length, within the model's."""
        return min(self.cfg.seq_len, self.model_cfg.max_seq_len)

    def _heldout_inputs(self) -> _HeldoutInputs:
        """The held-out scoring's weight-independent inputs (_HeldoutInputs), prepared at the first call: at the end
        of the run, or at a budgeted run's first stop check, so that the time they take is spent before its stop
        decision rather than after it."""
        if self.heldout is None:
            d = self.data
            h = _HeldoutInputs(
                val_docs=corpus.load_documents(corpus.sample_documents(d.val_docs, MIXTURE_HELDOUT_BYTES)),
                train_docs=corpus.load_documents(corpus.sample_documents(d.train_docs, MIXTURE_TRAIN_BYTES)))
            if d.root is not None and h.val_docs and h.train_docs:
                h.models = workspace_models(d.tokenizer, h.train_docs)
                h.fit_docs, h.copying = h.val_docs, copying_parts(*h.models, d.tokenizer, h.val_docs)
                if self.cfg.time_budget is not None:
                    self._time_scoring(h)
            self.heldout = h
        return self.heldout

    def _time_scoring(self, h: _HeldoutInputs) -> None:
        """With a time budget, what the mixture's fit will cost, and no more than MIXTURE_BUDGET_SHARE of the budget
        for its forward passes (a 60-s run on the kernel tree spent 22 s scoring 200 KB of held-out text on 2 busy
        cores): time one forward batch (heldout.batch_seconds), keep the held-out documents that many batches
        afford (heldout.affordable: all of them, or a sample of which only the first file may need more on its
        own), count their batches, and time the weights' fit on them (on a uniform transformer: the same
        arithmetic)."""
        d, window = self.data, self._window()
        headers = [len(d.tokenizer.header_ids(doc.path)) for doc in h.val_docs]
        lengths = [(len(probs) + n, n) for (probs, _), n in zip(h.copying, headers)]
        h.batch_seconds = batch_seconds(self.state.params, self.model_cfg, window, h.models[0],
                                        [length for length, _ in lengths])
        max_batches = int(MIXTURE_BUDGET_SHARE * self.cfg.time_budget / max(h.batch_seconds, 1e-9))
        fit = {doc.path for doc in affordable(h.val_docs, lengths, window, max_batches)}
        kept = [i for i, doc in enumerate(h.val_docs) if doc.path in fit]
        h.fit_docs, h.copying = [h.val_docs[i] for i in kept], [h.copying[i] for i in kept]
        h.batches = scoring_batches([lengths[i] for i in kept], window)
        uniform = [np.full(len(probs), math.log(d.tokenizer.vocab_size)) for probs, _ in h.copying]
        sure = [np.zeros(len(probs), dtype=np.int64) for probs, _ in h.copying]
        begin = time.perf_counter()
        fitted_mixture(uniform, [np.exp(-nats) for nats in uniform], sure, *h.models, d.tokenizer, h.fit_docs,
                       h.copying)
        h.fit_seconds = time.perf_counter() - begin

    def _shipped_model(self, weights: np.ndarray) -> Model:
        """The completion model of `weights`, as the written file will load it."""
        return Model(self.model_cfg, weights, self.data.tokenizer,
                     TrainingMetadata(seq_len=self.cfg.seq_len, fim=self._fim_format()))

    def _line_seconds(self) -> float:
        """Seconds one held-out line completion takes, timed once on LINE_PROBE_POSITIONS held-out positions with the
        current weights after one untimed completion (which loads the decoding kernels), with the transformer alone: the mixture's work per token (the copying models' lookups, a
        scan of the document so far, and the pooled component's softmax over the vocabulary) is not counted."""
        if self.line_seconds is None:
            val_docs = self._heldout_inputs().val_docs
            line_exact_match(self._shipped_model(self.state.params), val_docs, positions=1)  # loads the kernels
            t0 = time.perf_counter()
            line_exact_match(self._shipped_model(self.state.params), val_docs, positions=LINE_PROBE_POSITIONS)
            self.line_seconds = (time.perf_counter() - t0) / LINE_PROBE_POSITIONS
        return self.line_seconds

    def _fim_format(self) -> str | None:
        return FIM_FORMAT if self.cfg.fim_rate > 0 else None

    def _step(self, plan: EpochPlan) -> StepResult:
        """One optimizer step: fill the micro-batches, run the spheres, clip, AdamW; then its telemetry."""
        s, cfg = self.state, self.cfg
        t0 = time.perf_counter()
        batches = []
        for micro in range(cfg.grad_accum):
            start = (s.batch * cfg.grad_accum + micro) * cfg.batch_size
            if start >= len(plan.order):
                break
            rows = fill_batch(self.inputs[micro], self.targets[micro], self.data.stream, plan, start, cfg.seq_len, self.fim)
            batches.append((self.inputs[micro, :rows], self.targets[micro, :rows]))
        result = self.spheres.step(s.params, batches, self.grad, dropout=self.model_cfg.dropout, seed=cfg.seed, step=s.step)
        lr = learning_rate(s.step, cfg, self.total_steps)
        apply_update(s.params, self.grad, s.m, s.v, self.decay, result.sq_norm, lr, s.adam_steps + s.step, cfg)
        s.step += 1
        s.batch += 1
        s.tokens += result.tokens
        fault_point("step")
        loss = result.loss_sum / max(result.tokens, 1)
        if s.step % self.history_every == 0:
            s.record.loss_history.append((s.step, round(loss, 5)))
        wall = time.perf_counter() - t0
        self.step_walls.append(wall)
        self._fit_schedule_to_budget()
        self.telemetry.add(result, wall, loss)
        rate = self.telemetry.event_rate()
        if rate is not None:
            self.emit(StepEvent(
                epoch=s.epoch + 1, epochs=cfg.epochs, step=s.step, total_steps=self.total_steps, loss=loss, lr=lr,
                tokens=s.tokens, tokens_per_second=rate, load_imbalance=result.load_imbalance,
                sync_overhead=self.telemetry.sync_overhead(result, wall), threads=self.spheres.n_threads,
                spheres=result.spheres, seconds_remaining=self._seconds_remaining(),
            ))
        return result

    def _fit_schedule_to_budget(self) -> None:
        """With a time budget, fit the schedule to the steps the remaining time holds (never beyond the planned
        epochs), keeping a tenth for validation and checkpoints, so the learning rate has decayed when time runs
        out. Refitted after every step from the median of the recent step times, so a run whose speed changes
        (other work on a shared machine) still decays smoothly to the end of its budget."""
        s, budget = self.state, self.cfg.time_budget
        if budget is None or len(self.step_walls) < 4:
            return
        remaining = max(0.0, budget - (time.perf_counter() - self.started))
        fit = s.step + int(0.9 * remaining / self._step_seconds())
        s.schedule_steps = self.total_steps = min(self.planned_steps, max(s.step + 1, fit))

    def _step_seconds(self) -> float:
        """The median time of the recent steps (the first step, which includes compilation, only while alone)."""
        return float(np.median(self.step_walls[1:][-FIT_WINDOW:] or self.step_walls))

    def _seconds_remaining(self) -> float:
        """Estimated seconds until the run stops: the schedule's remaining steps (or --max-steps') at the recent
        step time, no more than the time budget leaves."""
        s, cfg = self.state, self.cfg
        last = self.total_steps if cfg.max_steps is None else min(self.total_steps, cfg.max_steps)
        remaining = max(0, last - s.step) * self._step_seconds()
        if cfg.time_budget is not None:
            remaining = min(remaining, max(0.0, cfg.time_budget - (time.perf_counter() - self.started)))
        return remaining

    def _stop_reason(self, result: StepResult) -> str:
        """'completed' to go on, else why the run stops now."""
        cfg = self.cfg
        if self.cancel.is_set():
            return "cancelled"
        if cfg.max_steps is not None and self.state.step >= cfg.max_steps:
            return "max_steps"
        if cfg.time_budget is not None:
            finish = self.finish_estimate().total()  # first: it may prepare the held-out scoring's inputs
            if time.perf_counter() - self.started + result.seconds + finish > cfg.time_budget:
                return "time_budget"
        return "completed"

    def finish_estimate(self) -> FinishEstimate:
        """Seconds of the work after the last step: the last validation (_validation_seconds), the mixture's
        forward passes and fit and the held-out line scoring (their inputs prepared at the first call, see
        _heldout_inputs, so that the rest is timed: one forward batch, the fit, a line completion), and writing the
        model file (measured once done, a second before)."""
        h = self._heldout_inputs()  # first: it loads the compiled forward kernels the validation probe runs
        lines = HELDOUT_POSITIONS * self._line_seconds() if h.val_docs else 0.0
        validation = self._validation_seconds()
        blends = len(TUNED_SHARES) if self.base_params is not None else 0
        return FinishEstimate(validation=validation, blend=blends * validation,
                              mixture=h.batches * h.batch_seconds + h.fit_seconds, lines=lines,
                              save=self.save_seconds if self.save_seconds is not None else 1.0)

    def _validation_seconds(self) -> float:
        """Seconds of a validation pass: the last one's, once one ran; before, its batches times one batch timed
        once with the current weights (the second of two: the first loads or compiles the evaluation kernels, which
        took a 600-s budget's whole estimate on a busy machine and stopped the run after one step). 0 without
        held-out tokens."""
        if self.validate_seconds is not None or self.data.val_stream.size < 2:
            return self.validate_seconds or 0.0
        plan = self._validation_plan()
        if self.validation_batch_seconds is None:
            self._evaluate_batch(self.state.params, plan, 0)
            begin = time.perf_counter()
            self._evaluate_batch(self.state.params, plan, 0)
            self.validation_batch_seconds = time.perf_counter() - begin
        return -(-len(plan.order) // self.cfg.batch_size) * self.validation_batch_seconds

    def _end_epoch(self, train_loss: float) -> str:
        """Validate after an epoch, track the best weights and patience; 'early_stopping' when patience runs out."""
        s = self.state
        val = self._validate_current()
        fault_point("validated")
        event = EpochEvent(epoch=s.epoch, step=s.step, train_loss=train_loss, val_loss=None if val is None else val[0],
                           val_bits_per_byte=None if val is None else val[1])
        self.emit(event)
        s.record.val_history.append(event)
        if val is None:
            return "cancelled" if self.cancel.is_set() else "completed"
        if val[0] < s.best_epoch_val:
            s.best_epoch_val, s.bad_epochs = val[0], 0
        else:
            s.bad_epochs += 1
        if self.cfg.patience > 0 and s.bad_epochs >= self.cfg.patience:
            return "early_stopping"
        return "completed"

    def _validate_current(self) -> tuple[float, float] | None:
        """Validation (mean nats per token, bits per byte) of the current weights; keeps them if the best. None
        without held-out tokens or when the cancel flag stopped the pass (nothing is kept then)."""
        s = self.state
        val = self._validation(s.params)
        if val is not None:
            s.record.keep_if_best(*val, s.params)
        return val

    def _validation(self, params: np.ndarray) -> tuple[float, float] | None:
        """Validation (mean nats per token, bits per byte) of `params`, timed. None without held-out tokens or
        when the cancel flag stopped the pass."""
        if self.data.val_stream.size < 2:
            return None
        begin = time.perf_counter()
        scored = self._evaluate(params)
        if scored is None:
            return None
        nats, tokens = scored
        self.validate_seconds = time.perf_counter() - begin
        scored_bytes = self.data.val_bytes * tokens / (self.data.val_stream.size - 1)  # the bytes of the windows scored
        return nats / max(tokens, 1), nats / math.log(2) / max(scored_bytes, 1)

    def _evaluate(self, params: np.ndarray) -> tuple[float, int] | None:
        """Total nats and target tokens of the held-out stream's windows (all, or VALIDATION_WINDOWS spread evenly
        over a longer stream: the same ones at every validation, so the best-weights and early-stopping
        comparisons stay fair), in order, no FIM, no dropout. None when the cancel flag is set meanwhile."""
        plan = self._validation_plan()
        nats, tokens = 0.0, 0
        for start in range(0, len(plan.order), self.cfg.batch_size):
            if self.cancel.is_set():
                return None
            batch_nats, batch_tokens = self._evaluate_batch(params, plan, start)
            nats += batch_nats
            tokens += batch_tokens
        return nats, tokens

    def _validation_plan(self) -> EpochPlan:
        return spread_plan(num_windows(self.data.val_stream.size, self.cfg.seq_len), VALIDATION_WINDOWS)

    def _evaluate_batch(self, params: np.ndarray, plan: EpochPlan, start: int) -> tuple[float, int]:
        """Total nats and target tokens of the validation batch at `start` of `plan` (in the first micro-batch's
        buffers, which the next step refills)."""
        inputs, targets = self.inputs[0], self.targets[0]
        rows = fill_batch(inputs, targets, self.data.val_stream, plan, start, self.cfg.seq_len, self.fim)
        return self.spheres.evaluate(params, inputs[:rows], targets[:rows])

    def _save(self) -> Path:
        """Write the model file: best weights (current ones without validation) plus the resumable state."""
        s = self.state
        begin = time.perf_counter()
        ckpt = ckpt_io.Checkpoint(
            model_config=self.model_cfg, tokenizer_json=self.data.tokenizer.to_json(),
            params=s.record.weights(s.params), metadata=self._metadata().to_json(),
            optimizer={"m": s.m, "v": s.v, "step": s.adam_steps + s.step, "params": s.params},
        )
        ckpt_io.save_checkpoint(self.out_path, ckpt)
        self.save_seconds = time.perf_counter() - begin
        self.emit(CheckpointEvent(path=str(self.out_path)))
        return self.out_path

    def _metadata(self) -> TrainingMetadata:
        s, d, record = self.state, self.data, self.state.record
        return TrainingMetadata(
            train_config=to_dict(self.cfg), workspace=d.root, files=len(d.documents),
            train_files=[doc.path for doc in d.train_docs], val_files=[doc.path for doc in d.val_docs],
            tokens=int(d.stream.size), val_tokens=int(d.val_stream.size), val_bytes=d.val_bytes,
            epochs=s.epoch, steps=s.step, trained_tokens=s.tokens,
            loss_history=record.loss_history, val_history=record.val_history,
            val_bits_per_byte=record.best_bpb, val_loss=None if record.best_params is None else record.best_val,
            spheres=self.cfg.spheres, threads=self.spheres.n_threads, sphere_stats=self.telemetry.averages(),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"), seq_len=self.cfg.seq_len,
            mixture=self.mixture, fim=self._fim_format(), line_exact_match=self.line_exact_match,
            base=d.base, base_share=self.base_share, replay_files=[doc.path for doc in d.replay],
            generation=d.generation, trained_before=d.trained_before,
            resume=ResumePosition(epoch=s.epoch, batch=s.batch, step=s.step, tokens=s.tokens,
                                  best_epoch_val=_finite(s.best_epoch_val), bad_epochs=s.bad_epochs,
                                  schedule_steps=s.schedule_steps),
        )

    def _done(self, path: Path, reason: str) -> DoneEvent:
        s, averages = self.state, self.telemetry.averages()
        return DoneEvent(
            checkpoint=str(path), steps=s.step, tokens=s.tokens, seconds=time.perf_counter() - self.started,
            tokens_per_second=averages.tokens_per_second, final_loss=self.telemetry.last_loss,
            val_bits_per_byte=s.record.best_bpb, threads=self.spheres.n_threads, spheres=self.cfg.spheres,
            load_imbalance=averages.load_imbalance, sync_overhead=averages.sync_overhead, stop_reason=reason,
            epochs=s.epoch, line_exact_match=self.line_exact_match, corpus_fraction=self._corpus_fraction(),
            corpus_seen=self.data.seen_share,
        )

    def _corpus_fraction(self) -> float:
        """Share of the workspace's training text the model has been trained on so far: of the windows of its
        stream (epochs done count whole; each epoch visits them in a fresh random order), times the share of the
        training text in the stream (a time budget samples a big tree)."""
        s, cfg, n = self.state, self.cfg, max(self.data.n_windows, 1)
        return min(1.0, (s.epoch * n + s.batch * cfg.grad_accum * cfg.batch_size) / n) * self.data.train_share


def _check_train_config(cfg: TrainConfig) -> None:
    """TrainError for settings that cannot train (the config's own checks plus the optional stop rules)."""
    try:
        cfg.validate()
    except ValueError as exc:
        raise TrainError(str(exc)) from None
    if cfg.max_steps is not None and cfg.max_steps <= 0:
        raise TrainError(f"max_steps must be positive, got {cfg.max_steps}")
    if cfg.time_budget is not None and not 0 < cfg.time_budget < math.inf:
        raise TrainError(f"time_budget must be a positive number of seconds, got {cfg.time_budget}")


def _check_model_config(model_cfg: ModelConfig, train_cfg: TrainConfig) -> None:
    """TrainError for a model shape that cannot work or cannot hold train_cfg.seq_len tokens."""
    try:
        model_cfg.validate()
    except ValueError as exc:
        raise TrainError(str(exc)) from None
    if model_cfg.max_seq_len < train_cfg.seq_len:
        raise TrainError(f"seq_len {train_cfg.seq_len} exceeds the model's max_seq_len {model_cfg.max_seq_len}")


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


@dataclass
class _Documents:
    """The run's documents and their train / held-out split."""

    root: str | None
    all: list
    skipped: list
    train: list
    val: list
    train_share: float = 1.0  # share of the training side's bytes in `train` (below 1 when a time budget sampled it)
    seen_share: float = 1.0  # ... in `train` and the files earlier runs of the model trained on


def _budget_sample(docs: _Documents, time_budget: float | None, val_fraction: float,
                   trained_before: dict[str, int]) -> _Documents:
    """With a time budget, the training and held-out files cut down to deterministic samples spread over the
    whole tree (corpus.sample_documents) of the size config.budget_sample_bytes gives, the held-out side in
    proportion; a workspace that fits is taken whole. The training sample takes the files not in
    `trained_before` (those earlier runs of a continued model trained on, with the run that last did) first, then
    the least recently trained; the held-out sample depends on the paths only, so a continued run validates on
    the same files. The model file's train_files and val_files list the samples."""
    limit = budget_sample_bytes(time_budget)
    if limit is None:
        return docs
    train = corpus.sample_documents(docs.train, limit, rank=lambda doc: trained_before.get(doc.path, -1))
    sampled = {doc.path for doc in train}
    total = max(1, sum(doc.size for doc in docs.train))
    seen = sum(doc.size for doc in docs.train if doc.path in sampled or doc.path in trained_before)
    return replace(docs, train=train, val=corpus.sample_documents(docs.val, int(limit * val_fraction)),
                   train_share=sum(doc.size for doc in train) / total, seen_share=seen / total)


def _lineage(resumed: TrainingMetadata | None, continued: TrainingMetadata | None) -> tuple[int, dict[str, int]]:
    """The run's generation (1 for a model's first run) and the files earlier runs trained on, each with the last
    generation that did: a resumed run keeps its model's, a continued run adds its model's training files."""
    if resumed is not None:
        return resumed.generation or 1, dict(resumed.trained_before)
    if continued is None:
        return 1, {}
    generation = continued.generation or 1
    return generation + 1, {**continued.trained_before, **dict.fromkeys(continued.train_files, generation)}


def _load_documents(source, val_fraction: float, corpus_config: CorpusConfig, phase: _Phase) -> _Documents:
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
    return _Documents(root=root_name, all=documents, skipped=skipped, train=train_docs, val=val_docs)


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


class _Phase:
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


def _replay(start: Base | None, resumed: TrainingMetadata | None, docs: _Documents, cfg: TrainConfig) -> list:
    """The base-corpus documents a fine-tuning run replays: about replay_fraction of its training bytes, none
    that is also a workspace file; a resumed or continued run rereads the ones its model recorded."""
    if resumed is not None:
        return read_replay(resumed.replay_files)
    if start is None or cfg.replay_fraction == 0:
        return []
    n_bytes = int(stream_bytes(docs.train) * cfg.replay_fraction / (1.0 - cfg.replay_fraction))
    return replay_documents(start.metadata, n_bytes, cfg.seed, {doc.sha256 for doc in docs.all})


def _encode(docs: _Documents, cfg: TrainConfig, vocab_size: int, tokenizer: Tokenizer | None, folder: Path,
            emit: Callable[[TrainingEvent], None], cancel: threading.Event, replay: list) -> _Data:
    """Train the tokenizer on the training files (unless resuming or fine-tuning) and encode both streams into
    token files in `folder` (data.token_file): the training stream followed by the `replay` documents."""
    if tokenizer is None:
        tokenizer = _train_tokenizer(docs.train, vocab_size, _Phase("tokenizer", "bytes", emit, cancel))
        fault_point("tokenizer-trained")
    train_docs = [*docs.train, *replay]
    phase = _Phase("tokenize", "bytes", emit, cancel, total=stream_bytes(train_docs) + stream_bytes(docs.val))
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
    return _Data(
        root=docs.root, documents=docs.all, skipped=docs.skipped, train_docs=docs.train, val_docs=docs.val,
        tokenizer=tokenizer, train_share=docs.train_share, seen_share=docs.seen_share, stream=stream,
        val_stream=val_stream, val_bytes=val_bytes,
        n_windows=n_windows, steps_per_epoch=max(1, -(-micro_batches // cfg.grad_accum)), replay=replay,
    )


def _without(docs: _Documents, gone: dict[str, str]) -> _Documents:
    """`docs` without the files deleted or changed since the scan (`gone`: path -> reason), which join the skipped
    files with their reason. TrainError when no training file is left."""
    if not gone:
        return docs

    def kept(documents: list) -> list:
        return [doc for doc in documents if doc.path not in gone]

    docs = replace(docs, all=kept(docs.all), train=kept(docs.train), val=kept(docs.val),
                   skipped=docs.skipped + [SkippedFile(path, reason) for path, reason in gone.items()])
    if not docs.train:
        raise TrainError(f"every training file was deleted or changed after the scan of {docs.root}; train again")
    return docs


def _train_tokenizer(documents: Sequence, vocab_size: int, phase: _Phase) -> Tokenizer:
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


def _fresh_state(model_cfg: ModelConfig, seed: int) -> _State:
    params = init_params(model_cfg, seed)
    return _State(params=params, m=np.zeros_like(params), v=np.zeros_like(params))


def _base_state(start: Base) -> _State:
    """A fine-tuning run's first state: the base's weights, fresh optimizer moments."""
    params = np.array(start.params, dtype=np.float32)
    return _State(params=params, m=np.zeros_like(params), v=np.zeros_like(params))


def _continued_state(loaded: ckpt_io.Checkpoint, meta: TrainingMetadata, same_heldout: bool) -> _State:
    """A continued run's first state: the model's current weights and Adam moments (Adam's step count goes on, for
    its bias correction) under a new schedule from step 0. The best weights and their validation loss carry over
    when the held-out files are the same ones, so the model file changes only to weights that validate better."""
    previous = _resume_state(loaded, meta)
    record = previous.record if same_heldout else _RunRecord()
    record.loss_history, record.val_history = [], []
    return _State(params=previous.params, m=previous.m, v=previous.v,
                  adam_steps=previous.adam_steps + previous.step, record=record)


def _training_metadata(path: str | os.PathLike, loaded: ckpt_io.Checkpoint) -> TrainingMetadata:
    """The checkpoint's training metadata; TrainError naming the field when it is malformed."""
    try:
        return TrainingMetadata.from_json(loaded.metadata)
    except EventError as exc:
        raise TrainError(f"{path}: {exc}") from None


def _load_resume(path: str | os.PathLike) -> tuple[ckpt_io.Checkpoint, TrainingMetadata]:
    """The checkpoint to resume from and its metadata, refusing one without optimizer state or position."""
    loaded = ckpt_io.load_checkpoint(path, with_optimizer=True)
    meta = _training_metadata(path, loaded)
    if loaded.optimizer is None or meta.resume is None:
        raise TrainError(f"{path} holds no optimizer state or data position, so training cannot resume from it")
    return loaded, meta


def _recorded_base_params(meta: TrainingMetadata) -> np.ndarray | None:
    """The weights of the base a resumed or continued model descends from (its metadata's `base`), so that the run
    blends with them at the end as a run from the base does (a resumed one as it would have uninterrupted); None
    without a base, or when its file is gone or holds other weights now."""
    if meta.base is None:
        return None
    try:
        base = ckpt_io.load_checkpoint(meta.base.path)
    except CllmError:
        return None
    return base.params if ckpt_io.weights_sha256(base) == meta.base.weights_sha256 else None


def _resume_state(loaded: ckpt_io.Checkpoint, meta: TrainingMetadata) -> _State:
    """The run state recorded in a checkpoint written by this module."""
    opt, position = loaded.optimizer, meta.resume
    current = opt.get("params", loaded.params)
    has_best = meta.val_loss is not None
    record = _RunRecord(
        best_val=float(meta.val_loss) if has_best else math.inf, best_bpb=meta.val_bits_per_byte if has_best else None,
        best_params=np.array(loaded.params, dtype=np.float32) if has_best else None,
        loss_history=list(meta.loss_history), val_history=list(meta.val_history),
    )
    return _State(
        params=np.array(current, dtype=np.float32), m=np.array(opt["m"], dtype=np.float32),
        v=np.array(opt["v"], dtype=np.float32), step=position.step, epoch=position.epoch, batch=position.batch,
        tokens=position.tokens,
        best_epoch_val=math.inf if position.best_epoch_val is None else float(position.best_epoch_val),
        bad_epochs=position.bad_epochs, schedule_steps=position.schedule_steps,
        adam_steps=max(0, int(opt["step"]) - position.step), record=record,
    )


def continuable(path: str | os.PathLike, workspace: str | os.PathLike, shape: dict[str, int]) -> str | None:
    """Why a run on `workspace` cannot continue the model file at `path` (None when it can): the file must be a
    model this module wrote for that same folder, with its optimizer state, and every ModelConfig field in
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


def load_train_config(path: str | os.PathLike) -> TrainConfig:
    """The TrainConfig a checkpoint was trained with (the base that command-line flags override on resume)."""
    return from_dict(TrainConfig, _training_metadata(path, ckpt_io.load_checkpoint(path)).train_config)
