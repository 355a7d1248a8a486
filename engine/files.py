"""Atomic file replacement, shared by everything that writes a file another process may be reading."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (see `atomic_write`)."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Let `write(f)` fill a temporary file beside `path`, fsync it, then rename it over `path`.

    Readers see either the old file or the complete new one, never a mix; on any failure (including
    KeyboardInterrupt) the temporary file is removed and the old file is left untouched. Writing through a
    callback lets large files be streamed piece by piece instead of first assembled in memory.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # directory fsync is not possible everywhere (e.g. Windows)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
