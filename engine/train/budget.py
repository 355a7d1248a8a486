"""A time budget's forecasts: when a run must stop and how long its learning-rate schedule should be.

The loop asks `Budget.refit` after every step (the schedule fitted to the steps the remaining time holds, from the
median of the recent step times) and `Budget.exceeded` before the next one (the next step plus the work after the
last step, `finish_estimate`, would not fit). The budget times what it forecasts through probes the run passes in
(`Probes`: a validation batch, held-out line completions, the held-out scoring's preparation), so that it reads
no model, data or completer itself. The budget counts the time the trainer runs: time it is held stopped
(`HeldTime`: SIGSTOP, as the editors pause a background run while the user types, or Ctrl-Z) does not count.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

FIT_WINDOW = 20  # recent steps whose median time fits a time-budgeted schedule
LINE_PROBE_POSITIONS = 2  # line completions timed once in a run with a time budget, to foresee the held-out scoring
# of a time budget for the mixture fit's forward passes; see docs/decisions.md, "A time budget's forecast of the end of a run"
MIXTURE_BUDGET_SHARE = 0.1
HELD_TICK = 0.05  # seconds between the held-time watch's ticks
HELD_AFTER = 0.25  # a tick this much later than due counts as held (a stopped process, not a busy machine)


class HeldTime:
    """The seconds this process was held stopped while it ran: a watch thread ticks every HELD_TICK seconds, and
    a tick more than HELD_AFTER late means the whole process was stopped (SIGSTOP/SIGCONT) meanwhile. A context
    manager: the watch runs inside the `with` block (only when `active`)."""

    def __init__(self, active: bool = True):
        self.active = active
        self.seconds = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "HeldTime":
        if self.active:
            self._thread = threading.Thread(target=self._watch, name="cllm-held-time", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _watch(self) -> None:
        last = time.perf_counter()
        while not self._stop.wait(HELD_TICK):
            now = time.perf_counter()
            late = now - last - HELD_TICK
            if late > HELD_AFTER:
                self.seconds += late
            last = now


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
class Probes:
    """What the budget times, each with the run's current weights. `heldout` prepares the held-out scoring's
    inputs once and returns them (their `val_docs`, and the mixture fit's `batches`, `batch_seconds` and
    `fit_seconds`); `complete_lines(n)` completes n held-out lines; `validation_batch` scores one batch."""

    validation_batch: Callable[[], Any]
    validation_batches: int  # batches of one validation pass (0 without held-out tokens)
    heldout: Callable[[], Any]
    complete_lines: Callable[[int], Any]
    scored_lines: int  # held-out line completions the end of the run scores
    blends: int  # validation passes of the blends with the base


@dataclass
class ScoringCost:
    """What the mixture's fit will cost (time_scoring): its forward batches, one batch's and the fit's seconds."""

    batches: int
    batch_seconds: float
    fit_seconds: float


def time_scoring(budget: float, batch_seconds: Callable[[], float], afford: Callable[[int], int],
                 rehearse_fit: Callable[[], Any]) -> ScoringCost:
    """The mixture fit's cost, its forward passes held to MIXTURE_BUDGET_SHARE of the `budget`: one forward batch
    timed (`batch_seconds`), the held-out documents that many batches afford kept (`afford` returns their
    batches), the fit timed on them (`rehearse_fit`)."""
    seconds = batch_seconds()
    batches = afford(int(MIXTURE_BUDGET_SHARE * budget / max(seconds, 1e-9)))
    begin = time.perf_counter()
    rehearse_fit()
    return ScoringCost(batches=batches, batch_seconds=seconds, fit_seconds=time.perf_counter() - begin)


class Budget:
    """The time budget of one run (`seconds` None: no budget, and nothing is timed or refitted)."""

    def __init__(self, seconds: float | None, started: float, planned_steps: int, probes: Probes,
                 held: HeldTime | None = None):
        self.seconds, self.started, self.planned_steps, self.probes = seconds, started, planned_steps, probes
        self.held = held or HeldTime(active=False)  # the time the trainer was held stopped, not counted
        self.step_walls: list[float] = []
        self.validate_seconds: float | None = None  # last measured duration of a validation pass
        self.validation_batch_seconds: float | None = None  # one validation batch, timed once
        self.save_seconds: float | None = None  # last measured duration of writing the model file
        self.line_seconds: float | None = None  # one held-out line completion, timed once
        self.heldout: Any = None  # the held-out scoring's inputs, once the estimate prepared them

    def elapsed(self) -> float:
        """Seconds since the run started, without those the trainer was held stopped."""
        return time.perf_counter() - self.started - self.held.seconds

    def refit(self, step: int) -> int | None:
        """The schedule's new length once a few steps are timed: the steps the remaining time holds (keeping a
        tenth for validation and checkpoints, never beyond the planned epochs), so the learning rate has decayed
        when time runs out. None without a budget or before four steps."""
        if self.seconds is None or len(self.step_walls) < 4:
            return None
        remaining = max(0.0, self.seconds - self.elapsed())
        return min(self.planned_steps, max(step + 1, step + int(0.9 * remaining / self.step_seconds())))

    def step_seconds(self) -> float:
        """The median time of the recent steps (the first step, which includes compilation, only while alone)."""
        return float(np.median(self.step_walls[1:][-FIT_WINDOW:] or self.step_walls))

    def seconds_remaining(self, steps_left: int) -> float:
        """Seconds of `steps_left` steps at the recent step time, no more than the time budget leaves."""
        remaining = max(0, steps_left) * self.step_seconds()
        if self.seconds is not None:
            remaining = min(remaining, max(0.0, self.seconds - self.elapsed()))
        return remaining

    def exceeded(self, next_step_seconds: float) -> bool:
        """True when another step of `next_step_seconds` and the finish would overrun the budget."""
        if self.seconds is None:
            return False
        finish = self.finish_estimate().total()  # first: it may prepare the held-out scoring's inputs
        return self.elapsed() + next_step_seconds + finish > self.seconds

    def finish_estimate(self) -> FinishEstimate:
        """Seconds of the work after the last step: the last validation, the blends, the mixture's forward passes
        and fit and the held-out line scoring (prepared at the first call, so that the rest is timed), and writing
        the model file (measured once done, a second before)."""
        h = self.heldout = self.probes.heldout()  # first: it loads the compiled forward kernels
        lines = self.probes.scored_lines * self._line_seconds() if h.val_docs else 0.0
        validation = self._validation_seconds()
        return FinishEstimate(validation=validation, blend=self.probes.blends * validation,
                              mixture=h.batches * h.batch_seconds + h.fit_seconds, lines=lines,
                              save=self.save_seconds if self.save_seconds is not None else 1.0)

    def _validation_seconds(self) -> float:
        """Seconds of a validation pass: the last one's, once one ran; before, its batches times one batch timed
        once (the second of two: the first loads or compiles the evaluation kernels). 0 without held-out tokens.
        See docs/decisions.md, "A time budget's forecast of the end of a run"."""
        if self.validate_seconds is not None or self.probes.validation_batches == 0:
            return self.validate_seconds or 0.0
        if self.validation_batch_seconds is None:
            self.probes.validation_batch()
            begin = time.perf_counter()
            self.probes.validation_batch()
            self.validation_batch_seconds = time.perf_counter() - begin
        return self.probes.validation_batches * self.validation_batch_seconds

    def _line_seconds(self) -> float:
        """Seconds one held-out line completion takes, timed once on LINE_PROBE_POSITIONS positions after one
        untimed completion (which loads the decoding kernels)."""
        if self.line_seconds is None:
            self.probes.complete_lines(1)
            begin = time.perf_counter()
            self.probes.complete_lines(LINE_PROBE_POSITIONS)
            self.line_seconds = (time.perf_counter() - begin) / LINE_PROBE_POSITIONS
        return self.line_seconds
