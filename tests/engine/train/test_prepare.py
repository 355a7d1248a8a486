"""engine/train/prepare.py: a time budget leaves out the files it cannot afford, with their reason in the skip list
(a firmware image written as a C array of hex bytes made a 5-second budget run for minutes)."""

import random
from dataclasses import replace

from cllm.engine.config import ModelConfig, TrainConfig, budget_sample_bytes
from cllm.engine.events import PhaseEvent
from cllm.engine.train.loop import train

MODEL = ModelConfig(vocab_size=300, d_model=32, n_layers=2, n_heads=2, d_ff=64, max_seq_len=32, dropout=0.0)
TRAIN = TrainConfig(epochs=1, batch_size=8, seq_len=32, grad_accum=1, threads=2, max_steps=1, val_fraction=0.25)


def _firmware(n_bytes: int, seed: int = 0) -> str:
    """A firmware image as C source: `n_bytes` random bytes as a C array of hex literals, 16 a line."""
    rng = random.Random(seed)
    data = [rng.randrange(256) for _ in range(n_bytes)]
    rows = (", ".join(f"0x{b:02x}" for b in data[i:i + 16]) for i in range(0, n_bytes, 16))
    return "static const unsigned char firmware[] = {\n" + "".join(f"    {row},\n" for row in rows) + "};\n"


def _skipped(workspace, tmp_path, time_budget: float) -> dict[str, str]:
    events = []
    train(workspace, MODEL, replace(TRAIN, time_budget=time_budget), tmp_path / "m.cllm", events.append,
          explicit={"vocab_size", "epochs", "grad_accum", "lr", "dropout"})
    start = next(event for event in events if not isinstance(event, PhaseEvent) and event.kind == "start")
    return {s.path: s.reason for s in start.skipped}


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
