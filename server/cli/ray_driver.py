"""`cllm train --ray`: the training (Ray's driver) runs in a child process that `cllm train` watches.

Ray ends a driver process by itself when the Ray node it is connected to goes away (the head node lost while
`cllm train` runs on it): a quick exit, with no Python exception, nothing on stderr and no clean-up. So with --ray,
`cllm train` keeps the workspace's training lock and runs the training as `python -m cllm.server.cli.ray_child
STATUS_FILE ARGS...` (server/cli/ray_child.py), which is `cllm ARGS...` writing its exit status to STATUS_FILE when it
ends by itself.
A child that ends without writing it was ended by Ray: `cllm train` then says so in one line. Either way the last
checkpoint is intact: checkpoints are written atomically.

Signals: a SIGTERM to `cllm train` is passed on (the child's first one stops the run after the step, as without
Ray); a terminal's SIGINT reaches the child directly (same process group), so this process ignores it. A child
whose parent is gone stops its run as on SIGTERM, since the training lock went with the parent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from cllm.engine.paths import LOCK_HELD_ENV

CHILD_ENV = "CLLM_RAY_DRIVER"  # set in the child: its `cllm train` trains itself instead of starting another child


def run_child(argv: list[str], lock_file: str | None) -> int | None:
    """Run `cllm ARGV...` (a `cllm train --ray` command line) in a child, handing over the training lock held here
    as `lock_file` (None: held by this process's parent, which says so in the environment the child inherits).
    Returns the child's exit status, or None when it did not end by itself (Ray or a signal ended it)."""
    env = {**os.environ, CHILD_ENV: "1"}
    if lock_file is not None:
        env[LOCK_HELD_ENV] = lock_file
    with tempfile.TemporaryDirectory(prefix="cllm-ray-") as folder:
        status = Path(folder) / "status"
        child = subprocess.Popen([sys.executable, "-m", "cllm.server.cli.ray_child", str(status), *argv], env=env)
        previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM)),
                    signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN)}
        try:
            child.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        try:
            return int(status.read_text())
        except (OSError, ValueError):
            return None
