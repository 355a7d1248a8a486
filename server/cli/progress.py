"""What `cllm train` and `cllm pretrain` show while they run: JSON Lines events on stdout with --json, else a
progress bar with a line per phase and epoch on stderr."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cllm.engine.events import TrainingEvent


def train_reporter(as_json: bool):
    """An on_event callback: JSON Lines on stdout (the events' to_json(), engine/events.py), or a tqdm bar and
    epoch lines on stderr. Returns (callback, close)."""
    import json

    from tqdm import tqdm

    from cllm.engine.data.corpus import skip_summary
    from cllm.engine.events import EpochEvent, PhaseEvent, StartEvent, StepEvent

    from ..words import time_left

    if as_json:
        def emit(event: TrainingEvent) -> None:
            sys.stdout.write(json.dumps(event.to_json()) + "\n")
            sys.stdout.flush()
        return emit, lambda: None
    bar = tqdm(total=0, unit="step", file=sys.stderr, dynamic_ncols=True, disable=None)
    budgeted = False  # under a time budget tqdm's own ETA (from the schedule's steps) is not the whole story
    phases: dict[str, float] = {}

    def show(event: TrainingEvent) -> None:
        nonlocal budgeted
        if isinstance(event, PhaseEvent) and event.phase != "train":
            _show_phase(bar, event, phases)
        elif isinstance(event, StartEvent):
            c = event.corpus
            bar.write(f"{c['files']:,} files ({c['c_files']:,} .c, {c['h_files']:,} .h), {c['lines']:,} lines, "
                      f"{c['bytes']:,} bytes; {event.train_files} train / {event.val_files} held out; "
                      f"{event.tokens:,} tokens, vocab {event.vocab_size:,}, {event.params:,} parameters")
            if event.skipped:
                bar.write(skip_summary(skipped.reason for skipped in event.skipped))
            if event.auto:
                fields = event.to_json()
                values = {**fields, **fields["settings"]}
                picked = ", ".join(f"{name} {values.get(name)}" for name in event.auto)
                bar.write(f"time budget: picked {picked} for this workspace (flags override)")
            bar.reset(total=event.total_steps)
            bar.update(event.step)
            bar.set_description(f"{event.spheres} spheres · {event.threads} threads")
            budgeted = event.settings.time_budget is not None
        elif isinstance(event, StepEvent):
            if event.total_steps != bar.total:  # the schedule was fitted to --time-budget
                bar.total = event.total_steps
            bar.update(event.step - bar.n)
            left = f" · {time_left(event.seconds_remaining)}" if budgeted else ""
            bar.set_postfix_str(f"{event.tokens_per_second:,.0f} tok/s · loss {event.loss:.3f}{left}")
        elif isinstance(event, EpochEvent):
            bar.update(event.step - bar.n)
            val = "" if event.val_bits_per_byte is None else f", held-out {event.val_bits_per_byte:.3f} bits/byte"
            bar.write(f"epoch {event.epoch}: train loss {event.train_loss:.3f}{val}")
    return show, bar.close


def _show_phase(bar, event, started: dict[str, float]) -> None:
    """The bar follows a phase before training (files or bytes; `started` holds when each phase shown so far
    began); a line on stderr when it ends."""
    import time

    if event.phase not in started:
        started[event.phase] = time.monotonic()
        bar.reset(total=event.total)
        bar.unit, bar.unit_scale = event.unit, event.unit == "bytes"
        bar.set_description(event.phase)
    bar.total = event.total
    bar.update(event.done - bar.n)
    if event.done == event.total and event.done:  # an empty phase says nothing the error does not
        bar.write(f"{event.phase}: {event.done:,} {event.unit} in {time.monotonic() - started[event.phase]:.1f} s",
                  file=sys.stderr)
        bar.unit, bar.unit_scale = "step", False
