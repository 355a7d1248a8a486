"""The .cllm model file: a safetensors container, safe to load (no pickle), written atomically.

Tensors "params" and, for resuming, the optimizer's "adam_m" / "adam_v" (+ "adam_params"); string metadata for the
format, the model config, the tokenizer, the training record (events.TrainingMetadata) and sha256 digests. Any
safetensors tool opens it; cllm parses the header itself to say precisely what is wrong with a bad file, and writes
the layout itself, streaming each tensor from its array, because `safetensors.numpy.save` holds two copies of the
weights and optimizer state in memory at every checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..config import ModelConfig, to_dict
from ..errors import CllmError
from ..events import TrainingMetadata, config_from_json
from ..faults import fault_point
from ..files import atomic_write, remove_stale_temporaries
from ..jsontext import json_depth

FORMAT = "cllm"
FORMAT_VERSION = 1
_MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit; a larger length prefix means "not this format"
_HEADER_ENTRIES = ("format", "format_version", "model_config", "tokenizer", "metadata", "optimizer_step")
_REQUIRED_ENTRIES = ("model_config", "tokenizer", "metadata", "sha256")
# cllm's own JSON nests at most 5 levels (the tokenizer); far deeper text is damage, or an attack on the parser,
# which recurses once per level.
_MAX_JSON_DEPTH = 64
_DTYPES = {"F32": "<f4", "F16": "<f2"}  # safetensors dtype -> numpy: float16 only for the weights of a shipped base
_SPECIAL_FILES = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
                  stat.S_IFBLK: "a block device"}
_RETRAIN = "Retrain with `cllm train` (or restore the file from a backup)."
_CUT_SHORT = "it was not fully written or copied. " + _RETRAIN
_PASS_CLLM = "Pass a .cllm file written by `cllm train`."


class CheckpointError(CllmError):
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
    return params_sha256(ckpt.params)


def save_checkpoint(path: str | os.PathLike, ckpt: Checkpoint, half: bool = False) -> None:
    """Write `ckpt` to `path` atomically: a crash leaves either the old file or the new one, never a mix.
    `half` stores the weights as float16 (half the size: the base shipped in the package), which needs a
    checkpoint without optimizer state; loading turns them back into float32."""
    path = Path(path)
    tensors = {"params": _flat_float32(ckpt.params, "params")}
    if half:
        if ckpt.optimizer is not None:
            raise ValueError("float16 weights are for serving: save without the optimizer state")
        tensors["params"] = tensors["params"].astype("<f2")
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
    digests = {name: hashlib.sha256(array.data).hexdigest() for name, array in tensors.items()}
    digests["metadata"] = _header_digest(header)
    header["sha256"] = json.dumps(digests, sort_keys=True)
    prefix = _safetensors_prefix(tensors, header)

    def write(f: BinaryIO) -> None:
        f.write(prefix)
        for array in tensors.values():
            fault_point("checkpoint-write")
            f.write(array.data)  # the array's own buffer: no copy

    try:
        atomic_write(path, write)
    except OSError as exc:
        raise CheckpointError(
            f"could not write model file {path}: {exc.strerror or exc}. Check free disk space and permissions."
        ) from exc


def _safetensors_prefix(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """Length prefix and JSON header of a safetensors file holding `tensors` (flat little-endian float32, or
    float16 weights) in order, back to back, after it."""
    table: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for name, array in tensors.items():
        dtype = "F16" if array.dtype == np.float16 else "F32"
        table[name] = {"dtype": dtype, "shape": [array.size], "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    header = json.dumps(table, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # as safetensors does: the tensor data starts 8-byte aligned
    return struct.pack("<Q", len(header)) + header


def load_checkpoint(path: str | os.PathLike, with_optimizer: bool = False) -> Checkpoint:
    """Read and verify a .cllm file. The optimizer state is read only when asked for (resuming).

    Every entry of the header and the training metadata is checked against the layout cllm writes before
    anything uses it: a damaged or crafted file is a CheckpointError whose one line names the bad field."""
    path = Path(path)
    remove_stale_temporaries(path)
    try:
        kind = stat.S_IFMT(os.stat(path).st_mode)
    except FileNotFoundError:
        raise CheckpointError(f"model file {path} does not exist. Train one with `cllm train PATH --out {path}`.") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read model file {path}: {exc.strerror or exc}. Check its permissions.") from exc
    if kind == stat.S_IFDIR:
        raise CheckpointError(f"{path} is a folder, not a model file. Pass the .cllm file inside it.")
    if kind != stat.S_IFREG:  # reading a FIFO or a device would wait forever or never end
        raise CheckpointError(f"{path} is not a regular file ({_SPECIAL_FILES.get(kind, 'a special file')}). {_PASS_CLLM}")
    try:
        # Non-blocking: should the file be swapped for a FIFO after the check above, open() still returns at once.
        with os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as f:
            return _read(f, path, with_optimizer)
    except OSError as exc:
        raise CheckpointError(f"cannot read model file {path}: {exc.strerror or exc}. Check its permissions.") from exc


def _model_config_json(meta: dict[str, str], path: Path) -> Any:
    """The header's model config; files from before rotary positions (no "positions" key) have learned ones,
    whatever today's default."""
    config = _parse_json(meta["model_config"], path, "model config")
    if isinstance(config, dict):
        config.setdefault("positions", "learned")
    return config


def _read(f, path: Path, with_optimizer: bool) -> Checkpoint:
    """Parse, validate and checksum the file open as `f`."""
    size = os.fstat(f.fileno()).st_size
    entries, meta, data_start = _read_header(f, path, size)
    digests = _parse_json(meta["sha256"], path, "checksum table")
    if not isinstance(digests, dict) or not all(isinstance(value, str) for value in digests.values()):
        raise CheckpointError(f"{path} is corrupt: its checksum table is not a JSON object of digests. {_RETRAIN}")
    if _header_digest(meta) != digests.get("metadata"):
        raise CheckpointError(f"{path} is corrupt: its metadata does not match the recorded checksum. {_RETRAIN}")
    try:
        config = config_from_json(ModelConfig, _model_config_json(meta, path), "model_config")
        _check_tokenizer(_parse_json(meta["tokenizer"], path, "tokenizer"))
        metadata = _parse_json(meta["metadata"], path, "training metadata")
        TrainingMetadata.from_json(metadata, "metadata")  # the one schema of the training record (engine/events.py)
    except ValueError as exc:  # EventError is a ValueError
        raise CheckpointError(f"{path} is corrupt: {exc}. {_RETRAIN}") from None
    names = ["params"]
    if with_optimizer and "adam_m" in entries:
        names += ["adam_m", "adam_v"] + (["adam_params"] if "adam_params" in entries else [])
    arrays = {name: _read_tensor(f, path, entries, name, data_start, digests) for name in names}
    if any(array.size != arrays["params"].size for array in arrays.values()):
        raise CheckpointError(f"{path} is corrupt: its optimizer state and its weights differ in size. {_RETRAIN}")
    optimizer = None
    if "adam_m" in arrays:
        optimizer = {"m": arrays["adam_m"], "v": arrays["adam_v"], "step": int(meta.get("optimizer_step", "0"))}
        if "adam_params" in arrays:
            optimizer["params"] = arrays["adam_params"]
    return Checkpoint(model_config=config, tokenizer_json=meta["tokenizer"], params=arrays["params"],
                      metadata=metadata, optimizer=optimizer)


def _read_header(f, path: Path, size: int) -> tuple[dict[str, Any], dict[str, str], int]:
    """Tensor entries, string metadata and the offset of the tensor data; refuses foreign, newer, cut or
    malformed files (every header entry is checked here)."""
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
    header = _parse_json(f.read(header_len), path, "header")
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} is corrupt: its header is not a JSON object. {_RETRAIN}")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not a cllm model (no \"format\": \"cllm\"). {_PASS_CLLM}")
    version = _whole_number(meta.get("format_version"))
    if version is None:
        version_text = meta.get("format_version")
        raise CheckpointError(f"{path} is corrupt: format version {_show(version_text)} is not a number. {_RETRAIN}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} uses .cllm format version {version}, newer than this cllm understands ({FORMAT_VERSION}). "
            "Upgrade cllm (pip install -U cllm), or retrain the model with this version."
        )
    if version < 1:
        raise CheckpointError(f"{path} is corrupt: format version {version} does not exist. {_RETRAIN}")
    for key in _REQUIRED_ENTRIES:
        if key not in meta:
            raise CheckpointError(f"{path} is corrupt: its header has no {key!r} entry. {_RETRAIN}")
    for key, value in meta.items():
        if not isinstance(value, str):
            raise CheckpointError(f"{path} is corrupt: header entry {key!r} must be a string, got {_show(value)}. {_RETRAIN}")
    if "optimizer_step" in meta and _whole_number(meta["optimizer_step"]) is None:
        step = _show(meta["optimizer_step"])
        raise CheckpointError(f"{path} is corrupt: header entry 'optimizer_step' must be a whole number, got {step}. {_RETRAIN}")
    for name, entry in header.items():
        if not _is_tensor_entry(entry):
            raise CheckpointError(f"{path} is corrupt: tensor {name!r} has an unexpected layout ({_show(entry)}). {_RETRAIN}")
    data_start = 8 + header_len
    data_end = data_start + max((entry["data_offsets"][1] for entry in header.values()), default=0)
    if data_end > size:
        raise CheckpointError(f"{path} is truncated ({size} bytes of {data_end}): {_CUT_SHORT}")
    if data_end < size:
        raise CheckpointError(f"{path} is corrupt: {size - data_end} unexpected bytes after the weights. {_RETRAIN}")
    return header, meta, data_start


def _is_tensor_entry(entry: Any) -> bool:
    """True for a tensor table entry as cllm writes it: flat float32 (or float16), offsets consistent with the
    shape."""
    if not isinstance(entry, dict) or entry.get("dtype") not in _DTYPES:
        return False
    shape, offsets = entry.get("shape"), entry.get("data_offsets")
    return (isinstance(shape, list) and len(shape) == 1 and _is_count(shape[0])
            and isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_count, offsets))
            and offsets[1] - offsets[0] == np.dtype(_DTYPES[entry["dtype"]]).itemsize * shape[0])


def _read_tensor(
    f, path: Path, entries: dict[str, Any], name: str, data_start: int, digests: dict[str, str]
) -> np.ndarray:
    """One flat tensor as float32 (its table entry already checked), verified against its recorded sha256."""
    entry = entries.get(name)
    if entry is None:
        raise CheckpointError(f"{path} is corrupt: tensor {name!r} is missing. {_RETRAIN}")
    begin, end = entry["data_offsets"]
    f.seek(data_start + begin)
    raw = f.read(end - begin)
    if hashlib.sha256(raw).hexdigest() != digests.get(name):
        raise CheckpointError(
            f"{path} is corrupt: the bytes of {name!r} do not match their checksum (damaged on disk or in transfer). "
            + _RETRAIN
        )
    return np.frombuffer(raw, dtype=_DTYPES[entry["dtype"]]).astype(np.float32)


def _parse_json(text: str | bytes, path: Path, what: str) -> Any:
    """json.loads with a CheckpointError naming the broken part; refuses texts nested deeper than
    _MAX_JSON_DEPTH before parsing them (the parser recurses once per level)."""
    depth = json_depth(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    if depth > _MAX_JSON_DEPTH:
        raise CheckpointError(
            f"{path} is corrupt: its {what} nests {depth} levels deep (cllm writes at most {_MAX_JSON_DEPTH}). {_RETRAIN}"
        )
    try:
        return json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is corrupt: its {what} is not valid JSON ({exc}). {_RETRAIN}") from exc




def _check_tokenizer(value: Any) -> None:
    """ValueError unless the tokenizer entry has the shape of a `tokenizers` JSON (an object with a "model")."""
    if not isinstance(value, dict) or not isinstance(value.get("model"), dict):
        raise ValueError(f"field 'tokenizer' must be a JSON object with a \"model\", got {_show(value)}")


def _whole_number(text: Any) -> int | None:
    """The value of a string of ASCII digits (how the header stores numbers), else None."""
    return int(text) if isinstance(text, str) and text.isascii() and text.isdigit() else None


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _show(value: Any) -> str:
    """A short repr of an offending value for an error line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _header_digest(header: dict[str, Any]) -> str:
    """sha256 of the metadata entries that the checksum table covers (everything but the table itself)."""
    covered = {k: header[k] for k in _HEADER_ENTRIES if k in header}
    return hashlib.sha256(json.dumps(covered, sort_keys=True).encode()).hexdigest()


def params_sha256(array: np.ndarray) -> str:
    """Hex sha256 of an array's little-endian float32 bytes (the identity of a set of weights)."""
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

