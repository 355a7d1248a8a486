"""The child process of `cllm train --ray` (server/cli/ray_driver.py): `cllm ARGS...`, its exit status written to a file.

    python -m cllm.server.cli.ray_child STATUS_FILE ARGS...

Ray may end this process without warning (the head node lost); the status file missing afterwards is how the
parent tells. A child whose parent is gone stops its run as on SIGTERM, since the training lock went with the parent.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

from . import main as cli_main

PARENT_POLL = 1.0  # seconds between the child's checks that its parent is alive


def _stop_when_orphaned(parent: int) -> None:
    """SIGTERM to this process (stop after the step, keep the checkpoint) once `parent` is no longer its parent."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL)
    os.kill(os.getpid(), signal.SIGTERM)


def main() -> None:
    """`python -m cllm.server.cli.ray_child STATUS_FILE ARGS...`: `cllm ARGS...`, its exit status written to
    STATUS_FILE."""
    status, *argv = sys.argv[1:]
    threading.Thread(target=_stop_when_orphaned, args=(os.getppid(),), daemon=True).start()
    code = cli_main(argv)
    Path(status).write_text(str(code))
    sys.exit(code)


if __name__ == "__main__":
    main()
