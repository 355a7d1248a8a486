"""engine/train/prepare.py: a time budget leaves out the files it cannot afford, with their reason in the skip list
(a firmware image written as a C array of hex bytes made a 5-second budget run for minutes); a run's focus files
train, held out or not, and make at least FOCUS_SHARE of the training stream; when they were every held-out file,
another one is held out so that the run can be validated."""

import random
from dataclasses import replace

import pytest

from cllm.engine.config import ModelConfig, TrainConfig, budget_sample_bytes
from cllm.engine.data.corpus import Document
from cllm.engine.events import PhaseEvent
from cllm.engine.model.loaded import load_model
from cllm.engine.train.loop import train
from cllm.engine.train.prepare import FOCUS_SHARE, Documents, focused

MODEL = ModelConfig(vocab_size=300, d_model=32, n_layers=2, n_heads=2, d_ff=64, max_seq_len=32, dropout=0.0)
TRAIN = TrainConfig(epochs=1, batch_size=8, seq_len=32, grad_accum=1, threads=2, max_steps=1, val_fraction=0.25)


def _firmware(n_bytes: int, seed: int = 0) -> str:
    """A firmware image as C source: `n_bytes` random bytes as a C array of hex literals, 16 a line."""
    rng = random.Random(seed)
    data = [rng.randrange(256) for _ in range(n_bytes)]
    rows = (", ".join(f"0x{b:02x}" for b in data[i:i + 16]) for i in range(0, n_bytes, 16))
    return "static const unsigned char firmware[] = {\n" + "".join(f"    {row},\n" for row in rows) + "};\n"


def _start_event(events: list):
    return next(event for event in events if not isinstance(event, PhaseEvent) and event.kind == "start")


def _skipped(workspace, tmp_path, time_budget: float) -> dict[str, str]:
    events = []
    train(workspace, MODEL, replace(TRAIN, time_budget=time_budget), tmp_path / "m.cllm", events.append,
          explicit={"vocab_size", "epochs", "grad_accum", "lr", "dropout"})
    return {s.path: s.reason for s in _start_event(events).skipped}


def test_a_file_bigger_than_the_time_budget_tokenizes_is_skipped_with_its_reason(c_workspace, tmp_path):
    limit = budget_sample_bytes(1.0)
    (c_workspace / "firmware.h").write_text(_firmware(limit // 6 + 1000))  # ~6 characters a byte
    assert (c_workspace / "firmware.h").stat().st_size > limit
    reason = _skipped(c_workspace, tmp_path, 1.0)["firmware.h"]
    assert reason.startswith("too big for the time budget") and f"{limit:,} bytes" in reason


def test_a_file_that_tokenizes_badly_for_the_time_budget_is_skipped_with_its_rate(c_workspace, tmp_path):
    limit = budget_sample_bytes(1.0)
    (c_workspace / "firmware.h").write_text(_firmware(int(limit * 0.9) // 6))  # under the byte limit
    assert (c_workspace / "firmware.h").stat().st_size < limit
    reason = _skipped(c_workspace, tmp_path, 1.0)["firmware.h"]
    assert reason.startswith("tokenizes badly for the time budget (") and "tokens per byte" in reason


def test_the_same_file_trains_without_a_time_budget_or_with_a_long_one(c_workspace, tmp_path):
    (c_workspace / "firmware.h").write_text(_firmware(budget_sample_bytes(1.0) // 6))
    assert "firmware.h" not in _skipped(c_workspace, tmp_path, 600.0)


def _documents(sizes: dict[str, int], held_out: set[str]) -> Documents:
    docs = [Document(path, "x" * size) for path, size in sizes.items()]
    return Documents(root=None, all=docs, skipped=[], train=[d for d in docs if d.path not in held_out],
                     val=[d for d in docs if d.path in held_out])


@pytest.mark.parametrize("focus_size", [1, 700, 5000, 20000])
def test_focus_files_train_even_when_held_out_and_make_at_least_the_focus_share(focus_size: int):
    docs = _documents({"a.c": 6000, "b.c": 4000, "held.c": 3000, "saved.c": focus_size}, held_out={"held.c", "saved.c"})
    got = focused(docs, ["saved.c", "no/such.c"], 0.25)
    assert [d.path for d in got.train] == ["a.c", "b.c", "saved.c"] and [d.path for d in got.val] == ["held.c"]
    stream = got.train + got.repeats
    focus_bytes = sum(d.size for d in stream if d.path == "saved.c")
    assert {d.path for d in got.repeats} <= {"saved.c"}
    assert focus_bytes >= FOCUS_SHARE * sum(d.size for d in stream)
    assert focus_bytes - focus_size < FOCUS_SHARE * sum(d.size for d in stream)  # one copy fewer would not reach it


def test_without_focus_files_or_with_unknown_ones_the_documents_stay_as_they_are():
    docs = _documents({"a.c": 100, "b.c": 100, "empty.c": 0}, held_out={"b.c"})
    assert focused(docs, [], 0.25) is docs
    assert focused(docs, ["c.c", "empty.c"], 0.25) is docs


@pytest.mark.parametrize("others", [["a.c"], ["a.c", "b.c"], ["a.c", "b.c", "c.c", "d.c"]])
def test_when_the_focus_takes_every_held_out_file_another_file_is_held_out(others: list[str]):
    docs = _documents({**{path: 1000 for path in others}, "saved.c": 500}, held_out={"saved.c"})
    got = focused(docs, ["saved.c"], 0.25)
    assert "saved.c" in {d.path for d in got.train} and "saved.c" not in {d.path for d in got.val}
    assert len(got.val) == 1 and got.val[0].path in others
    assert sorted(d.path for d in got.train + got.val) == sorted(others + ["saved.c"])  # no file lost or doubled


def test_a_workspace_of_the_focus_files_alone_has_nothing_to_validate_on():
    docs = _documents({"saved.c": 500}, held_out=set())
    got = focused(docs, ["saved.c"], 0.25)
    assert [d.path for d in got.train] == ["saved.c"] and got.val == []


def test_without_a_held_out_share_the_focus_holds_nothing_out():
    docs = _documents({"a.c": 1000, "saved.c": 500}, held_out={"saved.c"})
    got = focused(docs, ["saved.c"], 0.0)
    assert sorted(d.path for d in got.train) == ["a.c", "saved.c"] and got.val == []


def test_a_focused_run_trains_on_the_file_it_would_have_held_out(c_workspace, tmp_path):
    plain, focused_events = [], []
    train(c_workspace, MODEL, TRAIN, tmp_path / "plain.cllm", plain.append)
    held = load_model(tmp_path / "plain.cllm").metadata.val_files[0]
    train(c_workspace, MODEL, TRAIN, tmp_path / "focused.cllm", focused_events.append, focus=[held])
    meta = load_model(tmp_path / "focused.cllm").metadata
    assert held in meta.train_files and held not in meta.val_files and meta.val_files
    assert len(meta.train_files) == len(set(meta.train_files))  # the copies are in the stream, not the record
    assert _start_event(focused_events).tokens > _start_event(plain).tokens
