"""Where a workspace's model lives, and the lock that keeps two trainings of one workspace apart.

Models live under the user's cache folder (platformdirs), one folder per workspace named after the workspace's
basename plus a short hash of its absolute path, so two checkouts called "src" never share a model.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from pathlib import Path

import filelock
import platformdirs

from .errors import CllmError

APP_NAME = "cllm"
MODEL_FILE = "model.cllm"
BASE_FILE = "base.cllm"
LOCK_FILE = "train.lock"
LOCK_HELD_ENV = "CLLM_TRAIN_LOCK_HELD"


class WorkspaceBusy(CllmError, RuntimeError):
    """Another process is training this workspace."""


def model_dir(workspace: str | os.PathLike) -> Path:
    """The workspace's model folder: <user cache>/cllm/models/<basename>-<12 hex of sha256(abs path)>."""
    root = Path(workspace).expanduser().resolve()
    digest = hashlib.sha256(str(root).encode("utf-8")).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", root.name) or "root"
    return Path(platformdirs.user_cache_dir(APP_NAME)) / "models" / f"{name}-{digest}"


def default_model_path(workspace: str | os.PathLike) -> Path:
    """The workspace's model file inside its model folder."""
    return model_dir(workspace) / MODEL_FILE


def default_base_path() -> Path:
    """Where `cllm pretrain` writes the base model and where training and the servers look for it by default:
    <user cache>/cllm/base.cllm."""
    return Path(platformdirs.user_cache_dir(APP_NAME)) / BASE_FILE


def training_lock(workspace: str | os.PathLike) -> filelock.FileLock:
    """An exclusive lock on the workspace's training; acquire it with `acquire_training_lock`."""
    folder = model_dir(workspace)
    folder.mkdir(parents=True, exist_ok=True)
    return filelock.FileLock(str(folder / LOCK_FILE), thread_local=False)  # the LSP releases it on another thread


def acquire_training_lock(workspace: str | os.PathLike) -> filelock.BaseFileLock | None:
    """Take the workspace's training lock at once or raise WorkspaceBusy naming the lock file; None when the
    parent process (the server's Workspace) already holds it for us and says so in LOCK_HELD_ENV."""
    lock = training_lock(workspace)
    if os.environ.get(LOCK_HELD_ENV) == lock.lock_file:
        return None
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        raise WorkspaceBusy(
            f"another training of {Path(workspace).resolve()} is already running (lock {lock.lock_file}); "
            "wait for it to finish or cancel it"
        ) from None
    return lock


def release_training_lock(lock: filelock.BaseFileLock) -> None:
    """Release the training lock; when its model folder holds nothing else (a run that wrote no model there),
    remove the lock file and the folder, so that the run leaves nothing in the cache."""
    lock.release()
    folder = Path(lock.lock_file).parent
    with contextlib.suppress(OSError):
        if [entry.name for entry in folder.iterdir()] == [LOCK_FILE]:
            os.unlink(lock.lock_file)
            folder.rmdir()
