"""One workspace folder: its settings, the served model, the trainer job and the event stream.

The language server and the HTTP server are two faces of this object; they hold no model logic of their own.
Both run their completions on the Workspace's one `worker` (server/worker.py): newest request per document
wins, and the faces take turns.

- Model folder: under the user's cache folder, named after the workspace and a hash of its path, unless the
  `modelDir` setting (or the `model_dir` argument) points elsewhere. It holds `model.cllm` (the last good
  model), `train.log` (the trainer's stderr) and the workspace index.
- The served model (engine/complete/serving.py ServedModel): before the workspace has a model of its own, the
  base model (`cllm pretrain`, engine/paths.py default_base_path) serves, mixed with a cache mixture over this
  workspace's files built in the background, so ghost text comes within seconds; status()'s model says which
  serves ("serving": "base" or "workspace").
- Training runs in a child process that server/trainer_job.py spawns and follows.

Subscribers get typed events (server/records.py ServerEvent): the trainer's (engine/events.py) plus
TrainingStarted, ModelLoaded and, last, TrainingFinished; `to_json()` gives each as a JSON-ready dict with
snake_case keys, which the servers turn into camelCase (events.to_wire) where they send them. Callbacks run on the
reader thread: they must be quick and thread-safe. docs/protocol.md describes the events and the status object.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path
from typing import Any, Callable

from cllm.engine import Completion, CompletionOptions, IndexSettings, ServedModel, load_model
from cllm.engine.paths import MODEL_FILE, default_base_path
from cllm.engine.paths import model_dir as default_model_dir

from .memory import map_large_blocks, release_freed_memory
from .records import ModelSummary, NoModel, ServerEvent, WorkspaceStatus, model_summary
from .settings import (DEFAULT_EDITOR_TIME_BUDGET, PRETRAIN_OPTIONS, SHAPE_OPTIONS, check_training, parse_settings,
                       train_arguments)
from .trainer_job import KILL_AFTER_SECONDS, LOG_FILE, TRAINING_FILE, Job, TrainerJob, refused
from .worker import Worker

log = logging.getLogger(__name__)

TOKEN_FILE = "token"

Subscriber = Callable[[ServerEvent], None]


class Workspace:
    """Per-workspace state: settings, the served model, the trainer job and events. Thread-safe."""

    def __init__(self, root: Path | str, settings: dict | None = None, model_dir: Path | str | None = None):
        map_large_blocks()  # freed model-sized blocks go back to the system at once (server/memory.py)
        self.root = Path(root).expanduser().resolve()
        self.settings, self.settings_problems = parse_settings(settings)
        for problem in self.settings_problems:
            log.warning("%s", problem)
        self._explicit_model_dir = Path(model_dir) if model_dir is not None else None
        self.worker = Worker(name=f"cllm-worker-{self.root.name}")  # the completion thread both faces share
        self._state_lock = threading.RLock()
        self._subscribers: list[Subscriber] = []
        self._served: ServedModel | None = None
        self._summary: ModelSummary | NoModel = NoModel()
        self._unset = threading.Event()  # mixture_settled while no model serves: never set
        self.trainer = TrainerJob(self)
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
            self._unserve(NoModel())
            return False
        try:
            model = load_model(path)
        except Exception as exc:  # a corrupt or incompatible file must not take the server down
            log.warning("cannot load %s: %s", path, exc)
            self._unserve(NoModel(str(path), str(exc)))
            return False
        self.serve(model, model_summary(model, "workspace" if own else "base"))
        return True

    def _unserve(self, summary: NoModel) -> None:
        with self._state_lock:
            if self._served is not None:
                self._served.stop()
            self._served, self._summary = None, summary

    def serve(self, model: Any, summary: ModelSummary) -> None:
        """Serve `model` (the transformer alone at once) and build its workspace index in the background: for the
        base, over this workspace's files. The index is capped by the indexMemoryMB setting in force now."""
        workspace = self.root if summary.serving == "base" else None
        with self._state_lock:
            if self._served is None:
                self._served = ServedModel(model, self.model_dir, self.index_settings(), workspace=workspace)
            else:
                self._served.swap(model, self.model_dir, self.index_settings(), workspace=workspace)
            self._summary = summary
            served = self._served
        log.info("model loaded from %s", model.path)
        served.start(then=release_freed_memory)  # the old model's weights and the build's temporaries

    def file_saved(self, path: str | Path) -> None:
        """A file was saved: update the workspace index for that file only, off the caller's thread."""
        served, rel = self._served, self.relative_path(path)
        if served is not None and rel is not None:
            served.file_saved(rel)

    @property
    def has_model(self) -> bool:
        """True when completions can be served."""
        return self._served is not None

    @property
    def model(self) -> Any:
        """The loaded model (cllm.engine.Model) or None."""
        served = self._served
        return None if served is None else served.model

    @property
    def mixture_settled(self) -> threading.Event:
        """Set once the cache-model completer of the loaded model is in place, or known to be unavailable."""
        served = self._served
        return self._unset if served is None else served.ready

    @property
    def _index(self) -> Any:
        """The loaded model's IndexBuilder (engine/complete/workspace_index.py), if it mixes."""
        served = self._served
        return None if served is None else served.index

    def update_settings(self, settings: dict | None) -> list[str]:
        """Apply a new `cllm` settings object; returns the problems found (they are ignored, the rest applies).

        A changed modelDir switches folders and loads the model there (not while training: the running job
        keeps writing to the old folder, so the change applies after it ends)."""
        parsed, problems = parse_settings(settings)
        for problem in problems:
            log.warning("%s", problem)
        with self._state_lock:
            self.settings, self.settings_problems = parsed, problems
            if self.trainer.running:
                return problems
        self.training_ended()
        return problems

    def training_ended(self) -> None:
        """Apply a modelDir change made meanwhile: switch folders and load the model there."""
        with self._state_lock:
            old_dir = self.model_dir
            self._set_model_dir()
            moved = self.model_dir != old_dir
        if moved:
            self.load()

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
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(CompletionOptions)})
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

        Overrides are CompletionOptions fields (max_tokens, multiline, temperature, stop, ...). `cancel` stops
        one early; `on_text` receives the suggestion piece by piece (on the calling thread). Never waits for
        training."""
        options = self.completion_options(**overrides)
        served = self._served
        if served is None:
            return None
        return served.complete(prefix, suffix, options, path=self.relative_path(path), doc_key=doc_key,
                               cancel=cancel, on_text=on_text)

    # -- events and status ----------------------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback(event)` for every event from now on; returns the function that unsubscribes."""
        with self._state_lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._state_lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def publish(self, event: ServerEvent) -> None:
        """Hand `event` to every subscriber; one that fails is logged and the others still get it."""
        with self._state_lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(event)
            except Exception:
                log.exception("event subscriber failed on %s", type(event).__name__)

    def state(self) -> WorkspaceStatus:
        """The typed status: what serves completions, the model and the training."""
        with self._state_lock:
            served = self._served
            completer = None if served is None else ("transformer+cache" if served.mixes else "transformer")
            return WorkspaceStatus(workspace=str(self.root), model_dir=str(self.model_dir), completer=completer,
                                   model=self._summary, training=self.trainer.snapshot())

    def status(self) -> dict[str, Any]:
        """The status object as the servers send it (camelCase keys; docs/protocol.md)."""
        return self.state().to_json()

    # -- training -------------------------------------------------------------------------------------

    @property
    def training(self) -> bool:
        """True while this Workspace's trainer runs."""
        return self.trainer.running

    @property
    def _job(self) -> Job | None:
        return self.trainer.job

    def training_options(self, overrides: dict[str, Any]) -> tuple[dict[str, int | float], list[str]]:
        """The checked options of a run: the editors' default budget, the `training` settings, then `overrides`."""
        return check_training({"time_budget": DEFAULT_EDITOR_TIME_BUDGET, **self.settings.training,
                               **{name: value for name, value in overrides.items() if value is not None}})

    def base_missing(self, overrides: dict[str, Any]) -> bool:
        """True when training now would start from scratch for want of a base model: the workspace has no model of
        its own, no base is in the user's cache folder, and no shape option asks for another model anyway."""
        options, _ = self.training_options(overrides)
        return not (self.model_path.is_file() or default_base_path().is_file() or set(SHAPE_OPTIONS) & set(options))

    def start_training(self, path: Path | str | None = None, *, from_scratch: bool = False,
                       **overrides: Any) -> dict[str, Any]:
        """Start training in a child process and return at once: {"started": True} or {"started": False,
        "reason": ..., "code": ...} where code is "invalid" (bad options or folder), "busy" (already training
        here, or another process holds the workspace's lock) or "unavailable" (the trainer could not start).

        `path` trains on a folder inside the workspace instead of the whole root. Overrides are training
        options by python name (epochs, time_budget, spheres, threads, ...); they win over the `training`
        settings. Without a time budget from either, the run gets DEFAULT_EDITOR_TIME_BUDGET seconds. The cached
        base model is fine-tuned when there is one, unless `from_scratch`."""
        options, source, refusal = self._check_request(path, overrides)
        if refusal:
            return refusal
        job = Job(process=None, lock=None, out_path=self.model_dir / TRAINING_FILE,
                  log_path=self.model_dir / LOG_FILE, options=options)
        return self.trainer.start(job, self._train_arguments(source, options, from_scratch))

    def _train_arguments(self, source: Path, options: dict[str, Any], from_scratch: bool = False) -> list[str]:
        """The `cllm train` arguments of a run: it continues the workspace's model unless `fresh` is set (the CLI
        checks the model is this workspace's), and fine-tunes the cached base unless `from_scratch`."""
        continues = self.model_path.is_file() and not options.get("fresh")
        continued = ["--continue-from", str(self.model_path)] if continues else []
        return ["train", str(source), "--json", "--out", str(self.model_dir / TRAINING_FILE), *continued,
                *train_arguments(options), *(["--no-base"] if from_scratch else [])]

    def start_pretraining(self, path: Path | str | None = None, **overrides: Any) -> dict[str, Any]:
        """Prepare the base model first, then train: `cllm pretrain --json` (on the `training.baseCorpus` folders,
        else the system's C) writes the base to the user's cache folder in a child process at low priority, with
        the run's budget and threads; once it is done, start_training(path, **overrides) fine-tunes it. Answers
        as start_training; the status and the events name the step ("job": "pretrain")."""
        options, _, refusal = self._check_request(path, overrides)
        if refusal:
            return refusal
        pretrain_options = {name: value for name, value in options.items() if name in PRETRAIN_OPTIONS}
        out_path = default_base_path()
        arguments = ["pretrain", *self.settings.base_corpus, "--json", "--out", str(out_path),
                     *train_arguments(pretrain_options)]
        job = Job(process=None, lock=None, out_path=out_path, log_path=self.model_dir / LOG_FILE,
                  options=pretrain_options, kind="pretrain", then={"path": path, **overrides})
        return self.trainer.start(job, arguments)

    def _check_request(self, path: Path | str | None,
                       overrides: dict[str, Any]) -> tuple[dict[str, int | float], Path, dict[str, Any] | None]:
        """(options, source folder, None) for a good training request, else (..., the refusal)."""
        options, problems = self.training_options(overrides)
        source = self.root if path is None else Path(path).expanduser().resolve()
        if problems:
            return options, source, refused("invalid", "; ".join(problems))
        if not source.is_dir():
            return options, source, refused("invalid", f"folder {source} does not exist")
        if not source.is_relative_to(self.root):
            return options, source, refused("invalid", f"folder {source} is not inside the workspace {self.root}")
        return options, source, None

    def cancel_training(self) -> bool:
        """Stop the running training (the last good model stays); False when nothing was running."""
        return self.trainer.cancel()

    def wait_training(self, timeout: float | None = None) -> bool:
        """Block until the running training (if any) has ended and settled; False on timeout."""
        return self.trainer.wait(timeout)

    def close(self) -> None:
        """Stop the completion worker, cancel training and wait for it to settle (server shutdown)."""
        self.worker.close()
        if self.cancel_training():
            self.wait_training(KILL_AFTER_SECONDS + 5.0)
