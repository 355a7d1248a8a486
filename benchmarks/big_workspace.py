"""A big workspace on one machine: how long each phase of `cllm train` takes, its peak memory, and how soon a
time-budgeted run has a model.

    python benchmarks/big_workspace.py PATH [--time-budget 300] [--no-gitignore] [--cancel-at PHASE]

Runs `cllm train PATH --json --time-budget N` in a child process (the model goes to a temporary folder) and
times its events as they arrive: the end of the scan, tokenizer and tokenization phases (PhaseEvents), the first
step, the first checkpoint and the end of the run; the peak RSS is the child's (wait4). With --cancel-at PHASE
the benchmark sends SIGTERM at the first event of that phase (scan, tokenizer, tokenize, train or validation:
the first epoch event is followed by another validation) and reports how long the trainer took to exit.
The reference tree is Debian's linux-source-6.1 (issue 16); its root .gitignore ends with `/*`, so it needs
--no-gitignore when it is not a git work tree.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PHASES = ("scan", "tokenizer", "tokenize")


def run(path: str, time_budget: float, no_gitignore: bool, cancel_at: str | None) -> dict:
    """Train once and return the timeline: phase ends, first step and checkpoint, the done event, peak RSS."""
    with tempfile.TemporaryDirectory(prefix="cllm-big-") as folder:
        command = [sys.executable, "-m", "cllm.server.cli", "train", path, "--json", "--out", str(Path(folder) / "model.cllm"),
                   "--time-budget", str(time_budget), *(["--no-gitignore"] if no_gitignore else [])]
        began = time.perf_counter()
        child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        timeline: dict = {"phases": {}, "events": 0}
        for line in child.stdout:
            now = time.perf_counter() - began
            event = json.loads(line)
            timeline["events"] += 1
            kind = event["event"]
            if kind == "phase" and event["done"] == event["total"] and event["phase"] in PHASES:
                timeline["phases"].setdefault(event["phase"], (now, event["done"], event["unit"]))
            elif kind in ("step", "checkpoint", "epoch"):
                timeline.setdefault(f"first_{kind}", now)
            elif kind in ("done", "error"):
                timeline[kind] = event
            stage = event.get("phase") if kind == "phase" else ("validation" if kind == "epoch" else None)
            if cancel_at is not None and stage == cancel_at and "cancelled_at" not in timeline:
                child.send_signal(signal.SIGTERM)
                timeline["cancelled_at"] = now
        _, status, usage = os.wait4(child.pid, 0)
        timeline["exit_code"] = os.waitstatus_to_exitcode(status)
        timeline["seconds"] = time.perf_counter() - began
        timeline["peak_rss_mb"] = usage.ru_maxrss / 1024  # KiB on Linux
        timeline["model_written"] = (Path(folder) / "model.cllm").is_file()
        return timeline


def table(timeline: dict, time_budget: float) -> str:
    """The timeline as a text table: one row per phase, then the run's milestones."""
    rows = [("phase / milestone", "at (s)", "took (s)", "amount", "rate")]
    previous = 0.0
    for phase in PHASES:
        if phase not in timeline["phases"]:
            continue
        at, done, unit = timeline["phases"][phase]
        took = at - previous
        rate = f"{done / 1e6 / max(took, 1e-9):,.1f} MB/s" if unit == "bytes" else f"{done / max(took, 1e-9):,.0f} {unit}/s"
        amount = f"{done / 1e6:,.1f} MB" if unit == "bytes" else f"{done:,} {unit}"
        rows.append((phase, f"{at:.1f}", f"{took:.1f}", amount, rate))
        previous = at
    for key, label in (("first_step", "first step"), ("first_checkpoint", "first checkpoint"),
                       ("first_epoch", "first validation")):
        if key in timeline:
            rows.append((label, f"{timeline[key]:.1f}", "", "", ""))
    if "cancelled_at" in timeline:
        rows.append(("SIGTERM sent", f"{timeline['cancelled_at']:.1f}", "", "", ""))
    rows.append(("exit", f"{timeline['seconds']:.1f}", "", f"code {timeline['exit_code']}", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    done, error = timeline.get("done"), timeline.get("error")
    lines.append(f"peak RSS {timeline['peak_rss_mb']:,.0f} MB; budget {time_budget:.0f} s; "
                 f"model written: {'yes' if timeline['model_written'] else 'no'}")
    if done:
        fraction = done.get("corpus_fraction")
        lines.append(f"stop: {done['stop_reason']}, {done['steps']} steps, {done['tokens']:,} tokens, "
                     f"{done['tokens_per_second']:,.0f} tok/s, held-out bits/byte {done['val_bits_per_byte']}, "
                     f"corpus covered {fraction:.2%}" if fraction is not None else "")
    if error:
        lines.append(f"error: {error['message']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="workspace folder (e.g. the extracted linux-source-6.1 tree)")
    parser.add_argument("--time-budget", type=float, default=300.0, metavar="SECONDS")
    parser.add_argument("--no-gitignore", action="store_true", help="pass --no-gitignore to cllm train")
    parser.add_argument("--cancel-at", choices=[*PHASES, "train", "validation"],
                        help="send SIGTERM at the first event of this phase and time the exit")
    parser.add_argument("--json", action="store_true", help="print the timeline as JSON instead of a table")
    args = parser.parse_args()
    if not os.path.isdir(args.path):
        parser.error(f"{args.path} is not a folder")
    timeline = run(args.path, args.time_budget, args.no_gitignore, args.cancel_at)
    print(json.dumps(timeline) if args.json else table(timeline, args.time_budget))


if __name__ == "__main__":
    main()
