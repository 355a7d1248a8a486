"""Atomic file replacement, shared by everything that writes a file another process may be reading.

A write goes through a temporary file beside its target, named `.NAME.PID.RANDOM.tmp` after the writing
process: a writer killed mid-write (SIGKILL, power loss) cannot remove it, and the pid lets a later writer or
reader of NAME tell such leftovers of dead processes from the files of writers still at work.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from glob import escape as glob_escape
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .errors import CllmError
from .faults import fault_point

_TMP_SUFFIX = ".tmp"
_KINDS = {stat.S_IFDIR: "a folder", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket"}


class OutputPathError(CllmError):
    """A path cllm was asked to write names something that is not a regular file: nothing is written."""


def check_output_path(path: str | os.PathLike) -> Path:
    """The write policy of every file cllm writes: `path` must not exist or be a regular file (a device, a FIFO
    or a folder of that name is never replaced). Returns it as a Path; OutputPathError says what it is."""
    path = Path(path)
    try:
        kind = stat.S_IFMT(os.stat(path).st_mode)
    except FileNotFoundError:
        return path
    except OSError as exc:
        raise OutputPathError(f"cannot write {path}: {exc.strerror or exc}") from None
    if kind != stat.S_IFREG:
        raise OutputPathError(f"refusing to write {path}: it is {_KINDS.get(kind, 'not a regular file')}, "
                              "not a regular file; give the path of a file to create or replace")
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (see `atomic_write`)."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Let `write(f)` fill a temporary file beside `path`, fsync it, then rename it over `path`.

    Readers see the old file or the complete new one; on any failure (KeyboardInterrupt too) the temporary is removed
    and the old file kept. The callback lets large files be streamed; stale temporaries of `path` are removed first.
    OutputPathError when `path` is not a regular file (check_output_path)."""
    path = check_output_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=_TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            fault_point("atomic-write-opened")
            write(f)
            fault_point("atomic-write-filled")
            f.flush()
            os.fsync(f.fileno())
        fault_point("atomic-write-synced")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fault_point("atomic-write-renamed")
    with contextlib.suppress(OSError):  # directory fsync is not possible everywhere (e.g. Windows)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporaries that dead writers of `path` left behind (their pid no longer runs) and return them;
    live writers' files and undeletable ones stay. Without POSIX signals nothing is removed."""
    path = Path(path)
    if os.name != "posix" or not path.parent.is_dir():
        return []
    removed = []
    for tmp in path.parent.glob(f".{glob_escape(path.name)}.*{_TMP_SUFFIX}"):
        pid = tmp.name[len(path.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and int(pid) > 0 and not _running(int(pid)):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def _running(pid: int) -> bool:
    """True when a process `pid` exists (even one of another user, which signal 0 may not reach)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True
