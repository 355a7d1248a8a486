"""The base model shipped inside the package, and the choice of the base a workspace starts from.

The shipped base (shipped/base.cllm) holds weights (float16) and a tokenizer trained by `make base` on the pinned,
permissively licensed C corpus listed in shipped/MANIFEST.md (licences in shipped/NOTICE), and no optimizer state.
It serves when neither the workspace nor the user has a model of their own, and is what `cllm train` fine-tunes
when the user has no base from `cllm pretrain`.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from ..errors import CllmError
from ..events import TrainingMetadata
from ..model.checkpoint import load_checkpoint, save_checkpoint
from ..paths import default_base_path

SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"
SHIPPED_BASE = SHIPPED_DIR / "base.cllm"
SHIPPED_BASE_ENV = "CLLM_SHIPPED_BASE"  # another file to use as the shipped base; empty: none (packagers, tests)


def shipped_base() -> Path | None:
    """The base model shipped in the package (or named by CLLM_SHIPPED_BASE), None when there is none."""
    chosen = os.environ.get(SHIPPED_BASE_ENV)
    path = SHIPPED_BASE if chosen is None else Path(chosen).expanduser() if chosen else None
    return path if path is not None and path.is_file() else None


def usable_base(path: Path) -> bool:
    """Whether `path` is a model file that loads (a damaged user base gives way to the shipped one)."""
    try:
        load_checkpoint(path)
    except (CllmError, OSError):
        return False
    return True


def base_candidates(user_base: Path | None = None) -> list[Path]:
    """The bases there are, best first: the user's (`cllm pretrain`, by default in the user's cache folder) when its
    file exists, then the shipped one. A server loads the first that loads (each loaded once)."""
    user_base = user_base or default_base_path()
    shipped = shipped_base()
    return [path for path in (user_base if user_base.is_file() else None, shipped) if path is not None]


def best_base(user_base: Path | None = None) -> Path | None:
    """The base a workspace without a model of its own starts from: the user's when it loads, else the shipped
    one; None when there is neither."""
    candidates = base_candidates(user_base)
    shipped = shipped_base()
    return next((path for path in candidates if path == shipped or usable_base(path)), None)


def base_kind(path: Path | None) -> str | None:
    """"shipped" for the package's base, "user" for any other base file, None without one."""
    if path is None:
        return None
    shipped = shipped_base()
    return "shipped" if shipped is not None and Path(path).resolve() == shipped.resolve() else "user"


def export_shipped(source: str | os.PathLike, dest: str | os.PathLike = SHIPPED_BASE) -> Path:
    """Write the base at `source` (a `cllm pretrain` output) as a shipped base at `dest`: its weights as float16,
    its tokenizer and training record, without optimizer state or resume position."""
    ckpt = load_checkpoint(source)
    meta = TrainingMetadata.from_json(ckpt.metadata)
    ckpt.metadata = replace(meta, resume=None).to_json()
    ckpt.optimizer = None
    save_checkpoint(dest, ckpt, half=True)
    return Path(dest)
