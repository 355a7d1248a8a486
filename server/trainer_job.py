"""The trainer child of one workspace: spawning `cllm train` / `cllm pretrain`, following its events, settling.

- One trainer per workspace, across processes: `start` takes the workspace's training lock (engine/paths.py) at
  once or answers why not, holds it for the run and tells the child so through LOCK_HELD_ENV.
- The child (`python -m cllm.server.cli train --request - --json`) gets its request as one JSON object on stdin
  (server/cli/request.py) and runs at lower CPU priority: completions stay responsive and a crash in training
  cannot take the server down. A reader thread reads its JSON Lines events, keeps the live TrainingStatus
  (server/records.py) and publishes every event.
- The new model replaces the old one only when training finished and the new file loads; until then the last
  good model keeps serving. A pretrain job's `then` starts the fine-tuning run once the base is ready.
- A "learn" job is the background run of server/learning.py: at nice 19, quiet (no progress), paused (SIGSTOP)
  and resumed (SIGCONT) as the user types and idles, its candidate swapped in only when it validates better than
  the serving model (learning.discard_reason), and cancelled by an explicit training, which then starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Protocol

import filelock

from cllm.engine import load_model
from cllm.engine.data.corpus import skip_counts, skip_summary
from cllm.engine.events import (DoneEvent, EpochEvent, EventError, FailedEvent, PhaseEvent, StartEvent, StepEvent,
                                TrainingEvent, event_from_json)
from cllm.engine.paths import LOCK_HELD_ENV, WorkspaceBusy, acquire_training_lock, release_training_lock

from .learning import LEARNING_FILE, LEARNING_NICENESS, discard_reason
from .records import (ModelLoaded, ModelSummary, ServerEvent, TrainingFinished, TrainingStarted, TrainingStatus,
                      model_summary)
from .settings import request_command_line

log = logging.getLogger("cllm.server.workspace.trainer")  # under the workspace's logger, where its lines always were

TRAINING_FILE = "model.cllm.training"
LOG_FILE = "train.log"
TRAINER_NICENESS = 10
KILL_AFTER_SECONDS = 5.0


class Owner(Protocol):
    """What a TrainerJob needs of its workspace (server/workspace.py)."""

    root: Path
    model_dir: Path
    model_path: Path

    def load(self) -> bool: ...
    def serve(self, model: Any, summary: ModelSummary) -> None: ...
    def training_ended(self) -> None: ...
    def start_training(self, path: Path | str | None = None, **overrides: Any) -> dict[str, Any]: ...


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _lower_priority_prefix(niceness: int = TRAINER_NICENESS) -> list[str]:
    """`nice -n 10` (19 for a background run) before the trainer's command where available: be nice to the
    editor and the completion worker.

    (Not Popen's preexec_fn: running Python code between fork and exec is unsafe in this multi-threaded server.)"""
    nice = shutil.which("nice")
    return [nice, "-n", str(niceness)] if nice else []


def refused(code: str, reason: str) -> dict[str, Any]:
    """The answer of a training request that did not start."""
    return {"started": False, "reason": reason, "code": code}


@dataclasses.dataclass
class Job:
    """One running trainer child process and what is known about it."""

    process: subprocess.Popen | None  # set once spawned
    lock: filelock.BaseFileLock | None
    out_path: Path
    log_path: Path
    options: dict[str, int | float]
    kind: str = "train"  # "train", "pretrain" (preparing the base model before training) or "learn" (background)
    then: dict[str, Any] | None = None  # pretrain: the start_training arguments to train with once the base is ready
    after: tuple | None = None  # learn: the start() arguments of the explicit run that cancelled it
    on_settled: Callable[[str, str | None], None] | None = None  # learn: told "learned", "discarded", ... and why
    paused: bool = False  # learn: stopped (SIGSTOP) while the user types
    cancelled: bool = False
    done_event: DoneEvent | None = None
    error: str | None = None
    thread: threading.Thread | None = None


class TrainerJob:
    """At most one trainer child of a workspace, and the live training status. Thread-safe."""

    def __init__(self, owner: Owner, publish: Callable[[ServerEvent], None]):
        self.owner = owner
        self.publish = publish
        self.job: Job | None = None
        self.status = TrainingStatus()
        self._lock = threading.RLock()

    @property
    def running(self) -> bool:
        """True while a trainer child runs (until its outcome is settled)."""
        return self.job is not None

    def snapshot(self) -> TrainingStatus:
        """A copy of the training status, safe to read while the reader thread updates it."""
        with self._lock:
            return dataclasses.replace(self.status)

    def start(self, request: dict[str, Any], options: dict[str, int | float], out_path: Path, *,
              kind: str = "train", then: dict[str, Any] | None = None,
              on_settled: Callable[[str, str | None], None] | None = None) -> dict[str, Any]:
        """Take the workspace's lock, spawn `cllm KIND --request - --json` with `request` (server/cli/request.py;
        it writes `out_path`) and follow it on a reader thread; answers {"started": True} or the refusal. An
        explicit run takes precedence over a background "learn" run: that one is cancelled, this one starts after."""
        owner = self.owner
        job = Job(process=None, lock=None, out_path=out_path, log_path=owner.model_dir / LOG_FILE, options=options,
                  kind=kind, then=then, on_settled=on_settled)
        with self._lock:
            running = self.job
            if running is not None:
                if running.kind != "learn" or kind == "learn" or running.after is not None:
                    return refused("busy", "training is already running for this workspace")
                running.after = (request, options, out_path, kind, then)
        if running is not None:
            self.cancel()
            return {"started": True}
        with self._lock:
            if self.job is not None:  # started meanwhile by another request
                return refused("busy", "training is already running for this workspace")
            try:
                job.lock = acquire_training_lock(owner.root)  # the whole workspace's lock, even for a subfolder
            except WorkspaceBusy as exc:
                return refused("busy", str(exc))
            except OSError as exc:
                return refused("unavailable", f"cannot take the training lock: {exc}")
            try:
                owner.model_dir.mkdir(parents=True, exist_ok=True)
                job.out_path.parent.mkdir(parents=True, exist_ok=True)
                job.process = self._spawn("train" if kind == "learn" else kind, request, job.lock, job.log_path,
                                          LEARNING_NICENESS if kind == "learn" else TRAINER_NICENESS)
            except OSError as exc:
                if job.lock is not None:
                    release_training_lock(job.lock)
                return refused("unavailable", f"cannot start the trainer in {owner.model_dir}: {exc}")
            self.job = job
            self.status = TrainingStatus(state="training", job=job.kind, started_at=_now(), options=job.options)
            job.thread = threading.Thread(target=self._follow, args=(job,), name="cllm-train-reader", daemon=True)
        self.publish(TrainingStarted(job.kind, job.options))
        job.thread.start()
        return {"started": True}

    def _spawn(self, command: str, request: dict[str, Any], lock: filelock.BaseFileLock | None,
               log_path: Path, niceness: int) -> subprocess.Popen:
        """The child `cllm COMMAND --request - --json`, its request written to its stdin (a pipe's buffer holds it
        whole, so the write does not wait for the child)."""
        argv = [*_lower_priority_prefix(niceness), sys.executable, "-m", "cllm.server.cli", command, "--request", "-",
                "--json"]
        text = json.dumps(request)
        log.info("starting trainer: %s < %s (the same as `cllm %s`)", " ".join(argv), text,
                 " ".join(request_command_line(command, request)))
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if lock is not None:
            env[LOCK_HELD_ENV] = lock.lock_file  # we hold the child's lock for it
        with open(log_path, "wb") as stderr:
            process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env,
                                       cwd=str(self.owner.root), text=True, encoding="utf-8", errors="replace")
        try:
            with process.stdin:
                process.stdin.write(text)
        except OSError:
            process.kill()
            process.wait()
            raise
        return process

    def _follow(self, job: Job) -> None:
        """Reader thread: relay the trainer's events, then settle the outcome and swap the model in."""
        assert job.process.stdout is not None
        with job.process.stdout:
            for line in job.process.stdout:
                event = _read_event(line)
                if event is not None:
                    self._note(job, event)
                    self.publish(event)
        code = job.process.wait()
        state, reason, installed = self._settle(job, code)
        self._cleanup(job, installed=installed)
        with self._lock:
            self.job = None
            self.status.update(state=state, finished_at=_now())
            if reason:
                self.status.update(reason=reason)
        self.owner.training_ended()
        if installed and job.kind != "pretrain":
            self.publish(ModelLoaded(str(self.owner.model_path)))
        if job.on_settled is not None:
            job.on_settled("learned" if installed else "discarded" if state == "done" else state, reason)
        self.publish(TrainingFinished(job.kind, state, reason))
        if state == "done" and job.then is not None:
            self._train_after_pretraining(job.then)
        if job.after is not None:
            self._start_after_learning(job.after)

    def _start_after_learning(self, after: tuple) -> None:
        """The explicit run that cancelled a background one starts now; a refusal ends it as failed."""
        request, options, out_path, kind, then = after
        started = self.start(request, options, out_path, kind=kind, then=then)
        if not started["started"]:
            with self._lock:
                self.status.update(state="failed", reason=started["reason"])
            self.publish(TrainingFinished(kind, "failed", started["reason"]))

    def _train_after_pretraining(self, then: dict[str, Any]) -> None:
        """The base is ready: fine-tune it on the workspace; a refusal ends the run as failed."""
        started = self.owner.start_training(**then)
        if not started["started"]:
            with self._lock:
                self.status.update(state="failed", reason=started["reason"])
            self.publish(TrainingFinished("train", "failed", started["reason"]))

    def _note(self, job: Job, event: TrainingEvent) -> None:
        """Keep the live training status from one trainer event."""
        with self._lock:
            _note_status(self.status, event)
        if isinstance(event, FailedEvent):
            job.error = event.message
        elif isinstance(event, DoneEvent):
            job.done_event = event

    def _settle(self, job: Job, code: int) -> tuple[str, str | None, bool]:
        """Decide how the run ended (state, reason, whether its model was installed); on success load the new
        model and move it into place (a background run's only when it validates better, else it is discarded)."""
        owner = self.owner
        if job.cancelled:
            return "cancelled", "an explicit training took over" if job.after else "cancelled on request", False
        if code != 0 or job.done_event is None:
            return "failed", job.error or _log_tail(job.log_path) or f"the trainer exited with code {code}", False
        if not job.out_path.is_file():
            return "failed", f"the trainer finished but wrote no model at {job.out_path}", False
        if job.kind == "pretrain":
            if not owner.model_path.is_file():
                owner.load()  # the new base serves until the workspace has its own model
            return "done", None, True
        try:
            model = load_model(job.out_path)
            discarded = discard_reason(model.metadata) if job.kind == "learn" else None
            if discarded:
                log.info("background learning: %s", discarded)
                return "done", discarded, False
            model.path = owner.model_path
            summary = model_summary(model)
            os.replace(job.out_path, owner.model_path)
        except Exception as exc:
            return "failed", f"the new model cannot be used: {exc}", False
        owner.serve(model, summary)
        return "done", None, True

    def _cleanup(self, job: Job, installed: bool) -> None:
        """Remove the partial model of a failed or cancelled run (also the temporary file of a save that the
        kill interrupted, engine/files.py's ".<name>.*.tmp") and release the workspace lock."""
        if not installed:
            folder, name = self.owner.model_dir, LEARNING_FILE if job.kind == "learn" else TRAINING_FILE
            leftovers = [*folder.glob(name + "*"), *folder.glob(f".{name}.*.tmp")]
            for leftover in leftovers:
                with contextlib.suppress(OSError):  # a stray file must not keep the lock or the job alive
                    leftover.unlink(missing_ok=True)
        if job.lock is not None:
            release_training_lock(job.lock)

    def cancel(self) -> bool:
        """Stop the running training (the last good model stays); False when nothing was running."""
        with self._lock:
            job = self.job
            if job is None:
                return False
            job.cancelled = True
        if job.process.poll() is None:
            job.process.terminate()
            if job.paused:  # a stopped child takes the signal once continued
                _send(job, signal.SIGCONT)
            killer = threading.Timer(KILL_AFTER_SECONDS, _kill, args=(job,))
            killer.daemon = True
            killer.start()
        return True

    def pause(self) -> bool:
        """Stop a running background run where it is (SIGSTOP, at once, nothing lost); False when there is none
        to pause."""
        return self._hold(signal.SIGSTOP, paused=True)

    def resume(self) -> bool:
        """Continue a paused background run (SIGCONT); False when none is paused."""
        return self._hold(signal.SIGCONT, paused=False)

    def _hold(self, sig: int, paused: bool) -> bool:
        with self._lock:
            job = self.job
            if job is None or job.kind != "learn" or job.cancelled or job.paused == paused or job.process is None:
                return False
            job.paused = paused
            _send(job, sig)
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the running training (if any) has ended and settled; False on timeout."""
        job = self.job
        if job is None or job.thread is None:
            return True
        job.thread.join(timeout)
        return not job.thread.is_alive()


def _read_event(line: str) -> TrainingEvent | None:
    """The trainer event on one line of its standard output; None for other output or an unreadable event."""
    try:
        data = json.loads(line)
    except ValueError:
        log.debug("trainer: %s", line.rstrip())
        return None
    try:
        return event_from_json(data)
    except EventError as exc:
        log.warning("unreadable trainer event: %s", exc)
        return None


def _note_status(live: TrainingStatus, event: TrainingEvent) -> None:
    """Update the live training status from one trainer event."""
    if isinstance(event, PhaseEvent):
        live.update(phase=event.phase, done=event.done, total=event.total, unit=event.unit)
    elif isinstance(event, StepEvent):
        live.update(epoch=event.epoch, epochs=event.epochs, step=event.step, total_steps=event.total_steps,
                    loss=event.loss, tokens=event.tokens, tokens_per_second=event.tokens_per_second,
                    threads=event.threads, spheres=[sphere.to_json() for sphere in event.spheres],
                    seconds_remaining=event.seconds_remaining)
        if event.total_steps > 0:
            live.update(percent=max(0, min(100, round(100 * event.step / event.total_steps))))
    elif isinstance(event, EpochEvent):
        live.update(val_loss=event.val_loss, val_bits_per_byte=event.val_bits_per_byte, train_loss=event.train_loss)
    elif isinstance(event, DoneEvent):
        live.update(percent=100, loss=event.final_loss, val_bits_per_byte=event.val_bits_per_byte,
                    tokens_per_second=event.tokens_per_second, step=event.steps, seconds_remaining=0.0,
                    line_exact_match=event.line_exact_match)
    elif isinstance(event, StartEvent):
        reasons = [skipped.reason for skipped in event.skipped]
        live.update(files=event.files, corpus_tokens=event.tokens, total_steps=event.total_steps,
                    epochs=event.epochs, time_budget=event.settings.time_budget,
                    skipped={"count": len(reasons), "reasons": skip_counts(reasons), "summary": skip_summary(reasons)})


def _log_tail(log_path: Path, lines: int = 5) -> str:
    try:
        text = log_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    tail = [line for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(tail)


def _kill(job: Job) -> None:
    if job.process.poll() is None:
        job.process.kill()


def _send(job: Job, sig: int) -> None:
    """Signal the trainer child unless it has ended."""
    if job.process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            job.process.send_signal(sig)
