"""The .cllm model file: a safetensors container, safe to load (no pickle), written atomically.

Layout: tensors "params" (flat float32 weights) and, for resuming, "adam_m" / "adam_v" (+ "adam_params", the
weights training continues from when "params" holds the best-validation ones); string metadata "format" = "cllm",
"format_version", "model_config", "tokenizer", "metadata" (training record, JSON), "optimizer_step" and "sha256"
(a JSON map of sha256 digests: one over the other metadata entries and one per tensor). Any safetensors tool can
open the file; cllm itself parses the header to give precise errors for a missing, truncated, corrupt, foreign or
newer-version file.

cllm writes the safetensors layout itself (8-byte little-endian header length, JSON header padded with spaces to a
multiple of 8, then the raw little-endian tensor bytes back to back) and streams each tensor straight from its
array: `safetensors.numpy.save` would first copy every tensor and then the whole file into memory, twice the size
of the weights and optimizer state at each checkpoint of a training run.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .config import ModelConfig, from_dict, to_dict
from .files import atomic_write

FORMAT = "cllm"
FORMAT_VERSION = 1
_MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit; a larger length prefix means "not this format"
_HEADER_ENTRIES = ("format", "format_version", "model_config", "tokenizer", "metadata", "optimizer_step")
_RETRAIN = "Retrain with `cllm train` (or restore the file from a backup)."
_CUT_SHORT = "it was not fully written or copied. " + _RETRAIN
_PASS_CLLM = "Pass a .cllm file written by `cllm train`."


class CheckpointError(Exception):
    """A model file cannot be written or used; the message says what is wrong and what to do."""


@dataclass
class Checkpoint:
    """Everything a .cllm file holds. `optimizer` is {"m": ndarray, "v": ndarray, "step": int} or None;
    training adds "params" (the current weights to resume from) when `params` holds the best weights instead."""

    model_config: ModelConfig
    tokenizer_json: str
    params: np.ndarray
    metadata: dict[str, Any]
    optimizer: dict[str, Any] | None = None


def weights_sha256(ckpt: Checkpoint) -> str:
    """Hex sha256 of the weights' bytes: identifies a trained model independently of its file."""
    return _sha256(ckpt.params)


def save_checkpoint(path: str | os.PathLike, ckpt: Checkpoint) -> None:
    """Write `ckpt` to `path` atomically: a crash leaves either the old file or the new one, never a mix."""
    path = Path(path)
    tensors = {"params": _flat_float32(ckpt.params, "params")}
    header = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "model_config": json.dumps(to_dict(ckpt.model_config)),
        "tokenizer": ckpt.tokenizer_json,
        "metadata": json.dumps(ckpt.metadata, default=_json_default),
    }
    if ckpt.optimizer is not None:
        tensors["adam_m"] = _flat_float32(ckpt.optimizer["m"], "optimizer m")
        tensors["adam_v"] = _flat_float32(ckpt.optimizer["v"], "optimizer v")
        if not tensors["adam_m"].size == tensors["adam_v"].size == tensors["params"].size:
            raise ValueError("optimizer state m and v must have as many values as params")
        header["optimizer_step"] = str(int(ckpt.optimizer["step"]))
        current = ckpt.optimizer.get("params")
        if current is not None and current is not ckpt.params:  # the current weights, when `params` holds the best ones
            tensors["adam_params"] = _flat_float32(current, "optimizer params")
            if tensors["adam_params"].size != tensors["params"].size:
                raise ValueError("optimizer params must have as many values as params")
    digests = {name: _sha256(array) for name, array in tensors.items()}
    digests["metadata"] = _header_digest(header)
    header["sha256"] = json.dumps(digests, sort_keys=True)
    prefix = _safetensors_prefix(tensors, header)

    def write(f: BinaryIO) -> None:
        f.write(prefix)
        for array in tensors.values():
            f.write(array.data)  # the array's own buffer: no copy

    try:
        atomic_write(path, write)
    except OSError as exc:
        raise CheckpointError(
            f"could not write model file {path}: {exc.strerror or exc}. Check free disk space and permissions."
        ) from exc


def _safetensors_prefix(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """Length prefix and JSON header of a safetensors file holding `tensors` (flat little-endian float32) in
    order, back to back, after it."""
    table: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for name, array in tensors.items():
        table[name] = {"dtype": "F32", "shape": [array.size], "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    header = json.dumps(table, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # as safetensors does: the tensor data starts 8-byte aligned
    return struct.pack("<Q", len(header)) + header


def load_checkpoint(path: str | os.PathLike, with_optimizer: bool = False) -> Checkpoint:
    """Read and verify a .cllm file. The optimizer state is read only when asked for (resuming)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"model file {path} does not exist. Train one with `cllm train PATH --out {path}`.")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a model file. Pass the .cllm file inside it.")
    try:
        with open(path, "rb") as f:
            return _read(f, path, with_optimizer)
    except OSError as exc:
        raise CheckpointError(f"cannot read model file {path}: {exc.strerror or exc}. Check its permissions.") from exc


def _read(f, path: Path, with_optimizer: bool) -> Checkpoint:
    """Parse, validate and checksum the file open as `f`."""
    size = os.fstat(f.fileno()).st_size
    entries, meta, data_start = _read_header(f, path, size)
    digests = _parse_json(meta.get("sha256", ""), path, "checksum table")
    if not isinstance(digests, dict):
        raise CheckpointError(f"{path} is corrupt: its checksum table is not a JSON object. {_RETRAIN}")
    if _header_digest({k: meta[k] for k in _HEADER_ENTRIES if k in meta}) != digests.get("metadata"):
        raise CheckpointError(f"{path} is corrupt: its metadata does not match the recorded checksum. {_RETRAIN}")
    try:
        config = from_dict(ModelConfig, _parse_json(meta["model_config"], path, "model config"))
        config.validate()
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} is corrupt: bad model config ({exc}). {_RETRAIN}") from exc
    names = ["params"]
    if with_optimizer and "adam_m" in entries:
        names += [name for name in ("adam_m", "adam_v", "adam_params") if name in entries]
    arrays = {name: _read_tensor(f, path, entries, name, data_start, digests) for name in names}
    optimizer = None
    if "adam_m" in arrays:
        optimizer = {"m": arrays["adam_m"], "v": arrays["adam_v"], "step": int(meta.get("optimizer_step", "0"))}
        if "adam_params" in arrays:
            optimizer["params"] = arrays["adam_params"]
    return Checkpoint(
        model_config=config,
        tokenizer_json=meta.get("tokenizer", ""),
        params=arrays["params"],
        metadata=_parse_json(meta.get("metadata", "{}"), path, "training metadata"),
        optimizer=optimizer,
    )


def _read_header(f, path: Path, size: int) -> tuple[dict[str, Any], dict[str, str], int]:
    """Tensor entries, string metadata and the offset of the tensor data; refuses foreign, newer or cut files."""
    prefix = f.read(9)
    if size < 8:
        raise CheckpointError(f"{path} is {'empty' if size == 0 else 'truncated'} ({size} bytes): {_CUT_SHORT}")
    (header_len,) = struct.unpack("<Q", prefix[:8])
    looks_like_header = prefix[8:9] == b"{"
    if not looks_like_header or header_len > _MAX_HEADER_BYTES:
        raise CheckpointError(f"{path} is not a cllm model file (unknown format). {_PASS_CLLM}")
    if 8 + header_len > size:
        raise CheckpointError(f"{path} is truncated ({size} bytes, its header alone needs {8 + header_len}): {_CUT_SHORT}")
    f.seek(8)
    try:
        header = json.loads(f.read(header_len))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is corrupt: its header is not valid JSON ({exc}). {_RETRAIN}") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} is corrupt: its header is not a JSON object. {_RETRAIN}")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not a cllm model (no \"format\": \"cllm\"). {_PASS_CLLM}")
    try:
        version = int(meta.get("format_version", ""))
    except (TypeError, ValueError):
        version_text = meta.get("format_version")
        raise CheckpointError(f"{path} is corrupt: format version {version_text!r} is not a number. {_RETRAIN}") from None
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} uses .cllm format version {version}, newer than this cllm understands ({FORMAT_VERSION}). "
            "Upgrade cllm (pip install -U cllm), or retrain the model with this version."
        )
    if version < 1:
        raise CheckpointError(f"{path} is corrupt: format version {version} does not exist. {_RETRAIN}")
    data_start = 8 + header_len
    try:
        data_end = data_start + max((int(e["data_offsets"][1]) for e in header.values()), default=0)
    except (TypeError, KeyError, IndexError, ValueError) as exc:
        raise CheckpointError(f"{path} is corrupt: bad tensor table ({exc}). {_RETRAIN}") from exc
    if data_end > size:
        raise CheckpointError(f"{path} is truncated ({size} bytes of {data_end}): {_CUT_SHORT}")
    if data_end < size:
        raise CheckpointError(f"{path} is corrupt: {size - data_end} unexpected bytes after the weights. {_RETRAIN}")
    return header, meta, data_start


def _read_tensor(
    f, path: Path, entries: dict[str, Any], name: str, data_start: int, digests: dict[str, str]
) -> np.ndarray:
    """One flat float32 tensor, checked against its recorded sha256."""
    entry = entries.get(name)
    if entry is None:
        raise CheckpointError(f"{path} is corrupt: tensor {name!r} is missing. {_RETRAIN}")
    try:
        begin, end = (int(x) for x in entry["data_offsets"])
        shape = entry.get("shape") or [0]
        well_formed = (entry.get("dtype") == "F32" and len(shape) == 1 and begin >= 0
                       and end - begin == 4 * int(shape[0]))
    except (TypeError, ValueError, KeyError, AttributeError):
        well_formed = False
    if not well_formed:
        raise CheckpointError(f"{path} is corrupt: tensor {name!r} has an unexpected layout ({entry}). {_RETRAIN}")
    f.seek(data_start + begin)
    raw = f.read(end - begin)
    if hashlib.sha256(raw).hexdigest() != digests.get(name):
        raise CheckpointError(
            f"{path} is corrupt: the bytes of {name!r} do not match their checksum (damaged on disk or in transfer). "
            + _RETRAIN
        )
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


def _parse_json(text: str, path: Path, what: str) -> Any:
    """json.loads with a CheckpointError naming the broken part."""
    try:
        return json.loads(text)
    except (TypeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is corrupt: its {what} is not valid JSON ({exc}). {_RETRAIN}") from exc


def _header_digest(header: dict[str, str]) -> str:
    """sha256 of the metadata entries that the checksum table covers (everything but the table itself)."""
    covered = {k: header[k] for k in _HEADER_ENTRIES if k in header}
    return hashlib.sha256(json.dumps(covered, sort_keys=True).encode()).hexdigest()


def _sha256(array: np.ndarray) -> str:
    """Hex sha256 of an array's little-endian float32 bytes."""
    return hashlib.sha256(np.ascontiguousarray(array, dtype="<f4").data).hexdigest()


def _flat_float32(array: np.ndarray, what: str) -> np.ndarray:
    """`array` as a contiguous 1-D little-endian float32 array (itself when it already is one, as in training),
    refusing anything else (a sign of a caller bug)."""
    array = np.asarray(array)
    if array.ndim != 1 or array.dtype != np.float32:
        raise ValueError(f"{what} must be a flat float32 array, got {array.dtype} with shape {array.shape}")
    return np.ascontiguousarray(array, dtype="<f4")


def _json_default(value: Any) -> Any:
    """Let numpy scalars and arrays in the training metadata serialise as plain JSON."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"training metadata holds a {type(value).__name__}, which cannot be stored as JSON")

