"""One workspace folder: its settings, the served model, the trainer job and the event stream.

The language server and the HTTP server are two faces of this object, with no model logic of their own; both
complete on its one `worker` (server/worker.py): newest request per document wins, the faces take turns.

- Model folder: under the user's cache folder (named after the workspace and a hash of its path) unless the
  `modelDir` setting or the `model_dir` argument points elsewhere: `model.cllm`, `train.log`, the index, the
  acceptance counts (server/acceptance.py).
- The served model (engine/complete/serving.py): before the workspace has a model of its own, the base model
  (`cllm pretrain`) serves, mixed with a cache model over this workspace's files built in the background;
  status()'s model says which serves ("serving": "base" or "workspace"). server/trainer_job.py runs training.
- Subscribers get typed events (server/records.py) on the trainer's reader thread (be quick and thread-safe);
  docs/protocol.md describes them and the status object.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path
from typing import Any, Callable

from cllm.engine import Completion, CompletionOptions, IndexSettings, ServedModel, load_model
from cllm.engine.events import to_wire
from cllm.engine.paths import MODEL_FILE, default_base_path
from cllm.engine.train.shipped import base_candidates, best_base
from cllm.engine.paths import model_dir as default_model_dir

from .acceptance import ACCEPTANCE_FILE, Acceptance
from .learning import LEARN_SECONDS, LEARNING_FILE, IdleLearner
from .memory import map_large_blocks, release_freed_memory
from .records import ModelSummary, NoModel, WorkspaceStatus, model_summary
from .requests import check_request, completion_options, parsed_settings, relative_path, training_options
from .stream import EventStream, Subscriber
from .settings import PRETRAIN_OPTIONS, SHAPE_OPTIONS
from .trainer_job import KILL_AFTER_SECONDS, TRAINING_FILE, Job, TrainerJob, refused
from .worker import Worker

log = logging.getLogger(__name__)

TOKEN_FILE = "token"


class Workspace:
    """Per-workspace state: settings, the served model, the trainer job and events. Thread-safe."""

    def __init__(self, root: Path | str, settings: dict | None = None, model_dir: Path | str | None = None):
        map_large_blocks()  # freed model-sized blocks go back to the system at once (server/memory.py)
        self.root = Path(root).expanduser().resolve()
        self.settings, self.settings_problems = parsed_settings(settings)
        self._explicit_model_dir = Path(model_dir) if model_dir is not None else None
        self.worker = Worker(name=f"cllm-worker-{self.root.name}")  # the completion thread both faces share
        self._state_lock = threading.RLock()
        self.events = EventStream()
        self._served: ServedModel | None = None
        self._summary: ModelSummary | NoModel = NoModel()
        self._unset = threading.Event()  # mixture_settled while no model serves: never set
        self.trainer = TrainerJob(self, self.events.publish)
        self.learner = IdleLearner(self)  # background learning from saves (server/learning.py)
        self._set_model_dir()
        self.learner.use_folder(self.model_dir)
        self.acceptance = Acceptance(self.model_dir / ACCEPTANCE_FILE)  # how often suggestions are taken
        self.load()

    def _set_model_dir(self) -> None:
        chosen = self._explicit_model_dir or (Path(self.settings.model_dir) if self.settings.model_dir else None)
        self.model_dir = (chosen or default_model_dir(self.root)).expanduser().resolve()
        self.model_path = self.model_dir / MODEL_FILE
        self.token_path = self.model_dir / TOKEN_FILE

    def load(self) -> bool:
        """(Re)load model.cllm from the model folder if present, else the best base there is (the user's from
        `cllm pretrain`, else the one shipped in the package); a bad file is reported in status(), not raised."""
        own = self.model_path.is_file()
        model, problem = None, NoModel()
        for path in [self.model_path] if own else base_candidates():  # a damaged user base gives way to the shipped
            try:
                model = load_model(path)
                break
            except Exception as exc:  # a corrupt or incompatible file must not take the server down
                log.warning("cannot load %s: %s", path, exc)
                problem = NoModel(str(path), str(exc))
        if model is None:
            self._unserve(problem)
            return False
        self.serve(model, model_summary(model, "workspace" if own else "base"))
        return True

    def _unserve(self, summary: NoModel) -> None:
        with self._state_lock:  # no model serves
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
        served, rel = self._served, relative_path(self.root, path)
        if served is not None and rel is not None:
            served.file_saved(rel)
        self.learner.saved(path)

    def typing(self) -> None:
        """The user is typing (a didChange): a background run pauses, the idle period starts over."""
        self.learner.typing()

    def start_learning(self, on_settled: Callable[[str, str | None], None], focus: list[str]) -> dict[str, Any]:
        """Start a background run (server/learning.py): the `training` settings without shape options, on one
        thread for LEARN_SECONDS, continuing the workspace's model (else fine-tuning the best base) into a candidate
        kept only if it validates better, learning most from the `focus` files (the saved ones, workspace-relative).
        Refused when there is neither a model nor a base to go on from."""
        options, _ = self.training_options({})
        options = {name: value for name, value in options.items() if name not in SHAPE_OPTIONS and name != "fresh"}
        options.update(time_budget=LEARN_SECONDS, threads=1)
        request = self._train_request(self.root, options, out=self.model_dir / LEARNING_FILE)
        if "continue_from" not in request and best_base() is None:
            return refused("unavailable", "no model or base model to go on from")
        request["options"], request["focus"] = {**options, "only_better": True}, focus
        return self.trainer.start(request, options, self.model_dir / LEARNING_FILE, kind="learn",
                                  on_settled=on_settled)

    @property
    def has_model(self) -> bool:
        """True when completions can be served."""
        return self._served is not None

    @property
    def model(self) -> Any:
        """The loaded model (cllm.engine.Model) or None."""
        return getattr(self._served, "model", None)

    @property
    def mixture_settled(self) -> threading.Event:
        """Set once the cache-model completer of the loaded model is in place, or known to be unavailable."""
        served = self._served
        return self._unset if served is None else served.ready

    @property
    def _index(self) -> Any:
        """The loaded model's IndexBuilder (engine/complete/workspace_index.py), if it mixes."""
        return getattr(self._served, "index", None)

    def update_settings(self, settings: dict | None) -> list[str]:
        """Apply a new `cllm` settings object; returns the problems found (ignored, the rest applies). A changed
        modelDir switches folders and loads the model there, once the running training (if any) has ended."""
        parsed, problems = parsed_settings(settings)
        with self._state_lock:
            self.settings, self.settings_problems = parsed, problems
            self.learner.changed()
            if self.trainer.running:
                return problems
        self.training_ended()
        return problems

    def training_ended(self) -> None:
        """Apply a modelDir change made meanwhile: switch folders and load the model there."""
        self.learner.changed()
        with self._state_lock:
            old_dir = self.model_dir
            self._set_model_dir()
            moved = self.model_dir != old_dir
        if moved:
            self.acceptance.close()
            self.acceptance = Acceptance(self.model_dir / ACCEPTANCE_FILE)
            self.learner.use_folder(self.model_dir)
            self.load()

    def index_settings(self) -> IndexSettings:
        """How the workspace index is built: the engine's defaults, with the indexMemoryMB setting as its cap."""
        cap = self.settings.index_memory_mb
        return IndexSettings() if cap is None else IndexSettings(max_mb=cap)

    def completion_options(self, **overrides: Any) -> CompletionOptions:
        """Engine defaults, then the settings (maxTokens, multiline), then per-request overrides."""
        return completion_options(self.settings, **overrides)

    def complete(self, prefix: str, suffix: str = "", *, path: str | Path | None = None,
                 doc_key: str | None = None, cancel: threading.Event | None = None,
                 on_text: Callable[[str], None] | None = None, lines_before: int = 0,
                 **overrides: Any) -> Completion | None:
        """Complete at a cursor between `prefix` and `suffix`; None when no model is loaded yet. Overrides are
        CompletionOptions fields; `cancel` stops one early; `on_text` receives the suggestion piece by piece;
        `lines_before`: the document's lines before `prefix` (the line of a copy from it, Completion.source).
        A suggestion less confident than the eagerness setting's threshold comes back with no text; so that none
        of it is streamed before that is known, `on_text` gets the whole text at the end."""
        options = self.completion_options(**overrides)
        served = self._served
        if served is None:
            return None
        completion = served.complete(prefix, suffix, options, path=relative_path(self.root, path), doc_key=doc_key,
                                     cancel=cancel, lines_before=lines_before)
        if completion.confidence < served.threshold(self.settings.eagerness):
            return dataclasses.replace(completion, text="")
        if on_text is not None and completion.text:
            on_text(completion.text)
        return completion

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback(event)` for every event from now on; returns the function that unsubscribes."""
        return self.events.subscribe(callback)

    def state(self) -> WorkspaceStatus:
        """The typed status: what serves completions, the model and the training."""
        with self._state_lock:
            served = self._served
            completer = None if served is None else ("transformer+cache" if served.mixes else "transformer")
            return WorkspaceStatus(workspace=str(self.root), model_dir=str(self.model_dir), completer=completer,
                                   model=self._summary, training=self.trainer.snapshot(),
                                   acceptance=self.acceptance.to_json())

    def status(self) -> dict[str, Any]:
        """The status object as the servers send it (camelCase keys; docs/protocol.md)."""
        return {**self.state().to_json(), "learning": to_wire(self.learner.to_json())}

    @property
    def training(self) -> bool:
        """True while this Workspace's trainer runs."""
        return self.trainer.running

    @property
    def _job(self) -> Job | None:
        return self.trainer.job

    def training_options(self, overrides: dict[str, Any]) -> tuple[dict[str, int | float], list[str]]:
        """The checked options of a run: the editors' default budget, the `training` settings, then `overrides`."""
        return training_options(self.settings, overrides)

    def base_missing(self, overrides: dict[str, Any]) -> bool:
        """True when training now would start from scratch for want of a base model: the workspace has no model of
        its own, there is no base (neither the user's from `cllm pretrain` nor the shipped one), and no shape option
        asks for another model anyway."""
        from cllm.engine.train.start import Fresh, StartRequest, decide_start

        options, _ = self.training_options(overrides)
        shape = tuple(name for name in SHAPE_OPTIONS if name in options)
        start = decide_start(StartRequest(workspace=self.root, own_model=self.model_path), verify=False)
        return not shape and isinstance(start, Fresh)

    def start_training(self, path: Path | str | None = None, *, from_scratch: bool = False,
                       **overrides: Any) -> dict[str, Any]:
        """Start training (on `path`, a folder inside the workspace, else the root) in a child process and return at
        once: {"started": True} or {"started": False, "reason": ..., "code": "invalid" | "busy" | "unavailable"}.
        Overrides are training options by python name, over the `training` settings (server/requests.py)."""
        options, source, refusal = check_request(self.root, self.settings, path, overrides)
        if refusal:
            return refusal
        return self.trainer.start(self._train_request(source, options, from_scratch), options,
                                  self.model_dir / TRAINING_FILE)

    def _train_request(self, source: Path, options: dict[str, Any], from_scratch: bool = False,
                       out: Path | None = None) -> dict[str, Any]:
        """The `cllm train` request of a run (server/cli/request.py): it continues the workspace's model unless
        `fresh` is set (the child checks the model is this workspace's), and fine-tunes the cached base unless
        `from_scratch`."""
        from cllm.engine.train.start import Continue, StartRequest, decide_start

        request = StartRequest(workspace=source, fresh=bool(options.get("fresh")), no_base=from_scratch,
                               own_model=self.model_path)  # `cllm train` checks the model is this workspace's
        start = decide_start(request, verify=False)
        continued = {"continue_from": str(start.path)} if isinstance(start, Continue) else {}
        return {"path": str(source), "out": str(out or self.model_dir / TRAINING_FILE), **continued,
                "no_base": from_scratch, "options": options}

    def start_pretraining(self, path: Path | str | None = None, **overrides: Any) -> dict[str, Any]:
        """Prepare the base model (`cllm pretrain` on the `training.baseCorpus` folders, else the system's C, into the
        user's cache folder), then start_training(path, **overrides); answers as start_training ("job": "pretrain")."""
        options, _, refusal = check_request(self.root, self.settings, path, overrides)
        if refusal:
            return refusal
        pretrain_options = {name: value for name, value in options.items() if name in PRETRAIN_OPTIONS}
        request = {"paths": list(self.settings.base_corpus), "out": str(default_base_path()),
                   "options": pretrain_options}
        return self.trainer.start(request, pretrain_options, default_base_path(), kind="pretrain",
                                  then={"path": path, **overrides})

    def cancel_training(self) -> bool:
        """Stop the running training (the last good model stays); False when nothing was running."""
        return self.trainer.cancel()

    def wait_training(self, timeout: float | None = None) -> bool:
        """Block until the running training (if any) has ended and settled; False on timeout."""
        return self.trainer.wait(timeout)

    def close(self) -> None:
        """Stop the completion worker, save the acceptance counts, cancel training and wait for it to settle (server
        shutdown)."""
        self.worker.close()
        self.acceptance.close()
        self.learner.close()
        if self.cancel_training():
            self.wait_training(KILL_AFTER_SECONDS + 5.0)
