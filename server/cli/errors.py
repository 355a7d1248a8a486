"""How a `cllm` command ends when it fails: one table from exception to exit status and message, used by `main`
for every subcommand, so that the handlers raise and none keeps its own ladder of `except` clauses.

Exit statuses: 2 for a command line that asks for something impossible (argparse's own status), 1 for a
failure while running, 130 for an interruption, 141 (quietly) for a reader that closed stdout.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from cllm.engine.errors import CllmError

SIGPIPE_STATUS = 128 + 13  # what a shell reports for a Unix tool killed by SIGPIPE
INTERRUPTED_STATUS = 128 + 2  # ... and for one stopped by Ctrl-C (SIGINT)


class CommandError(Exception):
    """A failure a handler has put into words itself, with the exit status it ends in."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class BadInput(CommandError):
    """The command line, or a file or folder it names, is wrong: exit status 2."""

    def __init__(self, message: str):
        super().__init__(message, 2)


def _os_error(exc: OSError) -> str:
    return f"{exc.strerror or exc}: {exc.filename or ''} (check free disk space and permissions)"


# (exception type as "module:Class", exit status, message from the exception; None: end quietly), first match
# wins. Types are named, not imported: the engine modules holding them are slow to import, and an exception
# whose module was never imported cannot have been raised (see `_is`).
_TABLE: tuple[tuple[str, int, Callable[[BaseException], str] | None], ...] = (
    ("builtins:BrokenPipeError", SIGPIPE_STATUS, None),  # `cllm info MODEL | head`: the reader has what it wanted
    ("cllm.engine.train.loop:TrainCancelled", INTERRUPTED_STATUS, str),
    ("builtins:KeyboardInterrupt", INTERRUPTED_STATUS, lambda exc: "interrupted"),
    ("cllm.engine.train.spheres:SphereError", 1, lambda exc: f"{exc} (the last checkpoint, if any, is intact)"),
    ("cllm.engine.train.loop:TrainError", 2, str),  # settings that cannot train: the command line's to change
    ("cllm.engine.errors:CllmError", 1, str),
    ("builtins:MemoryError", 1, lambda exc: "out of memory: try a smaller --batch-size, --seq-len or model"),
    ("builtins:OSError", 1, _os_error),
)


def _is(exc: BaseException, name: str) -> bool:
    """Whether `exc` is an instance of the type named "module:Class" (False when that module is not loaded)."""
    module, _, cls = name.partition(":")
    kind = getattr(sys.modules.get(module), cls, None)
    return kind is not None and isinstance(exc, kind)


def outcome(exc: BaseException) -> tuple[int, str | None] | None:
    """The exit status and message (None: say nothing) a command ends in after `exc`; None for an exception the
    table does not know, which is a bug to show with its traceback. A handler's CommandError has its own."""
    if isinstance(exc, CommandError):
        return exc.status, str(exc)
    for name, status, message in _TABLE:
        if _is(exc, name):
            return status, None if message is None else message(exc)
    return None


@contextmanager
def checking_input() -> Iterator[None]:
    """Errors raised inside come from checking the command line (a bad value, a file it names missing, busy or
    unreadable): they end in exit status 2 as BadInput. A cluster refusing the token (ClusterAuthError) is not
    the command line's fault and keeps its own row."""
    try:
        yield
    except (ValueError, CllmError, OSError) as exc:
        if _is(exc, "cllm.engine.train.cluster:ClusterAuthError"):
            raise
        raise BadInput(str(exc)) from exc


def report(command: str, message: str, events: bool) -> None:
    """The one line on stderr a failed command ends with; with `events` (a training command's --json) also a
    "failed" event on stdout, the last of its JSON Lines."""
    if events:
        from cllm.engine.events import FailedEvent

        print(json.dumps(FailedEvent(message=message).to_json()), flush=True)
    print(f"cllm {command}: error: {message}", file=sys.stderr)
