"""A big workspace on one machine: how long each phase of `cllm train` takes, its peak memory, and how soon a
time-budgeted run has a model.

    python benchmarks/big_workspace.py PATH [--time-budget 300] [--no-gitignore] [--cancel-at PHASE]
    python benchmarks/big_workspace.py PATH --lsp MODEL [--completions 40]

Runs `cllm train PATH --json --time-budget N` in a child process (the model goes to a temporary folder) and
times its events as they arrive: the end of the scan, tokenizer and tokenization phases (PhaseEvents), the first
step, the first checkpoint and the end of the run; the peak RSS is the child's (wait4). With --cancel-at PHASE
the benchmark sends SIGTERM at the first event of that phase (scan, tokenizer, tokenize, train or validation:
the first epoch event is followed by another validation) and reports how long the trainer took to exit.
The reference tree is Debian's linux-source-6.1 (issue 16); its root .gitignore ends with `/*`, so it needs
--no-gitignore when it is not a git work tree.

With --lsp MODEL (a model trained on PATH, or on a part of it) the benchmark measures the language server's side
instead: it opens PATH as the language server does (a server.workspace.Workspace with a copy of MODEL in a
temporary model folder), completes at random cursors in the model's training files while the workspace index
builds in the background (engine/complete/workspace_index.py) and after, then opens the workspace again to time loading
the saved index. It reports completion p50/p95 in both phases, the index build and reload times and the
process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
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


def _timed_completion(workspace, root: Path, rel: str, rng: random.Random) -> float | None:
    """Milliseconds of one completion at a random cursor of `rel`; None when the file cannot be read."""
    try:
        text = (root / rel).read_text(errors="replace")
    except OSError:
        return None
    cut = rng.randrange(len(text) + 1)
    began = time.perf_counter()
    workspace.complete(text[:cut], text[cut:], path=root / rel, max_tokens=16)
    return (time.perf_counter() - began) * 1000


def lsp_phase(path: str, model: str, completions: int) -> dict:
    """Completion latency while the workspace index builds and after, index build and reload times, peak RSS."""
    from cllm.server.workspace import Workspace

    root = Path(path).resolve()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory(prefix="cllm-lsp-") as folder:
        shutil.copy(model, Path(folder) / "model.cllm")
        began = time.perf_counter()
        workspace = Workspace(root, model_dir=folder)
        loaded = time.perf_counter() - began
        files = workspace.model.metadata.train_files
        building: list[float] = []
        while not workspace.mixture_settled.is_set():
            ms = _timed_completion(workspace, root, rng.choice(files), rng)
            building += [ms] if ms is not None else []
        built = time.perf_counter() - began
        index = workspace.status()["completer"]
        after = [ms for ms in (_timed_completion(workspace, root, rng.choice(files), rng) for _ in range(completions))
                 if ms is not None]
        serving_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before a second Workspace exists
        began = time.perf_counter()
        again = Workspace(root, model_dir=folder)
        again.mixture_settled.wait()
        reloaded = time.perf_counter() - began
        progress = again._index.progress if again._index is not None else {}
        index_mb = (Path(folder) / "index.npz").stat().st_size / 2**20 if (Path(folder) / "index.npz").exists() else 0
    return {"model_load_s": loaded, "index_build_s": built, "index_reload_s": reloaded, "completer": index,
            "building_ms": building, "after_ms": after, "index_file_mb": index_mb, "index": progress,
            "peak_rss_mb": serving_rss, "peak_rss_with_reload_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _percentiles(values: list[float]) -> str:
    if not values:
        return "n/a"
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return f"p50 {pick(0.5):.1f} ms, p95 {pick(0.95):.1f} ms ({len(values)} completions)"


def lsp_table(result: dict) -> str:
    """The language-server phase as text lines."""
    return "\n".join([
        f"model load            {result['model_load_s']:.1f} s",
        f"index build           {result['index_build_s']:.1f} s  ({result['index']}; file {result['index_file_mb']:.0f} MB)",
        f"completion, building  {_percentiles(result['building_ms'])}",
        f"completion, built     {_percentiles(result['after_ms'])}  (completer: {result['completer']})",
        f"index reload          {result['index_reload_s']:.1f} s",
        f"peak RSS              {result['peak_rss_mb']:,.0f} MB serving one workspace, "
        f"{result['peak_rss_with_reload_mb']:,.0f} MB with the reloaded second one"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="workspace folder (e.g. the extracted linux-source-6.1 tree)")
    parser.add_argument("--time-budget", type=float, default=300.0, metavar="SECONDS")
    parser.add_argument("--no-gitignore", action="store_true", help="pass --no-gitignore to cllm train")
    parser.add_argument("--cancel-at", choices=[*PHASES, "train", "validation"],
                        help="send SIGTERM at the first event of this phase and time the exit")
    parser.add_argument("--json", action="store_true", help="print the timeline as JSON instead of a table")
    parser.add_argument("--lsp", metavar="MODEL", help="measure the language server's side with this model instead")
    parser.add_argument("--completions", type=int, default=40, help="completions timed after the index is built")
    args = parser.parse_args()
    if not os.path.isdir(args.path):
        parser.error(f"{args.path} is not a folder")
    if args.lsp:
        if not os.path.isfile(args.lsp):
            parser.error(f"{args.lsp} is not a model file")
        result = lsp_phase(args.path, args.lsp, args.completions)
        print(json.dumps(result) if args.json else lsp_table(result))
        return
    timeline = run(args.path, args.time_budget, args.no_gitignore, args.cancel_at)
    print(json.dumps(timeline) if args.json else table(timeline, args.time_budget))


if __name__ == "__main__":
    main()
