"""Fail points: fault-injection tests make the trainer die (or freeze) at a named point of its work.

`CLLM_FAULT=NAME:N` makes the process SIGKILL itself at its Nth arrival at `fault_point(NAME)`, as the OOM killer
or a power cut would: no handler, no cleanup, no flush. `CLLM_FAULT=NAME:N:stop` SIGSTOPs it there instead, so a
test can change the world under it (delete the files being scanned) and let it go on with SIGCONT. The same
technique as SQLite's and etcd's failpoints: deterministic crashes instead of racing a timer against a process.

Without the variable (always, outside tests) a fail point is one environment lookup. POINTS lists them all.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter

from .errors import CllmError

FAULT_ENV = "CLLM_FAULT"
POINTS = {
    "scan-listed": "a folder's entries are listed, its files not yet read (engine/data/corpus.py)",
    "scanned": "the workspace scan is done (engine/train/loop.py)",
    "tokenizer-trained": "the tokenizer is trained, nothing encoded yet",
    "tokenized": "the training and held-out streams are encoded",
    "step": "an optimizer step has updated the weights",
    "validated": "an epoch's validation is done, its checkpoint not yet written",
    "mixture-fit": "the held-out files are scored, the mixture weights not yet fitted (engine/eval/heldout.py)",
    "checkpoint-write": "a model file is partly written: before each of its tensors (engine/model/checkpoint.py)",
    "atomic-write-opened": "an atomic write's temporary file exists, still empty (engine/files.py)",
    "atomic-write-filled": "the temporary file holds all its bytes, not yet flushed or synced",
    "atomic-write-synced": "the temporary file is on disk, not yet renamed over its target",
    "atomic-write-renamed": "the target is replaced, its folder not yet synced",
}
_ACTIONS = {"kill": "SIGKILL", "stop": "SIGSTOP"}
_arrivals: Counter[str] = Counter()
_arrivals_lock = threading.Lock()


class FaultSpecError(CllmError, ValueError):
    """CLLM_FAULT is set but does not name a fail point, an arrival count and an action."""


def fault_point(name: str) -> None:
    """Kill or stop this process here when CLLM_FAULT names this point and this is the chosen arrival."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    point, count, action = parse_fault(spec)
    if point != name:
        return
    with _arrivals_lock:
        _arrivals[name] += 1
        arrival = _arrivals[name]
    if arrival == count:
        os.kill(os.getpid(), getattr(signal, _ACTIONS[action]))


def parse_fault(spec: str) -> tuple[str, int, str]:
    """(point, arrival, action) of a CLLM_FAULT value "NAME:N" or "NAME:N:ACTION"; FaultSpecError otherwise."""
    parts = spec.split(":")
    count = parts[1] if len(parts) in (2, 3) else ""
    action = parts[2] if len(parts) == 3 else "kill"
    if parts[0] not in POINTS or not (count.isascii() and count.isdigit() and int(count) >= 1) or action not in _ACTIONS:
        raise FaultSpecError(
            f"{FAULT_ENV}={spec!r} is not NAME:N[:stop] with N >= 1 and NAME one of {', '.join(POINTS)}"
        )
    return parts[0], int(count), action
