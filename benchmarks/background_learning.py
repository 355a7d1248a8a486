"""Issue 28 part 1: does learning while idle help on the file being written? A simulated user types a file of a
project (left out of the workspace at first) top to bottom, saving every --lines lines and then idling, so that the
Workspace's background learning (server/learning.py) runs after each save; the line exact match on the rest of the
file is measured before the first background run and after each one, and the outcome of every run is printed.

    .venv/bin/python benchmarks/background_learning.py /work/evalproj/bitarray --file bitarray/_util.c
    nice -n 10 .venv/bin/python benchmarks/background_learning.py PROJECT --file F --saves 2 --learn-seconds 60 \\
        --positions 40

The project is copied to a temporary folder (it is only read). Without a model of its own the workspace serves the
best base, so the first background run fine-tunes it, the later ones continue that model. The exact match counts a
completion at the start of a line (after its indentation) right when it equals the rest of that line; the
positions are the first --positions non-blank lines after the typed part, the same before and after.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from cllm.server import workspace as workspace_module
from cllm.server.workspace import Workspace


def positions(lines: list[str], start: int, count: int) -> list[int]:
    """The first `count` non-blank lines from line `start`."""
    found = [i for i in range(start, len(lines)) if lines[i].strip()]
    return found[:count]


def exact_match(workspace: Workspace, lines: list[str], at: list[int], path: Path) -> tuple[float, float, float]:
    """Share of lines completed exactly from their indentation, with the whole file above as the prefix (a
    suggestion the eagerness hides counts as wrong, as the user sees it), the share that got a suggestion, and
    the completions' 95th percentile seconds."""
    hits, shown, seconds = 0, 0, []
    for i in at:
        indent = lines[i][:len(lines[i]) - len(lines[i].lstrip())]
        prefix = "".join(lines[:i]) + indent
        begin = time.perf_counter()
        done = workspace.complete(prefix, "", path=path, max_tokens=48, multiline=False)
        seconds.append(time.perf_counter() - begin)
        text = (done.text if done is not None else "").split("\n")[0]
        shown += bool(text.strip())
        hits += text.strip() == lines[i].strip()[len(indent.strip()):].strip() and bool(text.strip())
    seconds.sort()
    n = max(len(at), 1)
    return hits / n, shown / n, seconds[int(0.95 * (len(seconds) - 1))] if seconds else 0.0


def wait_for_run(workspace: Workspace, timeout: float) -> dict:
    """Idle until the background run started by the last save has ended; its `learning` status."""
    deadline = time.monotonic() + timeout
    started = False
    while time.monotonic() < deadline:
        learning = workspace.learner.to_json()
        started = started or learning["state"] in ("learning", "paused")
        if started and learning["state"] not in ("learning", "paused"):
            return learning
        time.sleep(0.5)
    return workspace.learner.to_json()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("project", type=Path)
    p.add_argument("--file", required=True, help="the file the simulated user writes, relative to the project")
    p.add_argument("--lines", type=int, default=50, help="lines typed between saves (default 50)")
    p.add_argument("--saves", type=int, default=3, help="saves (each followed by a background run) (default 3)")
    p.add_argument("--learn-seconds", type=float, default=workspace_module.LEARN_SECONDS,
                   help=f"each background run's time budget (default {workspace_module.LEARN_SECONDS:g})")
    p.add_argument("--idle-seconds", type=float, default=2.0, help="the idleSeconds setting (default 2)")
    p.add_argument("--positions", type=int, default=40, help="lines scored on the rest of the file (default 40)")
    args = p.parse_args(argv)
    workspace_module.LEARN_SECONDS = args.learn_seconds  # the Workspace reads the budget from its module
    with tempfile.TemporaryDirectory(prefix="cllm-learning-") as tmp:
        root = Path(tmp) / args.project.name
        shutil.copytree(args.project, root, ignore=shutil.ignore_patterns(".git"))
        target = root / args.file
        lines = target.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
        typed = min(len(lines), args.lines * args.saves)
        at = positions(lines, typed, args.positions)
        target.write_text("")
        workspace = Workspace(root, settings={"idleSeconds": args.idle_seconds, "modelDir": str(Path(tmp) / "m")})
        workspace.mixture_settled.wait(600)
        rows = [("before", "-", *exact_match(workspace, lines, at, target), "")]
        for save in range(1, args.saves + 1):
            for _ in range(args.lines):
                workspace.typing()
            target.write_text("".join(lines[:save * args.lines]))
            workspace.file_saved(target)
            learning = wait_for_run(workspace, 20 * args.learn_seconds + 600)
            workspace.mixture_settled.wait(600)
            rows.append((f"after save {save}", learning["outcome"] or "-",
                         *exact_match(workspace, lines, at, target), learning["reason"] or ""))
        workspace.close()
    print(f"{args.project.name}/{args.file}: {len(lines)} lines, {typed} typed in {args.saves} saves, "
          f"{len(at)} lines scored after them, runs of {args.learn_seconds:g} s")
    print(f"{'when':<14} {'run':<10} {'exact':>6} {'shown':>6} {'p95 ms':>7}  note")
    for when, outcome, exact, shown, p95, note in rows:
        print(f"{when:<14} {outcome:<10} {exact:>6.1%} {shown:>6.1%} {1000 * p95:>7.1f}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
