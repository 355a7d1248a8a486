"""Training: the steps, validation, saving and telemetry of a run (corpus -> tokens -> spheres -> AdamW).

One optimizer step = grad_accum micro-batches of batch_size windows, run by the spheres (engine/train/spheres.py) into
one reduced gradient of the mean token loss, clipped to a global norm, then one AdamW step. The learning rate
warms up linearly and decays on a cosine to min_lr_ratio * lr over the planned run (epochs x steps per epoch;
--max-steps stops the run without reshaping the schedule, so a resumed run replays it exactly; with
--time-budget the schedule is fitted to the steps the budget holds, engine/train/budget.py). A budgeted run started
with `explicit` (what `cllm train` was given) takes the settings the user left unset from config.budget_defaults.

A run goes by phase: how it starts (engine/train/start.py: Fresh, FromBase, Continue, Resume), its data
(engine/train/prepare.py), the loop here, and its end (engine/train/finish.py: the blend with the base, the
mixture's fit, the held-out scoring). After each epoch: validation loss and bits per byte on the held-out files
(at most VALIDATION_WINDOWS windows spread over them), a checkpoint, early stopping after `patience` epochs
without improvement. The model file always holds the best weights seen by validation; the current weights, Adam
moments and data position ride along so that N steps + resume M steps equal N + M steps bitwise. Progress goes
to `on_event` as the typed events of engine/events.py (step events at most 4 per second; docs/protocol.md lists
them), and the model file's training metadata is an events.TrainingMetadata.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..config import CorpusConfig, ModelConfig, TrainConfig, budget_defaults, finetune_defaults, from_dict, to_dict
from ..data import corpus
from ..data.windows import (FIM_FORMAT, EpochPlan, FimTokens, epoch_plan, fill_batch, num_windows, spread_plan,
                            stream_bytes)
from ..events import (CheckpointEvent, DoneEvent, EpochEvent, PhaseEvent, ResumePosition, RunSettings, RunStats,
                      StartEvent, StepEvent, TrainingEvent, TrainingMetadata)
from ..faults import fault_point
from ..model import checkpoint as ckpt_io
from ..model.kernels import adamw_step
from ..model.params import decay_mask
from .budget import Budget, HeldTime, Probes
from .errors import TrainCancelled, TrainError
from .finish import HELDOUT_POSITIONS, BaseCorpusRecord, Finish
from .prepare import (EVENT_INTERVAL, Data, Documents, Phase, budget_sample, encode, focused, load_documents,
                      replayed)
from .spheres import Spheres, StepResult, resolve_threads
from .start import Fresh, Opened, RunStart, State, continuable, training_metadata

__all__ = ["TrainCancelled", "TrainError", "apply_update", "continuable", "learning_rate", "load_train_config", "train",
           "warmup_steps"]

_MODEL_FIELDS = {f.name for f in fields(ModelConfig)}
LOSS_HISTORY_POINTS = 200
VALIDATION_WINDOWS = 256  # held-out windows one validation pass scores at most (spread evenly; all when fewer)

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
    cancel: threading.Event | None = None,
    explicit: Collection[str] | None = None,
    corpus_config: CorpusConfig = CorpusConfig(),
    cluster: str | None = None,
    start: RunStart = Fresh(),
    base_corpus: BaseCorpusRecord | None = None,
    focus: Collection[str] = (),
) -> DoneEvent:
    """Train on a workspace folder (or a list of corpus.Document) and write the model to `out_path`.

    `start` (engine/train/start.py) says what the run goes on from: Fresh, FromBase (the base's weights, shape and
    tokenizer, model_cfg lending only its dropout; train_cfg.replay_fraction of base-corpus text replayed),
    Continue (a model of this workspace: its weights, Adam moments, shape and tokenizer under a new schedule; a
    time budget samples the files its earlier runs did not train on first) or Resume (an interrupted run, exactly).
    `explicit` names the settings the user chose (ModelConfig/TrainConfig fields); given it, a run that does not
    resume lets config.budget_defaults (finetune_defaults from a base or a continued model) pick the others from
    the training data's size (the start event lists them under "auto"). `corpus_config` decides which files of a
    folder are scanned. `cluster` (a Ray address or "auto") runs the spheres as Ray actors (engine/train/cluster.py):
    same weights, bitwise. Setting `cancel` stops the run within about a second in any phase: after the current
    step with the model written, or before the first step with TrainCancelled. `base_corpus` (`cllm pretrain`)
    records a base's manifest and fits its mixture weights on its own sample. `focus` names files of the folder
    (relative paths) the run trains on most (prepare.focused: the files saved since the last background run).
    Returns the done event. Raises TrainError for unusable input, SphereError/CheckpointError for failures
    during the run (the last checkpoint written stays intact)."""
    started = time.perf_counter()
    emit = on_event or (lambda event: None)
    cancel = cancel or threading.Event()
    out_path = Path(out_path)
    _check_train_config(train_cfg)
    opened = start.open()
    _check_model_config(opened.shape or model_cfg, train_cfg)
    scan = Phase("scan", "files", emit, cancel)
    docs = load_documents(root_or_documents, train_cfg.val_fraction, corpus_config, scan)
    docs = budget_sample(docs, train_cfg.time_budget, train_cfg.val_fraction, opened.trained_before)
    docs = focused(docs, focus, train_cfg.val_fraction)
    model_cfg, train_cfg, auto = _auto_settings(opened, docs, model_cfg, train_cfg, explicit)
    data = encode(docs, train_cfg, model_cfg.vocab_size, opened.tokenizer, out_path.parent, emit, cancel,
                  replayed(opened.base, opened.meta, docs, train_cfg))
    data.base, data.generation, data.trained_before = opened.base_record, opened.generation, opened.trained_before
    model_cfg = opened.model_config(model_cfg, data.tokenizer)
    state = opened.first_state(model_cfg, train_cfg.seed, [doc.path for doc in data.val_docs])
    if data.root is not None:
        corpus.write_consolidated(data.documents, out_path.parent / "repo_code.txt")
    threads = train_cfg.spheres if cluster is not None else resolve_threads(train_cfg.threads, train_cfg.spheres)
    total_steps = state.schedule_steps or train_cfg.epochs * data.steps_per_epoch
    emit(PhaseEvent(phase="train", done=state.step, total=total_steps, unit="steps"))
    emit(_start_event(data, model_cfg, train_cfg, state, threads, total_steps, opened.resumed_from, auto))
    with _open_spheres(model_cfg, train_cfg, threads, cluster) as spheres, \
            HeldTime(active=train_cfg.time_budget is not None) as held:
        run = _Run(data, model_cfg, train_cfg, state, spheres, emit, cancel, out_path, started, total_steps,
                   opened.context(model_cfg, train_cfg.seq_len), base_params=opened.base_params,
                   base_corpus=base_corpus, held=held)
        if train_cfg.only_better:
            run.validate_start(state.params if opened.start_weights is None else opened.start_weights)
        return run.loop()


def _auto_settings(opened: Opened, docs: Documents, model_cfg: ModelConfig, train_cfg: TrainConfig,
                   explicit: Collection[str] | None) -> tuple[ModelConfig, TrainConfig, dict[str, Any]]:
    """The configs with the settings the user left unset picked by the start's policy (none when resuming or
    without `explicit`), and those picks."""
    if explicit is None or not opened.defaults:
        return model_cfg, train_cfg, {}
    policy = finetune_defaults if opened.defaults == "finetune" else budget_defaults
    auto = policy(stream_bytes(docs.train), train_cfg.time_budget, model_cfg, train_cfg, explicit)
    return (replace(model_cfg, **{k: v for k, v in auto.items() if k in _MODEL_FIELDS}),
            replace(train_cfg, **{k: v for k, v in auto.items() if k not in _MODEL_FIELDS}), auto)


def _start_event(data: Data, model_cfg: ModelConfig, cfg: TrainConfig, state: State, threads: int, total_steps: int,
                 resumed_from: str | None, auto: dict[str, Any]) -> StartEvent:
    return StartEvent(
        workspace=data.root, files=len(data.documents), skipped=data.skipped, corpus=corpus.stats(data.documents),
        train_files=len(data.train_docs), val_files=len(data.val_docs), tokens=int(data.stream.size),
        val_tokens=int(data.val_stream.size), vocab_size=model_cfg.vocab_size, params=int(state.params.size),
        epochs=cfg.epochs, steps_per_epoch=data.steps_per_epoch, total_steps=total_steps, step=state.step,
        spheres=cfg.spheres, threads=threads, resumed_from=resumed_from,
        settings=RunSettings(batch_size=cfg.batch_size, seq_len=cfg.seq_len, grad_accum=cfg.grad_accum, lr=cfg.lr,
                             warmup_steps=cfg.warmup_steps, warmup_fraction=cfg.warmup_fraction,
                             weight_decay=cfg.weight_decay, dropout=model_cfg.dropout, time_budget=cfg.time_budget,
                             replay_fraction=cfg.replay_fraction if data.replay else 0.0),
        auto=sorted(auto),
    )


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
    """The epoch/step loop of one train() call: steps, stop rules, validation, saving; the budget forecasts and
    the finish ends the run."""

    def __init__(self, data: Data, model_cfg: ModelConfig, train_cfg: TrainConfig, state: State, spheres: Spheres,
                 emit: Callable[[TrainingEvent], None], cancel: threading.Event, out_path: Path, started: float,
                 total_steps: int, context: int, base_params: np.ndarray | None = None,
                 base_corpus: BaseCorpusRecord | None = None, held: HeldTime | None = None):
        self.data, self.model_cfg, self.cfg, self.state = data, model_cfg, train_cfg, state
        self.spheres, self.emit, self.cancel, self.out_path = spheres, emit, cancel, out_path
        self.started, self.total_steps = started, total_steps
        self.fim = FimTokens.from_tokenizer(data.tokenizer)
        self.decay = decay_mask(model_cfg)
        self.grad = np.zeros_like(state.params)
        shape = (train_cfg.grad_accum, train_cfg.batch_size, train_cfg.seq_len)
        self.inputs, self.targets = np.zeros(shape, np.int32), np.zeros(shape, np.int32)
        self.telemetry = _Telemetry(spheres.n_threads)
        self.history_every = max(1, total_steps // LOSS_HISTORY_POINTS)
        self.finish = Finish(data, model_cfg, train_cfg, state, context, base_params, cancel, self._fim_format(),
                             base_corpus)
        self.start_val_loss: float | None = None  # --only-better: of the weights the run goes on from
        self.budget = Budget(train_cfg.time_budget, started, train_cfg.epochs * data.steps_per_epoch, Probes(
            validation_batch=lambda: self._evaluate_batch(self.state.params, self._validation_plan(), 0),
            validation_batches=self._validation_batches(), heldout=self.finish.heldout_inputs,
            complete_lines=self.finish.complete_lines, scored_lines=HELDOUT_POSITIONS, blends=self.finish.blends()),
            held)

    def validate_start(self, weights: np.ndarray) -> None:
        """--only-better: the weights gone on from are the best so far, at their validation (start_val_loss)."""
        record, weights = self.state.record, np.array(weights, dtype=np.float32)
        val = self._validation(weights)
        if val is not None:
            record.best_val, record.best_bpb, record.best_params = *val, weights
            self.start_val_loss = val[0]

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
            self.finish.blend_with_base(s.record, self._validation)
            reason = self.finish.score_heldout(reason)
        path = self._save()
        return self._done(path, reason)

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
        self._refit(wall)
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

    def _refit(self, wall: float) -> None:
        """Count a step of `wall` seconds and, with a time budget, fit the schedule to the steps the rest holds."""
        self.budget.step_walls.append(wall)
        fitted = self.budget.refit(self.state.step)
        if fitted is not None:
            self.state.schedule_steps = self.total_steps = fitted

    def _seconds_remaining(self) -> float:
        """Estimated seconds until the run stops: the schedule's remaining steps (or --max-steps') at the recent
        step time, no more than the time budget leaves."""
        last = self.total_steps if self.cfg.max_steps is None else min(self.total_steps, self.cfg.max_steps)
        return self.budget.seconds_remaining(last - self.state.step)

    def _stop_reason(self, result: StepResult) -> str:
        """'completed' to go on, else why the run stops now."""
        if self.cancel.is_set():
            return "cancelled"
        if self.cfg.max_steps is not None and self.state.step >= self.cfg.max_steps:
            return "max_steps"
        if self.budget.exceeded(result.seconds):
            return "time_budget"
        return "completed"

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
        self.budget.validate_seconds = time.perf_counter() - begin
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

    def _validation_batches(self) -> int:
        """Batches of one validation pass (0 without held-out tokens)."""
        if self.data.val_stream.size < 2:
            return 0
        return -(-len(self._validation_plan().order) // self.cfg.batch_size)

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
        self.budget.save_seconds = time.perf_counter() - begin
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
            start_val_loss=self.start_val_loss,
            spheres=self.cfg.spheres, threads=self.spheres.n_threads, sphere_stats=self.telemetry.averages(),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"), seq_len=self.cfg.seq_len,
            context=self.finish.context, mixture=self.finish.mixture, fim=self._fim_format(),
            line_exact_match=self.finish.line_exact_match, thresholds=self.finish.thresholds, base=d.base,
            base_share=self.finish.base_share,
            replay_files=[doc.path for doc in d.replay],
            generation=d.generation, trained_before=d.trained_before, manifest=self._manifest(),
            resume=ResumePosition(epoch=s.epoch, batch=s.batch, step=s.step, tokens=s.tokens,
                                  best_epoch_val=_finite(s.best_epoch_val), bad_epochs=s.bad_epochs,
                                  schedule_steps=s.schedule_steps),
        )

    def _manifest(self) -> list:
        """A base's corpus manifest (`cllm pretrain`), else none."""
        return self.finish.base_corpus.manifest if self.finish.base_corpus is not None else []

    def _done(self, path: Path, reason: str) -> DoneEvent:
        s, averages = self.state, self.telemetry.averages()
        return DoneEvent(
            checkpoint=str(path), steps=s.step, tokens=s.tokens, seconds=time.perf_counter() - self.started,
            tokens_per_second=averages.tokens_per_second, final_loss=self.telemetry.last_loss,
            val_bits_per_byte=s.record.best_bpb, threads=self.spheres.n_threads, spheres=self.cfg.spheres,
            load_imbalance=averages.load_imbalance, sync_overhead=averages.sync_overhead, stop_reason=reason,
            epochs=s.epoch, line_exact_match=self.finish.line_exact_match, corpus_fraction=self._corpus_fraction(),
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


def load_train_config(path: str | os.PathLike) -> TrainConfig:
    """The TrainConfig a checkpoint was trained with (the base that command-line flags override on resume)."""
    return from_dict(TrainConfig, training_metadata(path, ckpt_io.load_checkpoint(path)).train_config)
