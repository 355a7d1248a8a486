"""`cllm train`: the --json event stream of a real child process, errors, the workspace lock, resume flags."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cllm.engine.model.checkpoint import load_checkpoint
from cllm.engine.paths import acquire_training_lock, default_model_path, model_dir
from cllm.server.cli import main

TINY = ["--vocab-size", "300", "--d-model", "32", "--layers", "2", "--heads", "2", "--ffn", "64",
        "--seq-len", "32", "--batch-size", "8", "--grad-accum", "1", "--threads", "2"]
DONE_FIELDS = {"checkpoint", "steps", "tokens", "seconds", "tokens_per_second", "final_loss", "val_bits_per_byte",
               "threads", "spheres", "load_imbalance", "sync_overhead"}


@pytest.fixture(autouse=True)
def cache_home(tmp_path, monkeypatch):
    """Keep model folders and lock files inside the test's tmp folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_json_mode_prints_only_events_ending_with_done(c_workspace, cache_home):
    env = dict(os.environ, XDG_CACHE_HOME=str(cache_home))
    proc = subprocess.run([sys.executable, "-m", "cllm.server.cli", "train", str(c_workspace), "--epochs", "2",
                           "--json", *TINY], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    phases = [e for e in events if e["event"] == "phase"]
    assert [e["event"] for e in events[:len(phases)]] == ["phase"] * len(phases), "every phase before the start"
    ended = [p["phase"] for p in phases if p["done"] == p["total"]]
    assert list(dict.fromkeys(ended)) == ["scan", "tokenizer", "tokenize"], "each ends with done == total, in order"
    assert phases[-1]["phase"] == "train" and phases[-1]["unit"] == "steps"
    events = events[len(phases):]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and "step" in kinds and kinds.count("epoch") == 2
    done = events[-1]
    assert DONE_FIELDS <= set(done)
    assert done["spheres"] == 12 and done["threads"] == 2 and done["steps"] == events[0]["total_steps"]
    assert done["tokens"] > 0 and done["tokens_per_second"] > 0 and done["val_bits_per_byte"] > 0
    assert 0 <= done["sync_overhead"] < 1 and done["load_imbalance"] >= 0
    step = next(e for e in events if e["event"] == "step")
    assert {"epoch", "epochs", "step", "total_steps", "loss", "lr", "tokens", "tokens_per_second", "load_imbalance",
            "sync_overhead", "threads", "spheres"} <= set(step)
    # the default --out is the workspace's model folder under the user cache
    assert done["checkpoint"] == str(default_model_path(c_workspace))
    assert load_checkpoint(done["checkpoint"]).metadata["steps"] == done["steps"]


def test_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    assert main(["train", str(tmp_path / "missing"), "--json"]) == 2
    out, err = capsys.readouterr()
    assert json.loads(out)["event"] == "error" and "is not a folder" in json.loads(out)["message"]
    assert err.count("\n") == 1 and "is not a folder" in err

    assert main(["train", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "is a folder: give the model file" in capsys.readouterr().err

    (tmp_path / "empty").mkdir()
    assert main(["train", str(tmp_path / "empty")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip() == f"cllm train: error: no C files (.c, .h) to learn from in {(tmp_path / 'empty').resolve()}"


def test_c_files_hidden_by_an_ignore_rule_are_counted_and_the_flag_named(tmp_path, capsys):
    (tmp_path / "ws" / "src").mkdir(parents=True)
    (tmp_path / "ws" / ".gitignore").write_text("/*\n")
    (tmp_path / "ws" / "src" / "a.c").write_text("int a;\n")
    assert main(["train", str(tmp_path / "ws")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ignore rules hide 1 C file (1 by '/*' (.gitignore line 1))" in err
    assert "--no-gitignore" in err


def test_bad_flag_values_and_model_flags_on_resume_are_refused(c_workspace, tmp_path, capsys):
    assert main(["train", str(c_workspace), "--epochs", "0"]) == 2
    assert "argument --epochs: must be a whole number >= 1, got '0'" in capsys.readouterr().err
    assert main(["train", str(c_workspace), "--heads", "3"]) == 2
    assert "multiple of heads" in capsys.readouterr().err
    assert main(["train", str(c_workspace), "--resume", str(tmp_path / "x.cllm"), "--layers", "3"]) == 2
    assert "--layers cannot change when resuming" in capsys.readouterr().err
    assert main(["train", str(c_workspace), "--position-encoding", "spiral"]) == 2
    assert "argument --position-encoding: must be one of learned, rope, got 'spiral'" in capsys.readouterr().err


def test_positions_flag_trains_a_rotary_model(c_workspace, tmp_path, capsys):
    out = tmp_path / "rope.cllm"
    assert main(["train", str(c_workspace), "--max-steps", "1", "--position-encoding", "rope", "--out", str(out), *TINY]) == 0
    assert load_checkpoint(out).model_config.positions == "rope"


def test_a_second_training_of_the_same_workspace_is_refused(c_workspace, tmp_path, capsys):
    lock = acquire_training_lock(c_workspace)
    try:
        assert main(["train", str(c_workspace), "--out", str(tmp_path / "m.cllm"), *TINY]) == 2
    finally:
        lock.release()
    err = capsys.readouterr().err
    assert "already running" in err and str(model_dir(c_workspace)) in err
    assert not (tmp_path / "m.cllm").exists()


def test_resume_continues_from_the_checkpoint_settings(c_workspace, tmp_path, capsys):
    out = tmp_path / "m.cllm"
    assert main(["train", str(c_workspace), "--out", str(out), "--max-steps", "3", "--json", *TINY]) == 0
    capsys.readouterr()
    assert main(["train", str(c_workspace), "--out", str(out), "--resume", str(out), "--max-steps", "5", "--json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    start = next(e for e in events if e["event"] == "start")
    assert start["step"] == 3 and start["resumed_from"] == str(out)
    train_phase = next(e for e in events if e["event"] == "phase" and e["phase"] == "train")
    assert train_phase["done"] == 3 and train_phase["total"] == start["total_steps"]
    assert "tokenizer" not in {e.get("phase") for e in events}, "a resumed run keeps its tokenizer"
    assert events[-1]["steps"] == 5 and events[-1]["threads"] == 2


def test_ctrl_c_keeps_a_resumable_checkpoint_and_exits_cleanly(c_workspace, tmp_path, cache_home):
    out = tmp_path / "m.cllm"
    _interrupt_after_a_step(["train", str(c_workspace), "--out", str(out), "--epochs", "1000", "--json", *TINY],
                            out, cache_home, signal.SIGINT)


def test_a_time_budget_picks_what_the_flags_leave_unset(c_workspace, tmp_path, capsys):
    out = tmp_path / "m.cllm"
    shape = [flag for flag in TINY if flag not in ("--vocab-size", "300", "--grad-accum", "1")]
    assert main(["train", str(c_workspace), "--out", str(out), "--json", "--time-budget", "60", "--epochs", "1",
                 "--lr", "0.003", *shape]) == 0
    start = next(e for e in map(json.loads, capsys.readouterr().out.splitlines()) if e["event"] == "start")
    assert start["auto"] == ["dropout", "grad_accum", "vocab_size"]  # --lr and --epochs were given
    assert start["settings"]["lr"] == 0.003 and start["settings"]["grad_accum"] == 1 and start["epochs"] == 1
    train_config = load_checkpoint(out).metadata["train_config"]
    assert train_config["lr"] == 0.003 and train_config["grad_accum"] == 1


def write_skipped_files(workspace) -> None:
    """Candidates the scan leaves out: two binary files, a file holding an AWS key, a FIFO."""
    (workspace / "blob1.c").write_bytes(b"int x;\0\1")
    (workspace / "blob2.h").write_bytes(b"\0\0\0")
    (workspace / "keys.h").write_text('const char *k = "AKIA' + 'IOSFODNN7EXAMPLE";\n')
    os.mkfifo(workspace / "pipe.c")


def test_text_mode_prints_a_summary_of_skipped_files(c_workspace, tmp_path, capsys):
    write_skipped_files(c_workspace)
    assert main(["train", str(c_workspace), "--out", str(tmp_path / "m.cllm"), "--max-steps", "1", *TINY]) == 0
    assert "skipped 4: 2 binary, 1 not a regular file, 1 secret\n" in capsys.readouterr().out


def test_json_mode_lists_every_skipped_path_with_its_reason(c_workspace, tmp_path, capsys):
    write_skipped_files(c_workspace)
    assert main(["train", str(c_workspace), "--out", str(tmp_path / "m.cllm"), "--max-steps", "1", "--json", *TINY]) == 0
    start = next(e for e in map(json.loads, capsys.readouterr().out.splitlines()) if e["event"] == "start")
    assert start["skipped"] == [
        {"path": "blob1.c", "reason": "binary (contains NUL bytes)"},
        {"path": "blob2.h", "reason": "binary (contains NUL bytes)"},
        {"path": "keys.h", "reason": "secret (contains an AWS access key)"},
        {"path": "pipe.c", "reason": "not a regular file"},
    ]


def test_a_failed_training_leaves_no_lock_behind(tmp_path, cache_home, capsys):
    (tmp_path / "empty").mkdir()
    write_skipped_files(tmp_path / "empty")
    assert main(["train", str(tmp_path / "empty")]) == 2
    assert "no C files (.c, .h) to learn from" in capsys.readouterr().err
    assert not model_dir(tmp_path / "empty").exists()
    assert not list(cache_home.rglob("train.lock"))


def _cached_base(tiny_base_path) -> str:
    """The tiny base copied to where `cllm pretrain` puts the user's base (the test's own cache folder)."""
    import shutil

    from cllm.engine.paths import default_base_path

    default_base_path().parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tiny_base_path, default_base_path())
    return str(default_base_path().resolve())


BASE_RUN = ["--max-steps", "1", "--seq-len", "32", "--batch-size", "4", "--threads", "1", "--json"]


def test_a_second_run_continues_the_workspace_model_and_fresh_starts_over(c_workspace, tmp_path, capsys):
    run = ["train", str(c_workspace), "--time-budget", "0.09", "--max-steps", "1", "--json", *TINY]
    model = default_model_path(c_workspace)

    def train(*flags: str) -> tuple[list[dict], str, dict]:
        assert main([*run, *flags]) == 0
        out, err = capsys.readouterr()
        return [json.loads(line) for line in out.splitlines()], err, load_checkpoint(model).metadata

    first, _, first_meta = train()
    second, _, meta = train()
    assert "tokenizer" not in {e.get("phase") for e in second}, "the continued run keeps the model's tokenizer"
    assert meta["generation"] == 2 and meta["trained_before"] == dict.fromkeys(first_meta["train_files"], 1)
    assert first[-1]["corpus_seen"] < second[-1]["corpus_seen"]
    fresh, _, meta = train("--fresh")
    assert meta["generation"] == 1 and meta["trained_before"] == {} and "tokenizer" in {e.get("phase") for e in fresh}
    elsewhere = tmp_path / "other.cllm"
    assert main(["train", str(tmp_path), "--out", str(elsewhere), "--max-steps", "1", *TINY[2:]]) == 0
    capsys.readouterr()
    _, err, meta = train("--continue-from", str(elsewhere))
    assert "starting afresh" in err and "was trained on" in err and meta["generation"] == 1
    assert main([*run, "--fresh", "--continue-from", str(model)]) == 2
    assert "contradict" in capsys.readouterr().err


def test_train_fine_tunes_the_cached_base_by_default_and_no_base_ignores_it(c_workspace, tmp_path, tiny_base_path,
                                                                             capsys):
    cached = _cached_base(tiny_base_path)
    assert main(["train", str(c_workspace), "--out", str(tmp_path / "ft.cllm"), *BASE_RUN]) == 0
    assert load_checkpoint(tmp_path / "ft.cllm").metadata["base"]["path"] == cached
    assert main(["train", str(c_workspace), "--out", str(tmp_path / "s.cllm"), "--no-base", *BASE_RUN]) == 0
    scratch = load_checkpoint(tmp_path / "s.cllm")
    assert scratch.metadata["base"] is None
    assert scratch.tokenizer_json != load_checkpoint(tiny_base_path).tokenizer_json


def test_an_explicit_base_wins_and_contradicting_flags_are_refused(c_workspace, tmp_path, tiny_base_path, capsys):
    assert main(["train", str(c_workspace), "--out", str(tmp_path / "ft.cllm"), "--base", str(tiny_base_path),
                 *BASE_RUN]) == 0
    assert load_checkpoint(tmp_path / "ft.cllm").metadata["base"]["path"] == str(tiny_base_path.resolve())
    capsys.readouterr()
    for flags in (["--no-base"], ["--d-model", "64"], ["--resume", str(tmp_path / "ft.cllm")]):
        assert main(["train", str(c_workspace), "--base", str(tiny_base_path), *flags]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--base" in err
    assert main(["train", str(c_workspace), "--base", str(tmp_path / "missing.cllm")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_pretrain_writes_the_cached_base_extends_it_and_refuses_a_missing_folder(tmp_path, capsys):
    from cllm.engine.paths import default_base_path
    from conftest import write_tiny_include

    include = write_tiny_include(tmp_path / "include")
    assert main(["pretrain", str(include), "--max-steps", "1", "--vocab-size", "300", "--threads", "1",
                 "--json"]) == 0
    meta = load_checkpoint(default_base_path()).metadata
    assert len(meta["manifest"]) == 4 and not any("vector.h" in e["path"] for e in meta["manifest"])
    (include / "queue.h").write_text("struct queue { int head; };\n")
    assert main(["pretrain", str(include), "--max-steps", "1", "--threads", "1", "--json",
                 "--continue-from", str(default_base_path())]) == 0
    extended = load_checkpoint(default_base_path()).metadata
    assert extended["manifest"][:4] == meta["manifest"] and extended["manifest"][4]["path"].endswith("/queue.h")
    capsys.readouterr()
    assert main(["pretrain", str(tmp_path / "missing"), "--out", str(tmp_path / "b.cllm")]) == 2
    assert "is not a folder" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "pretrain"])
@pytest.mark.parametrize("kind", ["character device", "FIFO"])
def test_out_naming_a_device_or_fifo_is_refused_before_anything_runs(command, kind, c_workspace, tmp_path, capsys):
    if kind == "FIFO":
        out = tmp_path / "pipe"
        os.mkfifo(out)
    else:
        out = tmp_path / "null"
        os.symlink("/dev/null", out)  # as root, --out /dev/null itself would be replaced before the fix
    assert main([command, str(c_workspace), "--out", str(out), "--max-steps", "1", *TINY[:2]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"it is a {kind}" in err and "Traceback" not in err
    assert not out.resolve().is_file() and not (tmp_path / "repo_code.txt").exists()


def test_pretrain_ctrl_c_keeps_a_resumable_base_that_continue_from_extends(tmp_path, cache_home):
    from conftest import write_tiny_include

    include = write_tiny_include(tmp_path / "include")
    out = tmp_path / "base.cllm"
    ckpt = _interrupt_after_a_step(["pretrain", str(include), "--out", str(out), "--epochs", "1000", "--vocab-size",
                                    "300", "--seq-len", "32", "--threads", "1", "--json"], out, cache_home,
                                   signal.SIGTERM)  # what an editor's cancel sends
    assert len(ckpt.metadata["manifest"]) == 4
    assert main(["pretrain", str(include), "--out", str(out), "--continue-from", str(out), "--max-steps", "1",
                 "--threads", "1", "--json"]) == 0


def _interrupt_after_a_step(arguments: list[str], out: Path, cache_home: Path, sig: int):
    """Run `cllm ARGUMENTS` (with --json), send `sig` after its first step event; check it ended cancelled with exit
    130, no traceback, and a resumable checkpoint at `out` (returned, with its optimizer state)."""
    env = dict(os.environ, XDG_CACHE_HOME=str(cache_home))
    proc = subprocess.Popen([sys.executable, "-m", "cllm.server.cli", *arguments], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        for line in proc.stdout:
            if json.loads(line)["event"] == "step":
                proc.send_signal(sig)
                break
        rest, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    events = [json.loads(line) for line in rest.splitlines()]
    assert proc.returncode == 130 and "Traceback" not in err
    assert events[-1]["event"] == "done" and events[-1]["stop_reason"] == "cancelled"
    ckpt = load_checkpoint(out, with_optimizer=True)
    assert ckpt.optimizer["step"] == events[-1]["steps"] == ckpt.metadata["resume"]["step"]
    return ckpt
