"""Learning while the user works: after saves, once the editor has been idle for `idleSeconds`, the workspace's
model goes on training in the background (a "learn" job of server/trainer_job.py: nice 19, one thread, a budget of
LEARN_SECONDS, `cllm train --only-better`), and its candidate is swapped in only when it validates better than the
serving model on the same held-out files (else discarded, with a log line).

Typing pre-empts it: `typing()` (each didChange) stops the child at once with SIGSTOP, and the next idle period
continues it with SIGCONT: nothing is lost or redone (a stopped and restarted run would pay its start-up, scan and
first validation again), and the child's time budget skips the time it was held (engine/train/budget.py HeldTime).
The status' `learning` object says what happened: "learned from N saves, last at HH:MM"; the saves learned from
and the time of the last swap are kept in the model folder (learning.json), so a restart still says them.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from cllm.engine.config import CorpusConfig
from cllm.engine.files import atomic_write_bytes

log = logging.getLogger(__name__)

LEARNED_FILE = "learning.json"  # the saves learned from and the last swap's time, in the model folder
LEARNING_FILE = "model.cllm.learning"  # a background run's candidate, in the model folder
LEARNING_NICENESS = 19  # the lowest priority: background learning never makes a keystroke wait
LEARN_SECONDS = 120.0  # a background run's time budget; see docs/decisions.md, "Learning while the user is idle"


def discard_reason(metadata: Any) -> str | None:
    """Why a background run's candidate must not replace the serving model (None: it validates better): its
    validation loss (TrainingMetadata.val_loss) must be below the serving weights' on the same held-out windows,
    measured first by the same run (start_val_loss)."""
    start, end = metadata.start_val_loss, metadata.val_loss
    if start is None or end is None:
        return "discarded the candidate: there are no held-out files to validate it on"
    if end >= start:
        return (f"discarded the candidate: it validates at {end:.4f} nats/token, no better than the serving "
                f"model's {start:.4f}")
    return None


def read_learned(path: Path) -> tuple[int, datetime | None]:
    """The saves learned from and the time of the last swap stored at `path`: (0, None) without a file and, with a
    log line, when it is unreadable or damaged."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return 0, None
    except (OSError, ValueError) as exc:
        log.warning("the learning record %s is unreadable (%s): counting saves from zero", path, exc)
        return 0, None
    try:
        saves, at = data["saves"], data["last_at"]
        if isinstance(saves, bool) or not isinstance(saves, int) or saves < 0:
            raise ValueError(f"saves is {saves!r}, not a whole number >= 0")
        return saves, None if at is None else datetime.fromisoformat(at)
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("the learning record %s is damaged (%s): counting saves from zero", path, exc)
        return 0, None


def write_learned(path: Path, saves: int, at: datetime | None) -> None:
    """Store the saves learned from and the last swap's time at `path` (atomically); a failure is logged."""
    data = {"saves": saves, "last_at": None if at is None else at.isoformat(timespec="seconds")}
    try:
        atomic_write_bytes(path, json.dumps(data).encode())
    except Exception as exc:  # a full disk or a read-only folder must not fail the swap
        log.warning("cannot save the learning record to %s: %s", path, exc)


class Learner(Protocol):
    """What the IdleLearner needs of its workspace (server/workspace.py)."""

    root: Path
    settings: Any  # server/settings.py Settings: learn_while_idle, idle_seconds

    def start_learning(self, on_settled: Any, focus: list[str]) -> dict[str, Any]: ...
    @property
    def trainer(self) -> Any: ...


class IdleLearner:
    """Counts saves, watches for idle periods and starts, pauses and resumes the background run. Thread-safe; its
    watch thread starts at the first save. `use_folder` reads what the model folder's record says was learned."""

    def __init__(self, workspace: Learner):
        self.workspace = workspace
        self._cond = threading.Condition()
        self._last_activity = time.monotonic()
        self._pending = 0  # saves since the last background run started
        self._focus: set[str] = set()  # the files they saved (workspace-relative): the run learns most from them
        self._in_run = 0  # saves the running background run learns from
        self._saves = 0  # saves learned from by models swapped in (kept in the model folder's LEARNED_FILE)
        self._last_at: datetime | None = None
        self._record: Path | None = None
        self._outcome: str | None = None  # of the last run: "learned", "discarded", "failed", "cancelled"
        self._reason: str | None = None
        self._running = False
        self._closed = False
        self._thread: threading.Thread | None = None

    def use_folder(self, model_dir: Path) -> None:
        """Count the saves learned from in `model_dir` (the workspace's model folder, chosen or changed)."""
        saves, at = read_learned(model_dir / LEARNED_FILE)
        with self._cond:
            self._record, self._saves, self._last_at = model_dir / LEARNED_FILE, saves, at

    def saved(self, path: str | Path) -> None:
        """A file was saved: a C file of the workspace counts, and learning waits for the next idle period."""
        try:
            relative = Path(path).resolve().relative_to(self.workspace.root).as_posix()
        except (OSError, ValueError):
            return
        if Path(path).suffix not in CorpusConfig().extensions:
            return
        with self._cond:
            self._pending += 1
            self._focus.add(relative)
            self._last_activity = time.monotonic()
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._watch, name="cllm-idle-learner", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def typing(self) -> None:
        """The user typed (didChange): the idle period starts over and a running background run stops at once."""
        with self._cond:
            self._last_activity = time.monotonic()
            if self._running and self.workspace.trainer.pause():
                self._cond.notify_all()  # the watch now waits for the idle period that resumes it

    def changed(self) -> None:
        """The settings or the trainer changed: look again."""
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _watch(self) -> None:
        """Wait for an idle period, then resume the paused run or start one on the saves pending."""
        with self._cond:
            while not self._closed:
                wait = self._seconds_to_idle()
                if wait is None or wait > 0:
                    self._cond.wait(wait)
                    continue
                if self._running:
                    self.workspace.trainer.resume()
                    continue
                self._start()

    def _seconds_to_idle(self) -> float | None:
        """Seconds until the editor counts as idle when there is something to do then; None when there is not."""
        enabled, idle_seconds = self.workspace.settings.learn_while_idle, self.workspace.settings.idle_seconds
        trainer = self.workspace.trainer
        paused = self._running and getattr(trainer.job, "paused", False)
        if not enabled or not (paused or (self._pending and not trainer.running)):
            return None
        return self._last_activity + idle_seconds - time.monotonic()

    def _start(self) -> None:
        """Start the background run on the saves pending, focused on the files they saved (the condition is held);
        a refusal waits for the next idle period."""
        answer = self.workspace.start_learning(self._settled, sorted(self._focus))
        if answer.get("started"):
            self._running, self._in_run, self._pending, self._focus = True, self._pending, 0, set()
            self._outcome = self._reason = None
        else:
            self._outcome, self._reason = "not started", answer.get("reason")
            self._last_activity = time.monotonic()

    def _settled(self, outcome: str, reason: str | None) -> None:
        """The background run ended (trainer_job's reader thread): "learned" (swapped in), "discarded", "failed"
        or "cancelled". Only a swap counts its saves; the others are not tried again until the next save."""
        with self._cond:
            self._running, self._outcome, self._reason = False, outcome, reason
            if outcome == "learned":
                self._saves += self._in_run
                self._last_at = datetime.now().astimezone()
                if self._record is not None:
                    write_learned(self._record, self._saves, self._last_at)
            self._in_run = 0
            self._cond.notify_all()

    def to_json(self) -> dict[str, Any]:
        """The status' `learning` object (docs/protocol.md)."""
        enabled = self.workspace.settings.learn_while_idle
        with self._cond:
            paused = self._running and getattr(self.workspace.trainer.job, "paused", False)
            state = ("off" if not enabled else "paused" if paused else "learning" if self._running
                     else "waiting" if self._pending else "idle")
            at = self._last_at
            summary = f"learned from {self._saves} save{'s' * (self._saves != 1)}"
            return {"enabled": enabled, "state": state, "saves": self._saves, "pending": self._pending + self._in_run,
                    "last_at": None if at is None else at.isoformat(timespec="seconds"),
                    "summary": summary + (f", last at {at:%H:%M}" if at else ""),
                    "outcome": self._outcome, "reason": self._reason}
