"""The .cllm file: round trip, and a distinct clear refusal for each kind of damage."""

import json
import os
import struct

import numpy as np
import pytest
import safetensors.numpy

from cllm.engine import checkpoint as ckmod
from cllm.engine import files
from cllm.engine.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint, weights_sha256
from cllm.engine.config import ModelConfig
from cllm.engine.tokenizer import Tokenizer

N = 1000


@pytest.fixture(scope="module")
def tokenizer_json() -> str:
    return Tokenizer.train(["int main(void) { return 0; }\n"] * 5, vocab_size=300).to_json()


@pytest.fixture
def ckpt(tokenizer_json) -> Checkpoint:
    rng = np.random.default_rng(1)
    return Checkpoint(
        model_config=ModelConfig(vocab_size=300, d_model=32, n_layers=2, n_heads=2, d_ff=64, max_seq_len=32),
        tokenizer_json=tokenizer_json,
        params=rng.standard_normal(N).astype(np.float32),
        metadata={"files": 3, "loss_history": [5.2, 4.1, np.float32(3.5)], "workspace": "/tmp/ws", "spheres": 12},
        optimizer={"m": rng.standard_normal(N).astype(np.float32), "v": rng.random(N).astype(np.float32), "step": 42},
    )


@pytest.fixture
def saved(tmp_path, ckpt):
    path = tmp_path / "model.cllm"
    save_checkpoint(path, ckpt)
    return path


def test_round_trip(saved, ckpt):
    back = load_checkpoint(saved, with_optimizer=True)
    assert back.model_config == ckpt.model_config
    assert back.tokenizer_json == ckpt.tokenizer_json
    np.testing.assert_array_equal(back.params, ckpt.params)
    assert back.params.dtype == np.float32 and back.params.flags.writeable
    np.testing.assert_array_equal(back.optimizer["m"], ckpt.optimizer["m"])
    np.testing.assert_array_equal(back.optimizer["v"], ckpt.optimizer["v"])
    assert back.optimizer["step"] == 42
    assert back.metadata == {"files": 3, "loss_history": [5.2, 4.1, 3.5], "workspace": "/tmp/ws", "spheres": 12}
    assert weights_sha256(back) == weights_sha256(ckpt)
    assert Tokenizer.from_json(back.tokenizer_json).to_json() == ckpt.tokenizer_json


def test_optimizer_only_on_request_and_optional(tmp_path, saved, ckpt):
    assert load_checkpoint(saved).optimizer is None
    ckpt.optimizer = None
    path = tmp_path / "weights-only.cllm"
    save_checkpoint(path, ckpt)
    assert load_checkpoint(path, with_optimizer=True).optimizer is None
    assert path.stat().st_size < saved.stat().st_size


def test_resume_weights_round_trip(tmp_path, ckpt):
    current = ckpt.params + 0.5
    ckpt.optimizer["params"] = current
    path = tmp_path / "best-and-current.cllm"
    save_checkpoint(path, ckpt)
    back = load_checkpoint(path, with_optimizer=True)
    np.testing.assert_array_equal(back.params, ckpt.params)
    np.testing.assert_array_equal(back.optimizer["params"], current)
    ckpt.optimizer["params"] = ckpt.params  # same weights: not stored twice
    save_checkpoint(path, ckpt)
    assert "params" not in load_checkpoint(path, with_optimizer=True).optimizer


def test_is_a_plain_safetensors_file(saved, ckpt):
    tensors = safetensors.numpy.load_file(saved)
    assert set(tensors) == {"params", "adam_m", "adam_v"}
    np.testing.assert_array_equal(tensors["params"], ckpt.params)


def test_streamed_save_of_every_tensor_is_read_back_by_safetensors(tmp_path, ckpt):
    """The hand-written safetensors header and streamed tensors make a file any safetensors reader accepts."""
    n = 1_000_000
    rng = np.random.default_rng(2)
    ckpt.params = rng.standard_normal(n, dtype=np.float32)
    ckpt.optimizer = {"m": rng.standard_normal(n, dtype=np.float32), "v": rng.random(n, dtype=np.float32),
                      "step": 1, "params": rng.standard_normal(n, dtype=np.float32)}
    save_checkpoint(tmp_path / "big.cllm", ckpt)
    tensors = safetensors.numpy.load_file(tmp_path / "big.cllm")
    np.testing.assert_array_equal(tensors["params"], ckpt.params)
    np.testing.assert_array_equal(tensors["adam_m"], ckpt.optimizer["m"])
    np.testing.assert_array_equal(tensors["adam_params"], ckpt.optimizer["params"])


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist.*cllm train"):
        load_checkpoint(tmp_path / "nope.cllm")


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(CheckpointError, match="is a folder"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("keep", [0, 5, 100, -1])
def test_truncated_file(saved, keep):
    data = saved.read_bytes()
    saved.write_bytes(data[: keep if keep >= 0 else len(data) - 7])
    with pytest.raises(CheckpointError, match="empty" if keep == 0 else "truncated"):
        load_checkpoint(saved)


def tensor_start(data: bytes, name: str) -> int:
    """File offset of the first byte of tensor `name`."""
    (header_len,) = struct.unpack("<Q", data[:8])
    return 8 + header_len + json.loads(data[8 : 8 + header_len])[name]["data_offsets"][0]


def test_flipped_weight_byte(saved):
    data = bytearray(saved.read_bytes())
    data[tensor_start(data, "params") + 123] ^= 0x01
    saved.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt.*'params'.*checksum"):
        load_checkpoint(saved)


def test_flipped_optimizer_byte_only_matters_when_resuming(saved):
    data = bytearray(saved.read_bytes())
    data[tensor_start(data, "adam_m") + 3] ^= 0x80
    saved.write_bytes(bytes(data))
    assert load_checkpoint(saved).optimizer is None
    with pytest.raises(CheckpointError, match="'adam_m'.*checksum"):
        load_checkpoint(saved, with_optimizer=True)


def test_edited_metadata_is_detected(saved):
    data = saved.read_bytes()
    changed = data.replace(b"/tmp/ws", b"/tmp/wx")
    assert changed != data
    saved.write_bytes(changed)
    with pytest.raises(CheckpointError, match="metadata does not match"):
        load_checkpoint(saved)


def test_wrong_magic(tmp_path):
    path = tmp_path / "model.cllm"
    path.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(200))
    with pytest.raises(CheckpointError, match="not a cllm model file"):
        load_checkpoint(path)


def test_foreign_safetensors_file(tmp_path):
    path = tmp_path / "other.safetensors"
    safetensors.numpy.save_file({"w": np.zeros(3, np.float32)}, path, metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="safetensors file but not a cllm model"):
        load_checkpoint(path)


def test_future_version(tmp_path, ckpt, monkeypatch):
    path = tmp_path / "future.cllm"
    monkeypatch.setattr(ckmod, "FORMAT_VERSION", 7)
    save_checkpoint(path, ckpt)
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match="format version 7, newer.*Upgrade cllm"):
        load_checkpoint(path)


def test_errors_are_distinct(tmp_path, saved, ckpt, monkeypatch):
    """Each kind of damage gets its own message, so a user can tell them apart."""
    messages = set()
    for damage in ("truncate", "flip", "magic", "future"):
        path = tmp_path / f"{damage}.cllm"
        data = bytearray(saved.read_bytes())
        if damage == "truncate":
            data = data[:-100]
        elif damage == "flip":
            data[tensor_start(data, "params") + 5] ^= 0xFF
        elif damage == "magic":
            data[8] = ord("X")
        path.write_bytes(bytes(data))
        if damage == "future":
            monkeypatch.setattr(ckmod, "FORMAT_VERSION", 2)
            save_checkpoint(path, ckpt)
            monkeypatch.undo()
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(path)
        messages.add(str(err.value).replace(str(path), "PATH").split(":")[0].split("(")[0])
    assert len(messages) == 4, messages


def test_failed_write_leaves_nothing_and_keeps_old_file(tmp_path, saved, ckpt, monkeypatch):
    before = saved.read_bytes()
    ckpt.params = ckpt.params + 1

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", disk_full)
    with pytest.raises(CheckpointError, match="No space left.*free disk space"):
        save_checkpoint(saved, ckpt)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["model.cllm"]
    assert saved.read_bytes() == before


def test_interrupted_write_keeps_old_file(tmp_path, saved, ckpt, monkeypatch):
    before = saved.read_bytes()
    ckpt.params = ckpt.params * 2

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(saved, ckpt)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["model.cllm"]
    assert saved.read_bytes() == before
    np.testing.assert_array_equal(load_checkpoint(saved).params, ckpt.params / 2)


def test_bad_arrays_refused_before_writing(tmp_path, ckpt):
    ckpt.params = ckpt.params.astype(np.float64)
    with pytest.raises(ValueError, match="flat float32"):
        save_checkpoint(tmp_path / "x.cllm", ckpt)
    assert not (tmp_path / "x.cllm").exists()


def test_metadata_is_json(saved):
    (header_len,) = struct.unpack("<Q", saved.read_bytes()[:8])
    meta = json.loads(saved.read_bytes()[8 : 8 + header_len])["__metadata__"]
    assert meta["format"] == "cllm" and meta["format_version"] == "1" and meta["optimizer_step"] == "42"
    assert json.loads(meta["model_config"])["d_model"] == 32


def rewrite_header(path, edit) -> None:
    """Apply `edit(header)` to the file's JSON header in place, keeping the tensor bytes."""
    data = path.read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    edit(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + header_len :])


@pytest.mark.parametrize("edit", [
    lambda h: h.update(__metadata__=[1]),
    lambda h: h["__metadata__"].update(sha256="[1]"),
    lambda h: h["__metadata__"].update(format_version=None),
    lambda h: h["params"].update(shape=3),
    lambda h: h["params"].update(shape=["x"]),
    lambda h: h["params"].update(data_offsets=["a", h["params"]["data_offsets"][1]]),
])
def test_crafted_headers_are_refused_not_crashed_on(saved, edit):
    rewrite_header(saved, edit)
    with pytest.raises(CheckpointError, match="not a cllm model|corrupt"):
        load_checkpoint(saved, with_optimizer=True)
