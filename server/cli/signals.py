"""How a long `cllm` job (train, pretrain) stops when asked: the first Ctrl-C or SIGTERM (what an editor's cancel
sends) sets a cancel event that engine/train/loop.py honours by saving a resumable model at the next step; a
second one stops at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def cancelled_by_signals() -> Iterator[threading.Event]:
    """An event that the first SIGINT or SIGTERM sets (stop after this step and keep the checkpoint); a second
    one raises KeyboardInterrupt (stop now). The previous handlers come back afterwards."""
    import signal

    cancel = threading.Event()

    def on_signal(*_) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, on_signal)
        except ValueError:  # not the main thread: the caller handles interruption
            pass
    try:
        yield cancel
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
