"""`cllm warmup`: compile every numba kernel into numba's cache (engine/warmup.py), so that the first completion
after an install does not wait for the compiler. A progress bar on stderr (none when it is not a terminal), or
JSON Lines events on stdout with --json; run again, it loads the cache and is done in seconds.

`cllm lsp` and `cllm serve` call start_in_background(): the first start of each cllm version runs `cllm warmup`
as a child process at low priority, never waited for; a marker file in the user cache folder records that it ran.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__

if TYPE_CHECKING:
    from cllm.engine.warmup import Kernel, Stage

POLL_SECONDS = 0.25  # how often the progress bar counts the kernels compiled so far
RETRY_SECONDS = 900  # a background warm-up started this long ago without finishing may be started again


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The `cllm warmup` subcommand's arguments."""
    p = sub.add_parser("warmup", help="compile the numba kernels ahead of the first completion (once per install)")
    p.add_argument("--json", action="store_true", help="print JSON Lines events instead of a progress bar")
    p.add_argument("--background", action="store_true",
                   help="run at low CPU priority (how `cllm lsp` and `cllm serve` start it on their first run)")
    return p


def marker_path() -> Path:
    """The file recording that this cllm version's kernels were warmed up: <user cache>/cllm/warmup/<version>."""
    import platformdirs

    from cllm.engine.paths import APP_NAME

    return Path(platformdirs.user_cache_dir(APP_NAME)) / "warmup" / __version__


def run(args: argparse.Namespace) -> int:
    """Warm every kernel up, showing progress, then record it in the marker file."""
    from cllm.engine.warmup import kernels, warm_up

    if args.background and hasattr(os, "nice"):
        os.nice(10)
    started = time.perf_counter()
    show = _Progress(args.json, [k for k in kernels() if not k.inlined])
    with show:
        done = warm_up(show.stage)
    summary = _summary(done, time.perf_counter() - started)
    show.finish(done, summary)
    marker = marker_path()
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(summary) + "\n")
    return 0


def _summary(done: list[Kernel], seconds: float) -> dict:
    """The done event: how many kernels, compiled here or found in numba's cache, and any left uncompiled."""
    status = [k.status() for k in done]
    return {"event": "done", "kernels": len(done) - status.count("inlined"), "compiled": status.count("compiled"),
            "cached": status.count("cache"), "inlined": status.count("inlined"),
            "missing": [k.name for k, s in zip(done, status) if s == "missing"], "seconds": round(seconds, 3)}


class _Progress:
    """A tqdm bar over the kernels (counted every POLL_SECONDS while a stage runs), or JSON Lines events."""

    def __init__(self, as_json: bool, own: list[Kernel]):
        from tqdm import tqdm

        self.as_json, self.own = as_json, own
        self.bar = tqdm(total=len(own), unit="kernel", file=sys.stderr, dynamic_ncols=True,
                        disable=True if as_json else None)
        self.ready, self.stop = -1, threading.Event()
        self.poller = threading.Thread(target=self._poll, name="cllm-warmup-progress", daemon=True)

    def __enter__(self) -> _Progress:
        self.poller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.poller.join()
        self._count(final=True)

    def stage(self, stage: Stage) -> None:
        """A stage starts: its title on the bar, or a "stage" event."""
        self.bar.set_description(stage.title)
        self._emit({"event": "stage", "title": stage.title})

    def finish(self, done: list[Kernel], summary: dict) -> None:
        """One "kernel" event per kernel and the done event, or the bar closed with a one-line summary."""
        for kernel in done:
            self._emit({"event": "kernel", "name": kernel.name, "source": kernel.status(),
                        "signatures": len(kernel.signatures())})
        self._emit(summary)
        shown = not self.bar.disable
        self.bar.set_description("ready")
        self.bar.close()
        if shown:
            missing = f"; not compiled: {', '.join(summary['missing'])}" if summary["missing"] else ""
            print(f"{summary['kernels']} kernels ready ({summary['compiled']} compiled, {summary['cached']} from "
                  f"numba's cache) in {summary['seconds']:.1f} s{missing}", file=sys.stderr)

    def _poll(self) -> None:
        while not self.stop.wait(POLL_SECONDS):
            self._count()

    def _count(self, final: bool = False) -> None:
        """Count the kernels compiled so far (at the end, also those in numba's cache without a signature here)."""
        ready = sum(k.status() in ("compiled", "cache") if final else bool(_signatures(k)) for k in self.own)
        if ready != self.ready:
            self.ready = ready
            self.bar.update(ready - self.bar.n)
            self._emit({"event": "progress", "ready": ready, "kernels": len(self.own)})

    def _emit(self, event: dict) -> None:
        if self.as_json:
            sys.stdout.write(json.dumps(event) + "\n")
            sys.stdout.flush()


def _signatures(kernel: Kernel) -> list:
    """The kernel's signatures, or none while numba is adding one on another thread."""
    try:
        return kernel.signatures()
    except RuntimeError:  # its overloads changed while being listed
        return []


def start_in_background() -> subprocess.Popen | None:
    """Start `cllm warmup --background` unless this version's marker exists or one started less than
    RETRY_SECONDS ago; never waits for it. CLLM_BACKGROUND_WARMUP=0 turns it off (the tests do)."""
    if os.environ.get("CLLM_BACKGROUND_WARMUP", "1") == "0":
        return None
    marker = marker_path()
    started = marker.with_name(marker.name + ".started")
    try:
        if marker.exists() or (started.exists() and time.time() - started.stat().st_mtime < RETRY_SECONDS):
            return None
        started.parent.mkdir(parents=True, exist_ok=True)
        started.touch()
        command = [sys.executable, "-m", "cllm.server.cli", "warmup", "--background"]
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError:  # no cache folder to write to, or no interpreter: the kernels compile on first use instead
        return None
