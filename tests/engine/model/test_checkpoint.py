"""The .cllm file: round trip, and a distinct clear refusal for each kind of damage."""

import json
import os
import struct
import subprocess
import sys
from dataclasses import asdict, fields, replace

import numpy as np
import pytest
import safetensors.numpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cllm.engine.model import checkpoint as ckmod
from cllm.engine import files
from cllm.engine.model.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint, weights_sha256
from cllm.engine.config import ModelConfig
from cllm.engine.events import EpochEvent, ResumePosition, RunStats, TrainingMetadata
from cllm.engine.model.tokenizer import Tokenizer

N = 1000
STATS = RunStats(tokens_per_second=3000.0, load_imbalance=0.1, sync_overhead=0.05, step_ms=40.0).to_json()


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


def test_model_files_from_before_rotary_positions_load_with_learned_ones(tmp_path, ckpt, monkeypatch):
    monkeypatch.setattr(ckmod, "to_dict", lambda config: {k: v for k, v in asdict(config).items() if k != "positions"})
    save_checkpoint(tmp_path / "old.cllm", ckpt)
    header = json.loads(safetensors.safe_open(tmp_path / "old.cllm", "np").metadata()["model_config"])
    assert "positions" not in header
    assert load_checkpoint(tmp_path / "old.cllm").model_config.positions == "learned"


def test_rotary_positions_round_trip_and_unknown_ones_are_refused(tmp_path, ckpt, monkeypatch):
    rope = replace(ckpt, model_config=replace(ckpt.model_config, positions="rope"))
    save_checkpoint(tmp_path / "rope.cllm", rope)
    assert load_checkpoint(tmp_path / "rope.cllm").model_config.positions == "rope"
    monkeypatch.setattr(ckmod, "to_dict", lambda config: {**asdict(config), "positions": "spiral"})
    save_checkpoint(tmp_path / "bad.cllm", ckpt)
    with pytest.raises(CheckpointError, match="positions must be one of learned, rope, got 'spiral'"):
        load_checkpoint(tmp_path / "bad.cllm")


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


def test_fifo_is_refused_at_once(tmp_path):
    """Opening a FIFO for reading waits for a writer: the loader must not even try."""
    os.mkfifo(tmp_path / "model.cllm")
    with pytest.raises(CheckpointError, match="not a regular file \\(a FIFO\\)"):
        load_checkpoint(tmp_path / "model.cllm")


def test_deeply_nested_header_is_refused_before_parsing(tmp_path):
    path = tmp_path / "deep.cllm"
    header = b'{"a":' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    header += b" " * (-len(header) % 8)
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(CheckpointError, match="header nests 200001 levels deep"):
        load_checkpoint(path)


def test_brackets_inside_strings_do_not_count_as_nesting(tmp_path, ckpt):
    ckpt.metadata["workspace"] = "/ws/" + "{[" * 1000 + '\\"' + "]}" * 10
    save_checkpoint(tmp_path / "m.cllm", ckpt)
    assert load_checkpoint(tmp_path / "m.cllm").metadata["workspace"] == ckpt.metadata["workspace"]


def rewrite_entries(path, edit, sign: bool = True) -> None:
    """Apply `edit(entries)` to the header's string entries and (with `sign`) record a matching checksum, as
    someone who edits a file and recomputes its checksum table would."""
    def edit_entries(header):
        entries = header.get("__metadata__")
        if isinstance(entries, dict):
            edit(entries)
            if sign:
                sign_entries(entries)
    rewrite_header(path, edit_entries)


def sign_entries(entries: dict) -> None:
    """Record the entries' checksum in their checksum table (when that is still a JSON object)."""
    try:
        digests = json.loads(entries["sha256"])
    except (KeyError, TypeError, json.JSONDecodeError):
        return
    if isinstance(digests, dict):
        digests["metadata"] = ckmod._header_digest(entries)
        entries["sha256"] = json.dumps(digests)


@pytest.mark.parametrize("edit, field", [
    (lambda m: m.update(metadata="[1, 2]"), "field 'metadata' must be an object"),
    (lambda m: m.update(tokenizer="{}"), "field 'tokenizer' must be a JSON object with a \"model\""),
    (lambda m: m.update(tokenizer={}), "header entry 'tokenizer' must be a string"),
    (lambda m: m.update(optimizer_step="x"), "header entry 'optimizer_step' must be a whole number"),
    (lambda m: m.update(optimizer_step="-3"), "header entry 'optimizer_step' must be a whole number"),
    (lambda m: m.pop("model_config"), "no 'model_config' entry"),
    (lambda m: m.update(model_config='{"n_heads": 0}'), "field 'model_config': n_heads must be positive"),
    (lambda m: m.update(model_config='{"d_model": "wide"}'), "field 'model_config.d_model' must be a whole number"),
    (lambda m: m.update(metadata='{"files": -1}'), "field 'metadata.files' must be a whole number >= 0"),
    (lambda m: m.update(metadata='{"files": null}'), "field 'metadata.files' must not be null"),
    (lambda m: m.update(metadata='{"workspace": 7}'), "field 'metadata.workspace' must be a string"),
    (lambda m: m.update(metadata='{"loss_history": [[1, "x"]]}'),
     "field 'metadata.loss_history[0][1]' must be a number"),
    (lambda m: m.update(metadata='{"loss_history": [[-1, 2.0]]}'),
     "field 'metadata.loss_history[0][0]' must be a whole number >= 0"),
    (lambda m: m.update(metadata='{"train_files": "a.c"}'), "field 'metadata.train_files' must be a list"),
    (lambda m: m.update(metadata='{"val_history": [{"epoch": 1}]}'), "field 'metadata.val_history[0].step' is missing"),
    (lambda m: m.update(metadata=json.dumps({"sphere_stats": {**STATS, "load_imbalance": "high"}})),
     "field 'metadata.sphere_stats.load_imbalance' must be a number"),
    (lambda m: m.update(metadata='{"train_config": {"lr": "fast"}}'), "field 'metadata.train_config.lr' must be a number"),
    (lambda m: m.update(metadata='{"train_config": {"epochs": 0}}'), "field 'metadata.train_config': epochs must be"),
    (lambda m: m.update(metadata='{"resume": {"epoch": 1}}'), "field 'metadata.resume.batch' is missing"),
    (lambda m: m.update(metadata='{"resume": {"epoch": 1, "batch": 0, "step": "x", "tokens": 0, "bad_epochs": 0}}'),
     "field 'metadata.resume.step' must be a whole number"),
    (lambda m: m.update(metadata='{"resume": null}'), "field 'metadata.resume' must not be null"),
    (lambda m: m.update(metadata="[" * 100 + "]" * 100), "training metadata nests 100 levels deep"),
    (lambda m: m.update(sha256=json.dumps({**json.loads(m["sha256"]), "params": 5})), "checksum table is not"),
])
def test_edited_fields_with_recomputed_checksums_are_refused_by_name(saved, edit, field):
    rewrite_entries(saved, edit)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(saved, with_optimizer=True)
    message = str(err.value)
    assert field in message and "\n" not in message, message


def test_optimizer_state_missing_a_half_is_refused(saved):
    rewrite_header(saved, lambda h: h.update(adam_w=h.pop("adam_v")))  # the bytes stay, under another name
    with pytest.raises(CheckpointError, match="tensor 'adam_v' is missing"):
        load_checkpoint(saved, with_optimizer=True)


def test_metadata_as_training_writes_it_loads_with_unknown_fields(tmp_path, ckpt):
    epoch = EpochEvent(epoch=1, step=3, train_loss=5.0, val_loss=None, val_bits_per_byte=None)
    resume = ResumePosition(epoch=1, batch=0, step=3, tokens=9, best_epoch_val=None, bad_epochs=0)
    ckpt.metadata = {"workspace": None, "train_files": ["a.c"], "loss_history": [[1, 5.0], 4.5], "val_loss": None,
                     "val_history": [epoch.to_json()], "sphere_stats": STATS, "resume": resume.to_json(),
                     "train_config": {"epochs": 3, "max_steps": None}, "added_by_a_newer_cllm": {"x": [1]}}
    save_checkpoint(tmp_path / "model.cllm", ckpt)
    loaded = load_checkpoint(tmp_path / "model.cllm")
    assert loaded.metadata == ckpt.metadata
    assert TrainingMetadata.from_json(loaded.metadata).val_history == [epoch]


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_temporary_file_is_named_after_its_writer(tmp_path, ckpt, monkeypatch):
    seen = []
    monkeypatch.setattr(files.os, "replace", lambda src, dst: seen.append(os.path.basename(src)))
    save_checkpoint(tmp_path / "model.cllm", ckpt)
    assert len(seen) == 1 and seen[0].startswith(f".model.cllm.{os.getpid()}.") and seen[0].endswith(".tmp")


@pytest.mark.parametrize("action", ["save", "load"])
def test_stale_temporaries_of_dead_writers_are_removed(tmp_path, saved, ckpt, action):
    stale = tmp_path / f".model.cllm.{dead_pid()}.x1y2.tmp"
    live = tmp_path / f".model.cllm.{os.getpid()}.a3b4.tmp"  # a writer still at work
    other = tmp_path / f".other.cllm.{dead_pid()}.c5d6.tmp"  # another file's leftovers are not this save's business
    for path in (stale, live, other):
        path.write_bytes(b"partial")
    if action == "save":
        save_checkpoint(saved, ckpt)
    else:
        load_checkpoint(saved)
    assert sorted(os.listdir(tmp_path)) == sorted([live.name, other.name, "model.cllm"])


def _json_containers(inner: st.SearchStrategy) -> st.SearchStrategy:
    """JSON arrays and objects of `inner` values."""
    return st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)


def _json_values():
    """Arbitrary JSON values, a few levels deep."""
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    return st.recursive(scalars, _json_containers, max_leaves=12)


_FIELDS = {"metadata": [f.name for f in fields(TrainingMetadata)],
           "model_config": ["vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "max_seq_len", "dropout"]}
_ENTRY_KEYS = ["format", "format_version", "model_config", "tokenizer", "metadata", "optimizer_step", "sha256"]


@st.composite
def _edited_entries(draw):
    """Edits of the header's string entries, and whether the checksum is recomputed afterwards. An edit replaces
    an entry by arbitrary JSON (as text or as a raw value) or a string, drops it, or gives known fields of the
    metadata or the model config arbitrary values."""
    edits = []
    for _ in range(draw(st.integers(1, 4))):
        key = draw(st.sampled_from(_ENTRY_KEYS))
        kind = draw(st.sampled_from(["json_text", "raw", "text", "drop"] + (["fields"] * 3 if key in _FIELDS else [])))
        if kind == "fields":
            value = draw(st.dictionaries(st.sampled_from(_FIELDS[key]), _json_values(), min_size=1, max_size=3))
        else:
            value = draw(st.text(max_size=20) if kind == "text" else _json_values())
        edits.append((key, kind, value))
    return edits, draw(st.booleans())


def _apply(entries: dict, edits) -> None:
    for key, kind, value in edits:
        if kind == "drop":
            entries.pop(key, None)
        elif kind in ("raw", "text"):
            entries[key] = value
        elif kind == "json_text":
            entries[key] = json.dumps(value)
        else:  # "fields": update the JSON object the entry holds (when it still holds one)
            try:
                current = json.loads(entries[key])
            except (KeyError, TypeError, json.JSONDecodeError):
                continue
            if isinstance(current, dict):
                entries[key] = json.dumps({**current, **value})


FUZZ_EXAMPLES = int(os.environ.get("CLLM_FUZZ_EXAMPLES", "300"))


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=_edited_entries())
def test_fuzzed_headers_load_or_raise_checkpoint_error(tmp_path, saved, case):
    """Whatever is written into the header and metadata, loading either succeeds with a record the faces can use
    or raises CheckpointError: never another exception, never a hang."""
    edits, sign = case
    original = saved.read_bytes()
    try:
        rewrite_entries(saved, lambda entries: _apply(entries, edits), sign)
        try:
            loaded = load_checkpoint(saved, with_optimizer=True)
        except CheckpointError as exc:
            assert "\n" not in str(exc)
        else:  # what the faces rely on: a checked record, a tokenizer that loads or says why not
            TrainingMetadata.from_json(loaded.metadata)
            try:
                Tokenizer.from_json(loaded.tokenizer_json)
            except ValueError:
                pass
    finally:
        saved.write_bytes(original)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200), header=_json_values())
def test_fuzzed_files_raise_checkpoint_error(tmp_path, data, header):
    """Random bytes, and random JSON headers of a plausible length, are refused with a CheckpointError."""
    text = json.dumps(header).encode()
    for content in (data, struct.pack("<Q", len(text)) + text, struct.pack("<Q", len(data)) + data):
        path = tmp_path / "fuzz.cllm"
        path.write_bytes(content)
        with pytest.raises(CheckpointError):
            load_checkpoint(path, with_optimizer=True)


def test_float16_weights_load_as_float32_at_half_the_size(tiny_model_path, tmp_path):
    ckpt = ckmod.load_checkpoint(tiny_model_path)
    full, half = tmp_path / "full.cllm", tmp_path / "half.cllm"
    ckmod.save_checkpoint(full, ckpt)
    ckmod.save_checkpoint(half, ckpt, half=True)
    loaded = ckmod.load_checkpoint(half)
    assert loaded.params.dtype == np.float32
    np.testing.assert_array_equal(loaded.params, ckpt.params.astype(np.float16).astype(np.float32))
    weights = ckpt.params.nbytes
    assert full.stat().st_size - half.stat().st_size == weights // 2


def test_float16_weights_refuse_optimizer_state(tiny_model_path, tmp_path):
    ckpt = ckmod.load_checkpoint(tiny_model_path)
    ckpt.optimizer = {"m": ckpt.params, "v": ckpt.params, "step": 1}
    with pytest.raises(ValueError, match="without the optimizer"):
        ckmod.save_checkpoint(tmp_path / "half.cllm", ckpt, half=True)


def test_a_float16_tensor_whose_size_disagrees_with_its_shape_is_refused(tiny_model_path, tmp_path):
    ckpt = ckmod.load_checkpoint(tiny_model_path)
    half = tmp_path / "half.cllm"
    ckmod.save_checkpoint(half, ckpt, half=True)
    data = half.read_bytes()
    tampered = data.replace(b'"dtype":"F16"', b'"dtype":"F32"', 1)
    half.write_bytes(tampered)
    with pytest.raises(ckmod.CheckpointError, match="unexpected layout|corrupt"):
        ckmod.load_checkpoint(half)
