"""The compressor baselines that `cllm eval` scores on the same files as the model: xz, zpaq and PPMd, each
conditioned on the training files.

They answer "what could a model learn from the training files alone?": each held-out file is compressed after the
training bytes on its own, as the model scores it. xz is Python's lzma; zpaq and 7z are external programs, used
where installed. The Kneser-Ney 5-gram baseline lives in engine/complete/ngram.py (the mixture uses it too).
See docs/decisions.md, "Compressor baselines".
"""

from __future__ import annotations

import lzma
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

_XZ_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "dict_size": 1 << 26}]
_TOOL_TIMEOUT_S = 600
MAX_INPUT_BYTES = 400_000_000  # the most bytes one compressor reads for a baseline; more files than that allows are grouped
MAX_PARALLEL_RUNS = 4  # compressor runs at once: each xz -9e run (64 MiB dictionary) holds about 670 MiB


class TrainBits:
    """The training bytes' compressed size per compressor method (zpaq's model; "" for xz and PPMd), computed once
    however many held-out files and threads ask."""

    def __init__(self) -> None:
        self._sizes: dict[str, int] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, method: str, compute: Callable[[], int]) -> int:
        """The size for `method`, from `compute()` the first time it is asked for."""
        with self._guard:
            lock = self._locks.setdefault(method, threading.Lock())
        with lock:
            if method not in self._sizes:
                self._sizes[method] = compute()
            return self._sizes[method]


def xz_bits(data: bytes) -> int:
    """Size in bits of `data` compressed by raw LZMA2 (xz -9e, 64 MiB dictionary, no container header)."""
    return 8 * len(lzma.compress(data, format=lzma.FORMAT_RAW, filters=_XZ_FILTERS))


def _run_archiver(argv: list[str], archive: str, data: bytes, stdin: bool = False) -> tuple[int, str]:
    """(size in bits of the archive `archive` that `argv` writes for `data`, its standard output). `data` is the
    file "data" in a fresh folder (the same overhead for every input), or with `stdin` on standard input (so that
    the program cannot size its model to the input). RuntimeError with the program's last message on failure."""
    with tempfile.TemporaryDirectory(prefix="cllm-baseline-") as tmp:
        if not stdin:
            Path(tmp, "data").write_bytes(data)
        done = subprocess.run(argv, cwd=tmp, input=data if stdin else None, capture_output=True,
                              timeout=_TOOL_TIMEOUT_S)
        written = Path(tmp, archive)
        if done.returncode != 0 or not written.is_file():
            lines = (done.stderr or done.stdout).decode("utf-8", "replace").strip().splitlines()
            raise RuntimeError(f"{argv[0]} failed: {lines[-1] if lines else f'exit status {done.returncode}'}")
        return 8 * written.stat().st_size, done.stdout.decode("utf-8", "replace")


_ZPAQ_METHOD = re.compile(r"-method (\d+(?:,\d+)*)")


def _zpaq(data: bytes, method: str) -> tuple[int, str]:
    """(zpaq_bits, the full method zpaq used for the first block, e.g. "56,178,1": level, block size, then what
    its analysis of the data chose)."""
    bits, output = _run_archiver(["zpaq", "add", "a.zpaq", "data", f"-m{method}", "-t1"], "a.zpaq", data)
    found = _ZPAQ_METHOD.findall(output.split("+ data", 1)[-1])
    if not found:
        raise RuntimeError("zpaq failed: its output names no compression method")
    return bits, ",".join(found[0].split(",")[:3])  # the first three: zpaq appends its own analysis after given ones


def zpaq_bits(data: bytes, method: str = "5") -> int:
    """Size in bits of a zpaq archive of `data` (-m5 by default: context mixing, zpaq's strongest method; one
    thread, so the size does not depend on the machine's cores)."""
    return _zpaq(data, method)[0]


def zpaq_conditional_bits_per_byte(train: bytes, heldout: bytes, train_bits: TrainBits | None = None) -> float:
    """conditional_bits_per_byte of zpaq -m5, with the same model for both sizes: the one zpaq picks for
    train + heldout (see docs/decisions.md, "Compressor baselines"). `train_bits` keeps the training bytes' size
    per model across held-out files."""
    if not heldout:
        raise ValueError("no held-out bytes to compress")
    both, method = _zpaq(train + heldout, "5")
    sized = train_bits or TrainBits()
    return (both - (sized.get(method, lambda: zpaq_bits(train, method)) if train else 0)) / len(heldout)


def ppmd_bits(data: bytes) -> int:
    """Size in bits of a 7-Zip archive of `data` compressed by PPMd of order 16 with 192 MB of model memory
    (7-Zip's own for -mx9), read from standard input so that 7-Zip keeps that memory for every input size
    (see docs/decisions.md, "Compressor baselines")."""
    return _run_archiver(["7z", "a", "-bd", "-m0=PPMd:o=16:mem=192m", "-sidata", "a.7z"], "a.7z", data, stdin=True)[0]


def conditional_bits_per_byte(bits: Callable[[bytes], int], train: bytes, heldout: bytes,
                              train_bits: TrainBits | None = None) -> float:
    """Bits per held-out byte that a compressor (`bits`: its output size for some bytes) spends once it has seen
    `train`: (bits(train+heldout) - bits(train)) / len(heldout), bits(train) taken from `train_bits` when given."""
    if not heldout:
        raise ValueError("no held-out bytes to compress")
    sized = train_bits or TrainBits()
    return (bits(train + heldout) - (sized.get("", lambda: bits(train)) if train else 0)) / len(heldout)


def xz_conditional_bits_per_byte(train: bytes, heldout: bytes, train_bits: TrainBits | None = None) -> float:
    """conditional_bits_per_byte of xz. Its dictionary (64 MiB) covers the training bytes of any workspace we train
    on, so every held-out span that also occurs in the training files costs only a back-reference."""
    return conditional_bits_per_byte(xz_bits, train, heldout, train_bits)


def ppmd_conditional_bits_per_byte(train: bytes, heldout: bytes, train_bits: TrainBits | None = None) -> float:
    """conditional_bits_per_byte of PPMd order 16."""
    return conditional_bits_per_byte(ppmd_bits, train, heldout, train_bits)


Conditional = Callable[[bytes, bytes, TrainBits], float]  # (train, heldout, train_bits) -> bits per held-out byte

COMPRESSORS: dict[str, tuple[str, Conditional]] = {
    "xz": ("", xz_conditional_bits_per_byte),
    "zpaq": ("zpaq", zpaq_conditional_bits_per_byte),
    "ppmd": ("7z", ppmd_conditional_bits_per_byte),
}  # baseline name -> (the program it needs on PATH, "" for none; its bits per held-out byte given the training bytes)


def file_groups(sizes: Sequence[int], train_bytes: int, max_input: int = MAX_INPUT_BYTES) -> list[range]:
    """The held-out files (by index) each compressor run takes: one per run, or consecutive files grouped so that
    no run reads more than `max_input` bytes (every run reads the training bytes again)."""
    n = len(sizes)
    runs = n if train_bytes == 0 else min(n, max(1, (max_input - sum(sizes)) // train_bytes))
    edges = [round(i * n / runs) for i in range(runs + 1)]
    return [range(a, b) for a, b in zip(edges, edges[1:]) if b > a]


def _grouped_rate(conditional: Conditional, train: bytes, parts: list[bytes]) -> float:
    """Bits per byte of `parts`, each conditioned on `train` alone, on up to MAX_PARALLEL_RUNS threads (the
    compressors release the GIL); the training bytes are compressed once per method, for this call only."""
    train_bits = TrainBits()
    with ThreadPoolExecutor(max_workers=min(os.cpu_count() or 1, MAX_PARALLEL_RUNS)) as pool:
        bits = list(pool.map(lambda part: conditional(train, part, train_bits) * len(part), parts))
    return sum(bits) / sum(map(len, parts))


def compressor_baselines(train: bytes, heldout: Sequence[bytes]) -> dict[str, dict[str, float | int | str | None]]:
    """{name: {"bits_per_byte", "runs"}} of each compressor on `heldout`, each file conditioned on `train` alone;
    bits_per_byte None and a "note" where the program is missing or fails."""
    heldout = [part for part in heldout if part]
    if not heldout:
        raise ValueError("no held-out bytes to compress")
    groups = file_groups([len(part) for part in heldout], len(train))
    parts = [b"".join(heldout[i] for i in group) for group in groups]
    out: dict[str, dict[str, float | int | str | None]] = {}
    for name, (program, conditional) in COMPRESSORS.items():
        if program and shutil.which(program) is None:
            out[name] = {"bits_per_byte": None, "note": f"{program} not installed"}
            continue
        try:
            out[name] = {"bits_per_byte": _grouped_rate(conditional, train, parts), "runs": len(parts)}
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            out[name] = {"bits_per_byte": None, "note": str(exc)}
        except (MemoryError, lzma.LZMAError) as exc:  # xz runs in this process
            out[name] = {"bits_per_byte": None, "note": f"{name} failed: {str(exc) or 'out of memory'}"}
    return out
