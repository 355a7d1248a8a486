"""One workspace folder: its model folder, the loaded model, the training job and the event stream.

The language server and the HTTP server are two faces of this object; they hold no model logic of their own.
Both run their completions on the Workspace's one `worker` (server/worker.py): newest request per document
wins, and the faces take turns.

- Model folder: under the user's cache folder, named after the workspace and a hash of its path, unless the
  `modelDir` setting (or the `model_dir` argument) points elsewhere. It holds `model.cllm` (the last good
  model) and `train.log` (the trainer's stderr).
- One trainer per workspace, across processes: start_training takes the workspace's training lock
  (engine/paths.py) at once or answers why not, holds it for the run and tells the child `cllm train` so
  through LOCK_HELD_ENV.
- Training runs as a child process (`python -m cllm.server.cli train ROOT --json --out TMP ...`) at lower CPU
  priority: completions stay responsive and a crash in training cannot take the server down. A background
  thread reads its JSON Lines events, keeps the live status and fans the events out to subscribers.
- The new model replaces the old one only when training finished and the new file loads; until then the last
  good model keeps serving completions.
- Before the workspace has a model of its own, the base model (`cllm pretrain`, engine/paths.py
  default_base_path) serves, mixed with a cache mixture over this workspace's files (built in the background,
  the base's stored mixture weights), so ghost text comes within seconds; status()'s model says which serves
  ("serving": "base" or "workspace").

Events given to subscribers, as JSON-ready dicts with snake_case keys: the trainer's events (engine/events.py:
{"event": "start" | "step" | "epoch" | "checkpoint" | "error" | "done", ...}, read and checked with
event_from_json) plus {"event": "training_started", "options": {...}}, {"event": "model_loaded", "path": ...} and
last {"event": "training_finished", "state": "done" | "failed" | "cancelled", "reason": ...}. The servers turn
keys into camelCase (events.to_wire) where they send them; status() returns its object already so. Callbacks run
on the reader thread: they must be quick and thread-safe (the servers hand the event to their own event loop).
docs/protocol.md describes the events and the status object.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import filelock

from cllm.engine import Completer, Completion, CompletionOptions, IndexSettings, indexed_completer, load_model
from cllm.engine.data.corpus import skip_counts, skip_summary
from cllm.engine.events import (DoneEvent, EpochEvent, EventError, FailedEvent, PhaseEvent, StartEvent, StepEvent,
                                TrainingEvent, TrainingMetadata, event_from_json, to_wire)
from cllm.engine.paths import (LOCK_HELD_ENV, MODEL_FILE, WorkspaceBusy, acquire_training_lock, default_base_path,
                               release_training_lock)
from cllm.engine.paths import model_dir as default_model_dir

from .memory import map_large_blocks, release_freed_memory
from .settings import (DEFAULT_EDITOR_TIME_BUDGET, PRETRAIN_OPTIONS, SHAPE_OPTIONS, check_training, parse_settings,
                       train_arguments)
from .worker import Worker

log = logging.getLogger(__name__)

TRAINING_FILE = "model.cllm.training"
LOG_FILE = "train.log"
TOKEN_FILE = "token"
TRAINER_NICENESS = 10
KILL_AFTER_SECONDS = 5.0

Subscriber = Callable[[dict[str, Any]], None]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _lower_priority_prefix() -> list[str]:
    """`nice -n 10` before the trainer's command where available: be nice to the editor and the completion worker.

    (Not Popen's preexec_fn: running Python code between fork and exec is unsafe in this multi-threaded server.)"""
    nice = shutil.which("nice")
    return [nice, "-n", str(TRAINER_NICENESS)] if nice else []


def model_summary(model: Any, serving: str = "workspace") -> dict[str, Any]:
    """The description of a loaded model shown by status() (snake_case: status() puts it on the wire): which
    model serves ("workspace": the workspace's own, "base": the base model before the workspace has one), the
    base it was fine-tuned from, and its training record.

    Raises EventError when the model's training metadata is malformed."""
    meta = TrainingMetadata.from_json(model.metadata or {})
    cfg = model.config
    return {
        "present": True,
        "serving": serving,
        "base": None if meta.base is None else meta.base.to_json(),
        "path": str(model.path),
        "trained_at": meta.created,
        "files": meta.files,
        "tokens": meta.tokens,
        "epochs": meta.epochs,
        "steps": meta.steps,
        "last_loss": meta.last_loss,
        "val_bits_per_byte": meta.val_bits_per_byte,
        "line_exact_match": meta.line_exact_match,
        "spheres": meta.spheres,
        "threads": meta.threads,
        "config": {"vocab_size": cfg.vocab_size, "d_model": cfg.d_model, "layers": cfg.n_layers,
                   "heads": cfg.n_heads, "ffn": cfg.d_ff, "max_seq_len": cfg.max_seq_len},
    }


@dataclasses.dataclass
class _Job:
    """One running trainer child process and what is known about it."""

    process: subprocess.Popen | None  # set once spawned
    lock: filelock.BaseFileLock | None
    out_path: Path
    log_path: Path
    options: dict[str, int | float]
    kind: str = "train"  # "train", or "pretrain": preparing the base model before training
    then: dict[str, Any] | None = None  # pretrain: the start_training arguments to train with once the base is ready
    cancelled: bool = False
    done_event: DoneEvent | None = None
    error: str | None = None
    thread: threading.Thread | None = None


class Workspace:
    """Per-workspace state: model store, training job, hot swap and events. Thread-safe."""

    def __init__(self, root: Path | str, settings: dict | None = None, model_dir: Path | str | None = None):
        map_large_blocks()  # freed model-sized blocks go back to the system at once (server/memory.py)
        self.root = Path(root).expanduser().resolve()
        self.settings, problems = parse_settings(settings)
        self.settings_problems = problems
        for problem in problems:
            log.warning("%s", problem)
        self._explicit_model_dir = Path(model_dir) if model_dir is not None else None
        self.worker = Worker(name=f"cllm-worker-{self.root.name}")  # the completion thread both faces share
        self._state_lock = threading.RLock()
        self._subscribers: list[Subscriber] = []
        self._model: Any = None
        self._completer: Completer | None = None
        self._model_info: dict[str, Any] = {"present": False}
        # Set once the cache-model completer of the loaded model is in place, or known to be unavailable.
        self.mixture_settled = threading.Event()
        self._index: Any = None  # the loaded model's IndexBuilder (engine/complete/workspace_index.py), if it mixes
        self._job: _Job | None = None
        self._training: dict[str, Any] = {"state": "idle"}
        self._set_model_dir()
        self.load()

    # -- model folder and model -------------------------------------------------------------------------

    def _set_model_dir(self) -> None:
        chosen = self._explicit_model_dir or (Path(self.settings.model_dir) if self.settings.model_dir else None)
        self.model_dir = (chosen or default_model_dir(self.root)).expanduser().resolve()
        self.model_path = self.model_dir / MODEL_FILE
        self.token_path = self.model_dir / TOKEN_FILE

    def load(self) -> bool:
        """(Re)load model.cllm from the model folder if present, else the base model if there is one; a bad file
        is reported in status(), not raised."""
        own = self.model_path.is_file()
        path = self.model_path if own else default_base_path()
        if not path.is_file():
            with self._state_lock:
                self._model, self._completer = None, None
                self._model_info = {"present": False}
            return False
        try:
            model = load_model(path)
            summary = model_summary(model, "workspace" if own else "base")
        except Exception as exc:  # a corrupt or incompatible file must not take the server down
            log.warning("cannot load %s: %s", path, exc)
            with self._state_lock:
                self._model, self._completer = None, None
                self._model_info = {"present": False, "path": str(path), "error": str(exc)}
            return False
        self._install(model, summary)
        return True

    def _install(self, model: Any, summary: dict[str, Any]) -> None:
        completer = Completer(model)
        with self._state_lock:
            self._model, self._completer = model, completer
            self._model_info = summary
        log.info("model loaded from %s", model.path)
        self.mixture_settled.clear()
        if self._index is not None:
            self._index.stop()
        workspace = self.root if summary["serving"] == "base" else None
        threading.Thread(target=self._install_mixture, args=(model, workspace), name="cllm-mixture",
                         daemon=True).start()

    def _install_mixture(self, model: Any, workspace: Path | None) -> None:
        """Build or load the workspace index of `model` (engine/complete/workspace_index.py; for the base, over the
        `workspace` folder's files) on this thread; its first snapshot swaps in the completer that mixes the model
        with the workspace cache model, later ones update it. The transformer alone serves until then; a model
        replaced meanwhile stops the build. The index is capped by the indexMemoryMB setting in force now: a later
        change of that setting applies at the next model load."""
        def serve(completer: Completer) -> None:
            with self._state_lock:
                if self._model is model:
                    self._completer = completer

        try:
            builder = indexed_completer(model, self.model_dir, serve, self.index_settings(), workspace=workspace)
            self._index = builder
            if builder is not None:
                builder.run(own_thread=True)
        except Exception as exc:  # the transformer alone keeps serving
            log.warning("cache model unavailable for %s: %s", model.path, exc)
        release_freed_memory()  # the old model's weights and the index build's temporaries (server/memory.py)
        with self._state_lock:
            if self._model is model:
                self.mixture_settled.set()

    def file_saved(self, path: str | Path) -> None:
        """A file was saved: update the workspace index for that file only, off the caller's thread."""
        builder, rel = self._index, self.relative_path(path)
        if builder is not None and rel is not None:
            threading.Thread(target=builder.update_file, args=(rel,), name="cllm-index-save", daemon=True).start()

    @property
    def has_model(self) -> bool:
        """True when completions can be served."""
        return self._completer is not None

    @property
    def model(self) -> Any:
        """The loaded model (cllm.engine.Model) or None."""
        return self._model

    def update_settings(self, settings: dict | None) -> list[str]:
        """Apply a new `cllm` settings object; returns the problems found (they are ignored, the rest applies).

        A changed modelDir switches folders and loads the model there (not while training: the running job
        keeps writing to the old folder, so the change applies after it ends).
        """
        parsed, problems = parse_settings(settings)
        for problem in problems:
            log.warning("%s", problem)
        with self._state_lock:
            old_dir = self.model_dir
            self.settings = parsed
            self.settings_problems = problems
            if self._job is not None:
                return problems
            self._set_model_dir()
            moved = self.model_dir != old_dir
        if moved:
            self.load()
        return problems

    def index_settings(self) -> IndexSettings:
        """How the workspace index is built: the engine's defaults, with the indexMemoryMB setting as its cap."""
        if self.settings.index_memory_mb is None:
            return IndexSettings()
        return IndexSettings(max_mb=self.settings.index_memory_mb)

    # -- completion -----------------------------------------------------------------------------------

    def completion_options(self, **overrides: Any) -> CompletionOptions:
        """Engine defaults, then the settings (maxTokens, multiline), then per-request overrides."""
        values: dict[str, Any] = {}
        if self.settings.max_tokens is not None:
            values["max_tokens"] = self.settings.max_tokens
        if self.settings.multiline is not None:
            values["multiline"] = self.settings.multiline
        values.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in dataclasses.fields(CompletionOptions)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown completion option(s): {', '.join(unknown)}")
        return CompletionOptions(**values)

    def relative_path(self, path: str | Path | None) -> str | None:
        """A file's path as the model saw it in training: relative to the root, '/'-separated, when inside."""
        if path is None:
            return None
        candidate = Path(path)
        if candidate.is_absolute():
            try:
                return candidate.resolve().relative_to(self.root).as_posix()
            except (ValueError, OSError):
                return candidate.name
        return candidate.as_posix()

    def complete(self, prefix: str, suffix: str = "", *, path: str | Path | None = None,
                 doc_key: str | None = None, cancel: threading.Event | None = None,
                 on_text: Callable[[str], None] | None = None, **overrides: Any) -> Completion | None:
        """Complete at a cursor between `prefix` and `suffix`; None when no model is loaded yet.

        Overrides are CompletionOptions fields (max_tokens, multiline, temperature, stop, ...). Completions
        run one at a time (the Completer serialises them); `cancel` stops one early. `on_text` receives the
        suggestion piece by piece while it is generated (on the calling thread; the pieces add up to the
        returned text). Never waits for training.
        """
        options = self.completion_options(**overrides)
        completer = self._completer
        if completer is None:
            return None
        return completer.complete(prefix, suffix, options, path=self.relative_path(path), doc_key=doc_key,
                                  cancel=cancel, on_text=on_text)

    # -- events ---------------------------------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback(event)` for every event from now on; returns the function that unsubscribes."""
        with self._state_lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._state_lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def _publish(self, event: dict[str, Any]) -> None:
        with self._state_lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(event)
            except Exception:
                log.exception("event subscriber failed on %s", event.get("event"))

    # -- status ---------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """JSON-ready state: what serves completions (the transformer alone until the workspace mixture is
        built), the model (present, trained when, files, tokens, epochs, last loss, validation bits per byte,
        spheres, threads) and training (state, and the live step while training)."""
        with self._state_lock:
            completer = self._completer
            return to_wire({
                "workspace": str(self.root),
                "model_dir": str(self.model_dir),
                "completer": None if completer is None else ("transformer+cache" if completer.mixes else "transformer"),
                "model": self._model_info,
                "training": self._training,
            })

    # -- training -------------------------------------------------------------------------------------

    @property
    def training(self) -> bool:
        """True while this Workspace's trainer runs."""
        return self._job is not None

    def training_options(self, overrides: dict[str, Any]) -> tuple[dict[str, int | float], list[str]]:
        """The checked options of a run: the editors' default budget, the `training` settings, then `overrides`."""
        return check_training({"time_budget": DEFAULT_EDITOR_TIME_BUDGET, **self.settings.training,
                               **{name: value for name, value in overrides.items() if value is not None}})

    def base_missing(self, overrides: dict[str, Any]) -> bool:
        """True when training now would start from scratch for want of a base model: the workspace has no model of
        its own, no base is in the user's cache folder, and no shape option asks for another model anyway."""
        from cllm.engine.train.start import Fresh, StartRequest, decide_start

        options, _ = self.training_options(overrides)
        shape = tuple(name for name in SHAPE_OPTIONS if name in options)
        start = decide_start(StartRequest(workspace=self.root, own_model=self.model_path), verify=False)
        return not shape and isinstance(start, Fresh)

    def start_training(self, path: Path | str | None = None, *, from_scratch: bool = False,
                       **overrides: Any) -> dict[str, Any]:
        """Start training in a child process and return at once: {"started": True} or {"started": False,
        "reason": ..., "code": ...} where code is "invalid" (bad options or folder), "busy" (already training
        here, or another process holds the workspace's lock) or "unavailable" (the trainer could not start).

        `path` trains on a folder inside the workspace instead of the whole root. Overrides are training
        options by python name (epochs, time_budget, spheres, threads, max_steps, batch_size, seq_len,
        grad_accum, lr, seed, vocab_size, d_model, layers, heads, ffn); they win over the `training` settings.
        Without a time budget from either, the run gets DEFAULT_EDITOR_TIME_BUDGET seconds. The cached base model
        is fine-tuned when there is one, unless `from_scratch`.
        """
        options, source, refused = self._check_request(path, overrides)
        if refused:
            return refused
        out_path = self.model_dir / TRAINING_FILE
        return self._start(_Job(process=None, lock=None, out_path=out_path, log_path=self.model_dir / LOG_FILE,
                                options=options), self._train_arguments(source, options, from_scratch))

    def _train_arguments(self, source: Path, options: dict[str, Any], from_scratch: bool = False) -> list[str]:
        """The `cllm train` arguments of a run: it continues the workspace's model unless `fresh` is set (the CLI
        checks the model is this workspace's), and fine-tunes the cached base unless `from_scratch`."""
        from cllm.engine.train.start import Continue, StartRequest, decide_start

        request = StartRequest(workspace=source, fresh=bool(options.get("fresh")), no_base=from_scratch,
                               own_model=self.model_path)  # `cllm train` checks the model is this workspace's
        start = decide_start(request, verify=False)
        continued = ["--continue-from", str(start.path)] if isinstance(start, Continue) else []
        return ["train", str(source), "--json", "--out", str(self.model_dir / TRAINING_FILE), *continued,
                *train_arguments(options), *(["--no-base"] if from_scratch else [])]

    def start_pretraining(self, path: Path | str | None = None, **overrides: Any) -> dict[str, Any]:
        """Prepare the base model first, then train: `cllm pretrain --json` (on the `training.baseCorpus` folders,
        else the system's C) writes the base to the user's cache folder in a child process at low priority, with
        the run's budget and threads; once it is done, start_training(path, **overrides) fine-tunes it. Answers
        as start_training; the status and the events name the step ("job": "pretrain")."""
        options, _, refused = self._check_request(path, overrides)
        if refused:
            return refused
        pretrain_options = {name: value for name, value in options.items() if name in PRETRAIN_OPTIONS}
        out_path = default_base_path()
        arguments = ["pretrain", *self.settings.base_corpus, "--json", "--out", str(out_path), *train_arguments(pretrain_options)]
        job = _Job(process=None, lock=None, out_path=out_path, log_path=self.model_dir / LOG_FILE,
                   options=pretrain_options, kind="pretrain", then={"path": path, **overrides})
        return self._start(job, arguments)

    def _check_request(self, path: Path | str | None,
                       overrides: dict[str, Any]) -> tuple[dict[str, int | float], Path, dict[str, Any] | None]:
        """(options, source folder, None) for a good training request, else (..., the refusal)."""
        options, problems = self.training_options(overrides)
        source = self.root if path is None else Path(path).expanduser().resolve()
        if problems:
            return options, source, _refused("invalid", "; ".join(problems))
        if not source.is_dir():
            return options, source, _refused("invalid", f"folder {source} does not exist")
        if not source.is_relative_to(self.root):
            return options, source, _refused("invalid", f"folder {source} is not inside the workspace {self.root}")
        return options, source, None

    def _start(self, job: _Job, arguments: list[str]) -> dict[str, Any]:
        """Take the workspace's lock, spawn `cllm ARGUMENTS` (with --json) for `job` and follow it on a reader thread."""
        with self._state_lock:
            if self._job is not None:
                return _refused("busy", "training is already running for this workspace")
            try:
                job.lock = acquire_training_lock(self.root)  # the whole workspace's lock, even for a subfolder
            except WorkspaceBusy as exc:
                return _refused("busy", str(exc))
            except OSError as exc:
                return _refused("unavailable", f"cannot take the training lock: {exc}")
            try:
                self.model_dir.mkdir(parents=True, exist_ok=True)
                job.out_path.parent.mkdir(parents=True, exist_ok=True)
                job.process = self._spawn(arguments, job.lock, job.log_path)
            except OSError as exc:
                if job.lock is not None:
                    release_training_lock(job.lock)
                return _refused("unavailable", f"cannot start the trainer in {self.model_dir}: {exc}")
            self._job = job
            self._training = {"state": "training", "job": job.kind, "started_at": _now(), "options": job.options}
            job.thread = threading.Thread(target=self._follow, args=(job,), name="cllm-train-reader", daemon=True)
        self._publish({"event": "training_started", "job": job.kind, "options": job.options})
        job.thread.start()
        return {"started": True}

    def _spawn(self, arguments: list[str], lock: filelock.BaseFileLock | None, log_path: Path) -> subprocess.Popen:
        command = [*_lower_priority_prefix(), sys.executable, "-m", "cllm.server.cli", *arguments]
        log.info("starting trainer: %s", " ".join(command))
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if lock is not None:
            env[LOCK_HELD_ENV] = lock.lock_file  # we hold the child's lock for it
        with open(log_path, "wb") as stderr:
            return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
                                    env=env, cwd=str(self.root), text=True, encoding="utf-8", errors="replace")

    def _follow(self, job: _Job) -> None:
        """Reader thread: relay the trainer's events, then settle the outcome and swap the model in."""
        assert job.process.stdout is not None
        with job.process.stdout:
            for line in job.process.stdout:
                try:
                    data = json.loads(line)
                except ValueError:
                    log.debug("trainer: %s", line.rstrip())
                    continue
                try:
                    event = event_from_json(data)
                except EventError as exc:
                    log.warning("unreadable trainer event: %s", exc)
                    continue
                self._note(job, event)
                self._publish(event.to_json())
        code = job.process.wait()
        state, reason = self._settle(job, code)
        self._cleanup(job, installed=state == "done")
        with self._state_lock:
            self._job = None
            self._training.update(state=state, finished_at=_now())
            if reason:
                self._training["reason"] = reason
            old_dir = self.model_dir
            self._set_model_dir()  # a modelDir change made during the run applies now
            moved = self.model_dir != old_dir
        if moved:
            self.load()
        if state == "done" and job.kind == "train":
            self._publish({"event": "model_loaded", "path": str(self.model_path)})
        self._publish({"event": "training_finished", "job": job.kind, "state": state, "reason": reason})
        if state == "done" and job.then is not None:
            self._train_after_pretraining(job.then)

    def _train_after_pretraining(self, then: dict[str, Any]) -> None:
        """The base is ready: fine-tune it on the workspace; a refusal ends the run as failed."""
        started = self.start_training(**then)
        if not started["started"]:
            with self._state_lock:
                self._training.update(state="failed", reason=started["reason"])
            self._publish({"event": "training_finished", "job": "train", "state": "failed",
                           "reason": started["reason"]})

    def _note(self, job: _Job, event: TrainingEvent) -> None:
        """Keep the live training status from one trainer event."""
        with self._state_lock:
            live = self._training
            if isinstance(event, PhaseEvent):
                live.update(phase=event.phase, done=event.done, total=event.total, unit=event.unit)
            elif isinstance(event, StepEvent):
                live.update(epoch=event.epoch, epochs=event.epochs, step=event.step, total_steps=event.total_steps,
                            loss=event.loss, tokens=event.tokens, tokens_per_second=event.tokens_per_second,
                            threads=event.threads, spheres=[sphere.to_json() for sphere in event.spheres],
                            seconds_remaining=event.seconds_remaining)
                if event.total_steps > 0:
                    live["percent"] = max(0, min(100, round(100 * event.step / event.total_steps)))
            elif isinstance(event, EpochEvent):
                live.update(val_loss=event.val_loss, val_bits_per_byte=event.val_bits_per_byte,
                            train_loss=event.train_loss)
            elif isinstance(event, DoneEvent):
                live.update(percent=100, loss=event.final_loss, val_bits_per_byte=event.val_bits_per_byte,
                            tokens_per_second=event.tokens_per_second, step=event.steps, seconds_remaining=0.0,
                            line_exact_match=event.line_exact_match)
            elif isinstance(event, StartEvent):
                reasons = [skipped.reason for skipped in event.skipped]
                live.update(files=event.files, corpus_tokens=event.tokens, total_steps=event.total_steps,
                            epochs=event.epochs, time_budget=event.settings.time_budget,
                            skipped={"count": len(reasons), "reasons": skip_counts(reasons),
                                     "summary": skip_summary(reasons)})
        if isinstance(event, FailedEvent):
            job.error = event.message
        elif isinstance(event, DoneEvent):
            job.done_event = event

    def _settle(self, job: _Job, code: int) -> tuple[str, str | None]:
        """Decide how the run ended; on success load the new model and move it into place."""
        if job.cancelled:
            return "cancelled", "cancelled on request"
        if code != 0 or job.done_event is None:
            return "failed", job.error or self._log_tail(job) or f"the trainer exited with code {code}"
        if not job.out_path.is_file():
            return "failed", f"the trainer finished but wrote no model at {job.out_path}"
        if job.kind == "pretrain":
            if not self.model_path.is_file():
                self.load()  # the new base serves until the workspace has its own model
            return "done", None
        try:
            model = load_model(job.out_path)
            model.path = self.model_path
            summary = model_summary(model)
            os.replace(job.out_path, self.model_path)
        except Exception as exc:
            return "failed", f"the new model cannot be used: {exc}"
        self._install(model, summary)
        return "done", None

    def _log_tail(self, job: _Job, lines: int = 5) -> str:
        try:
            text = job.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        tail = [line for line in text.splitlines() if line.strip()][-lines:]
        return " | ".join(tail)

    def _cleanup(self, job: _Job, installed: bool) -> None:
        """Remove the partial model of a failed or cancelled run (also the temporary file of a save that the
        kill interrupted, engine/files.py's ".<name>.*.tmp") and release the workspace lock."""
        if not installed:
            leftovers = [*self.model_dir.glob(TRAINING_FILE + "*"), *self.model_dir.glob(f".{TRAINING_FILE}.*.tmp")]
            for leftover in leftovers:
                with contextlib.suppress(OSError):  # a stray file must not keep the lock or the job alive
                    leftover.unlink(missing_ok=True)
        if job.lock is not None:
            release_training_lock(job.lock)

    def cancel_training(self) -> bool:
        """Stop the running training (the last good model stays); False when nothing was running."""
        with self._state_lock:
            job = self._job
            if job is None:
                return False
            job.cancelled = True
        if job.process.poll() is None:
            job.process.terminate()
            killer = threading.Timer(KILL_AFTER_SECONDS, self._kill, args=(job,))
            killer.daemon = True
            killer.start()
        return True

    @staticmethod
    def _kill(job: _Job) -> None:
        if job.process.poll() is None:
            job.process.kill()

    def wait_training(self, timeout: float | None = None) -> bool:
        """Block until the running training (if any) has ended and settled; False on timeout."""
        job = self._job
        if job is None or job.thread is None:
            return True
        job.thread.join(timeout)
        return not job.thread.is_alive()

    def close(self) -> None:
        """Stop the completion worker, cancel training and wait for it to settle (server shutdown)."""
        self.worker.close()
        if self.cancel_training():
            self.wait_training(KILL_AFTER_SECONDS + 5.0)


def _refused(code: str, reason: str) -> dict[str, Any]:
    """The answer of a training request that did not start."""
    return {"started": False, "reason": reason, "code": code}
