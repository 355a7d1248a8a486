"""The compressor baselines that `cllm eval` scores on the same files as the model: xz, zpaq and PPMd, each
conditioned on the training files.

They answer "what could a model learn from the training files alone?". Each compressor may copy any span of the
training bytes, which is a strong bar on code (identifiers and whole lines repeat across files); zpaq -m5 (context
mixing) and PPMd order 16 (7-Zip's) also predict byte by byte from long contexts, the bar for near-repeats. xz is
Python's own lzma; zpaq and 7z are external programs (Debian's `zpaq` and `p7zip-full`), measured only where they are
installed. The other baseline, the Kneser-Ney 5-gram, lives in engine/ngram.py because the completion mixture uses it
too.
"""

from __future__ import annotations

import lzma
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

_XZ_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "dict_size": 1 << 26}]
_TOOL_TIMEOUT_S = 600


def xz_bits(data: bytes) -> int:
    """Size in bits of `data` compressed by raw LZMA2 (xz -9e, 64 MiB dictionary, no container header)."""
    return 8 * len(lzma.compress(data, format=lzma.FORMAT_RAW, filters=_XZ_FILTERS))


def _archive_bits(argv: list[str], archive: str, data: bytes) -> int:
    """Size in bits of the archive file `archive` that the program run as `argv` writes for `data`, given as the
    file "data" in a fresh folder (so the archive's own overhead is the same for every input); RuntimeError with
    the program's last message when it fails."""
    with tempfile.TemporaryDirectory(prefix="cllm-baseline-") as tmp:
        Path(tmp, "data").write_bytes(data)
        done = subprocess.run(argv, cwd=tmp, capture_output=True, timeout=_TOOL_TIMEOUT_S)
        written = Path(tmp, archive)
        if done.returncode != 0 or not written.is_file():
            lines = (done.stderr or done.stdout).decode("utf-8", "replace").strip().splitlines()
            raise RuntimeError(f"{argv[0]} failed: {lines[-1] if lines else f'exit status {done.returncode}'}")
        return 8 * written.stat().st_size


def zpaq_bits(data: bytes) -> int:
    """Size in bits of a zpaq -m5 archive of `data` (context mixing, zpaq's strongest method; one thread, so the
    size does not depend on the machine's cores)."""
    return _archive_bits(["zpaq", "add", "a.zpaq", "data", "-m5", "-t1"], "a.zpaq", data)


def ppmd_bits(data: bytes) -> int:
    """Size in bits of a 7-Zip archive of `data` compressed by PPMd of order 16 (`7z a -m0=PPMd:o=16`)."""
    return _archive_bits(["7z", "a", "-bd", "-m0=PPMd:o=16", "a.7z", "data"], "a.7z", data)


COMPRESSORS: dict[str, tuple[str, Callable[[bytes], int]]] = {
    "xz": ("", xz_bits),
    "zpaq": ("zpaq", zpaq_bits),
    "ppmd": ("7z", ppmd_bits),
}  # baseline name -> (the program it needs on PATH, "" for none; its size in bits of some bytes)


def conditional_bits_per_byte(bits: Callable[[bytes], int], train: bytes, heldout: bytes) -> float:
    """Bits per held-out byte that a compressor (`bits`: its output size for some bytes) spends once it has seen
    `train`: (bits(train+heldout) - bits(train)) / len(heldout)."""
    if not heldout:
        raise ValueError("no held-out bytes to compress")
    return (bits(train + heldout) - (bits(train) if train else 0)) / len(heldout)


def xz_conditional_bits_per_byte(train: bytes, heldout: bytes) -> float:
    """conditional_bits_per_byte of xz. Its dictionary (64 MiB) covers the training bytes of any workspace we train
    on, so every held-out span that also occurs in the training files costs only a back-reference."""
    return conditional_bits_per_byte(xz_bits, train, heldout)


def compressor_baselines(train: bytes, heldout: bytes) -> dict[str, dict[str, float | str | None]]:
    """Each compressor of COMPRESSORS conditioned on `train`: {name: {"bits_per_byte": ...}}, with bits_per_byte
    None and a "note" saying why where its program is not installed or fails."""
    out: dict[str, dict[str, float | str | None]] = {}
    for name, (program, bits) in COMPRESSORS.items():
        if program and shutil.which(program) is None:
            out[name] = {"bits_per_byte": None, "note": f"{program} not installed"}
            continue
        try:
            out[name] = {"bits_per_byte": conditional_bits_per_byte(bits, train, heldout)}
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            out[name] = {"bits_per_byte": None, "note": str(exc)}
    return out
