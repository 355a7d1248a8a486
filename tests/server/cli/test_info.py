"""`cllm info MODEL [--json]`: the model's config, training record and weights_sha256, or a clear error."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from cllm.engine.model.checkpoint import Checkpoint, save_checkpoint, weights_sha256
from cllm.engine.config import ModelConfig, TrainConfig, to_dict
from cllm.engine.model.tokenizer import Tokenizer
from cllm.server.cli import main


@pytest.fixture
def model_file(tmp_path):
    tokenizer = Tokenizer.train(["int main(void) { return 0; }\n"] * 5, vocab_size=300)
    ckpt = Checkpoint(
        model_config=ModelConfig(vocab_size=tokenizer.vocab_size, d_model=32, n_layers=2, n_heads=2, d_ff=64, max_seq_len=32,
                                 positions="learned"),
        tokenizer_json=tokenizer.to_json(),
        params=np.linspace(-1, 1, 500, dtype=np.float32),
        metadata={"train_config": to_dict(TrainConfig(epochs=2)), "workspace": "/ws", "files": 3,
                  "train_files": ["a.c", "b.c"], "val_files": ["c.c"], "tokens": 12345, "epochs": 2, "steps": 20,
                  "loss_history": [[1, 5.0], [20, 3.25]], "val_bits_per_byte": 2.5, "spheres": 12, "threads": 2},
        optimizer={"m": np.zeros(500, np.float32), "v": np.zeros(500, np.float32), "step": 20},
    )
    path = tmp_path / "model.cllm"
    save_checkpoint(path, ckpt)
    return path, weights_sha256(ckpt)


def test_info_json(model_file, capsys):
    path, sha = model_file
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["weights_sha256"] == sha
    assert info["model_config"]["d_model"] == 32 and info["parameters"] == 500
    assert info["resumable"] is True and info["optimizer_step"] == 20
    assert info["metadata"]["val_files"] == ["c.c"] and info["metadata"]["train_config"]["epochs"] == 2


def test_info_text(model_file, capsys):
    path, sha = model_file
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"weights sha256     {sha}" in out
    assert "500 parameters" in out and "d_model 32" in out and "learned positions" in out
    assert "held-out files     1" in out and "tokens             12,345" in out
    assert "final train loss   3.2500" in out and "held-out bits/byte 2.5000" in out


def test_info_refuses_a_damaged_file(model_file, capsys):
    path, _ = model_file
    path.write_bytes(path.read_bytes()[:-10])
    assert main(["info", str(path)]) == 1
    err = capsys.readouterr().err
    assert "truncated" in err and "Traceback" not in err


def test_a_closed_pipe_ends_quietly(model_file):
    """`cllm info MODEL | head -0`: the reader is gone before cllm writes; no BrokenPipeError traceback."""
    path, _ = model_file
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([sys.executable, "-m", "cllm.server.cli", "info", str(path)], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert proc.stderr == "" and proc.returncode == 128 + signal.SIGPIPE


def test_a_fifo_is_refused_at_once(tmp_path, capsys):
    os.mkfifo(tmp_path / "model.cllm")
    assert main(["info", str(tmp_path / "model.cllm")]) == 1
    assert capsys.readouterr().err == f"cllm info: error: {tmp_path / 'model.cllm'} is not a regular file (a FIFO). " \
                                      "Pass a .cllm file written by `cllm train`.\n"


def test_info_names_the_base_of_a_fine_tuned_model_and_the_corpus_of_a_base(model_file, tmp_path, capsys):
    from cllm.engine.model.checkpoint import load_checkpoint

    path, _ = model_file
    ckpt = load_checkpoint(path)
    ckpt.metadata.update(base={"path": "/cache/cllm/base.cllm", "weights_sha256": "ab" * 32},
                         replay_files=["usr/include/stdio.h"], base_share=0.3,
                         manifest=[{"path": "/usr/include/x.h", "sha256": "cd" * 32}])
    save_checkpoint(tmp_path / "ft.cllm", ckpt)
    assert main(["info", str(tmp_path / "ft.cllm")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"fine-tuned from /cache/cllm/base.cllm (weights sha256 {'ab' * 32})" in out
    assert "replayed base files 1" in out and "base corpus 1 files in its manifest" in out
    assert "base weights kept 30% of the stored weights are the base's" in out


def test_info_says_whether_a_base_is_the_shipped_one(tiny_base_path, monkeypatch, capsys):
    assert main(["info", str(tiny_base_path)]) == 0
    assert "a base model from `cllm pretrain`" in capsys.readouterr().out
    monkeypatch.setenv("CLLM_SHIPPED_BASE", str(tiny_base_path))
    assert main(["info", str(tiny_base_path)]) == 0
    assert "the base shipped with cllm" in capsys.readouterr().out
