"""`cllm train` killed at each fail point (engine/faults.py), starved of disk, or shown a workspace that changes
while it is scanned: afterwards the model file holds the last good model, no temporary file or lock stays in the
way, and `--resume` continues the killed run from its last checkpoint.

Each case trains a first, good model (once per module, seed 0), then a second run (seed 1) onto the same file
that dies at the fail point. The workspace has 18 optimizer steps per epoch; a run of two epochs writes three
files atomically: the consolidated corpus, the epoch-1 checkpoint, the final model."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from cllm.engine.model.checkpoint import load_checkpoint, weights_sha256
from cllm.engine.faults import FAULT_ENV
from cllm.engine.paths import acquire_training_lock, release_training_lock
from conftest import write_c_workspace

MODEL = ["--vocab-size", "300", "--d-model", "32", "--layers", "1", "--heads", "2", "--ffn", "64"]
RUN = ["--epochs", "2", "--seq-len", "32", "--batch-size", "8", "--grad-accum", "1", "--spheres", "2",
       "--threads", "1", "--json"]
STEPS_PER_EPOCH = 18
FIRST, EPOCH_1 = "the first run's model", "the killed run's epoch-1 checkpoint"
# (fail point, what the model file holds after the kill)
KILLS = [
    ("scan-listed:1", FIRST),
    ("scanned:1", FIRST),
    ("tokenizer-trained:1", FIRST),
    ("tokenized:1", FIRST),
    ("atomic-write-filled:1", FIRST),  # the consolidated corpus (repo_code.txt) written, not synced
    ("step:5", FIRST),
    ("validated:1", FIRST),
    ("atomic-write-opened:2", FIRST),  # the epoch-1 checkpoint's temporary file, empty
    ("checkpoint-write:2", FIRST),  # ... holding the weights but not the optimizer state
    ("atomic-write-synced:2", FIRST),  # ... complete, not yet renamed
    ("atomic-write-renamed:2", EPOCH_1),
    ("step:25", EPOCH_1),
    ("mixture-fit:1", EPOCH_1),
    ("checkpoint-write:7", EPOCH_1),  # the final model half written
]
# the file whose atomic write the kill interrupts, leaving its temporary file behind
INTERRUPTED_WRITES = {"atomic-write-filled:1": "repo_code.txt", "atomic-write-opened:2": "model.cllm",
                      "checkpoint-write:2": "model.cllm", "atomic-write-synced:2": "model.cllm",
                      "checkpoint-write:7": "model.cllm"}


@dataclass
class First:
    """The workspace and its first, good model."""

    workspace: Path
    model: Path
    sha: str
    cache: Path


@dataclass
class Run:
    returncode: int
    events: list[dict]
    stderr: str

    @property
    def start(self) -> dict:
        """The start event (the phase events come before it)."""
        return next(event for event in self.events if event["event"] == "start")


def cllm_train(first: First, out: Path, *args: str, fault: str | None = None, preexec_fn=None) -> Run:
    """`cllm train WORKSPACE --out OUT ARGS` in a child process, with CLLM_FAULT=fault when given."""
    env = {**os.environ, "XDG_CACHE_HOME": str(first.cache)}
    env.pop(FAULT_ENV, None)
    if fault:
        env[FAULT_ENV] = fault
    proc = subprocess.run([sys.executable, "-m", "cllm.server.cli", "train", str(first.workspace), "--out", str(out),
                           *args], capture_output=True, text=True, env=env, timeout=600, preexec_fn=preexec_fn)
    complete_lines = proc.stdout.split("\n")[:-1]  # a kill may cut the last line short
    return Run(proc.returncode, [json.loads(line) for line in complete_lines], proc.stderr)


@pytest.fixture(scope="module")
def first(tmp_path_factory) -> First:
    root = tmp_path_factory.mktemp("faults")
    first = First(write_c_workspace(root / "ws"), root / "first" / "model.cllm", "", root / "cache")
    run = cllm_train(first, first.model, *MODEL, *RUN, "--seed", "0")
    assert run.returncode == 0, run.stderr
    assert run.start["steps_per_epoch"] == STEPS_PER_EPOCH
    first.sha = weights_sha256(load_checkpoint(first.model))
    return first


@pytest.fixture
def out(first, tmp_path, monkeypatch) -> Path:
    """A copy of the first model, in a folder of its own, which the second run overwrites."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(first.cache))  # where the workspace's lock lives
    (tmp_path / "out").mkdir()
    return Path(shutil.copy(first.model, tmp_path / "out" / "model.cllm"))


def temporaries(folder: Path, name: str = "*") -> list[str]:
    return sorted(path.name for path in folder.glob(f".{name}.*.tmp"))


def assert_lock_is_free(workspace: Path) -> None:
    """The next training of the workspace can start: the dead trainer's lock went with it."""
    release_training_lock(acquire_training_lock(workspace))


@pytest.mark.parametrize(("fault", "holds"), KILLS, ids=[fault for fault, _ in KILLS])
def test_a_trainer_killed_at_a_fail_point_leaves_the_last_good_model_and_can_resume(first, out, fault, holds):
    killed = cllm_train(first, out, *MODEL, *RUN, "--seed", "1", fault=fault)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    if fault in INTERRUPTED_WRITES:
        assert temporaries(out.parent, INTERRUPTED_WRITES[fault]), "the kill was to interrupt this write"

    model = load_checkpoint(out, with_optimizer=True)
    assert temporaries(out.parent, "model.cllm") == []  # the load removed the dead writer's temporary file
    if holds == FIRST:
        assert weights_sha256(model) == first.sha
    else:
        assert model.metadata["train_config"]["seed"] == 1 and model.metadata["steps"] == STEPS_PER_EPOCH
    assert_lock_is_free(first.workspace)

    if holds == EPOCH_1 or fault == "atomic-write-filled:1":
        more = [] if holds == EPOCH_1 else ["--epochs", "3"]  # the first model finished its two epochs
        resumed = cllm_train(first, out, "--resume", str(out), "--threads", "1", "--json", *more)
        assert resumed.returncode == 0, resumed.stderr
        start, done = resumed.start, resumed.events[-1]
        assert start["step"] == model.metadata["steps"] and done["steps"] == start["step"] + STEPS_PER_EPOCH
        assert temporaries(out.parent) == []  # the corpus file's leftover too
        assert load_checkpoint(out).metadata["steps"] == done["steps"]


def test_a_full_disk_during_the_save_fails_cleanly_and_keeps_the_last_good_model(first, out):
    """A file size limit (RLIMIT_FSIZE: writes beyond it fail with EFBIG) above the consolidated corpus and below
    the model file: the epoch-1 checkpoint cannot be written."""
    limit = out.stat().st_size // 2

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    failed = cllm_train(first, out, *MODEL, *RUN, "--seed", "1", preexec_fn=small_disk)
    assert failed.returncode == 1
    error = failed.events[-1]
    assert error["event"] == "error" and error["message"].startswith(f"could not write model file {out}: File too large")
    assert "Traceback" not in failed.stderr
    assert weights_sha256(load_checkpoint(out)) == first.sha
    assert temporaries(out.parent) == []
    assert_lock_is_free(first.workspace)


def test_files_deleted_or_changed_while_scanned_are_skipped_or_read_as_they_now_are(first, tmp_path):
    """The trainer freezes once it has listed the workspace; meanwhile files are deleted, truncated and replaced
    by a folder and a FIFO; it then goes on and trains on what is there."""
    workspace = write_c_workspace(tmp_path / "ws")
    env = {**os.environ, "XDG_CACHE_HOME": str(first.cache), FAULT_ENV: "scan-listed:1:stop"}
    proc = subprocess.Popen([sys.executable, "-m", "cllm.server.cli", "train", str(workspace), "--out",
                             str(tmp_path / "model.cllm"), *MODEL, *RUN], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _, status = os.waitpid(proc.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status)
    (workspace / "mod1.c").unlink()
    os.truncate(workspace / "mod2.c", 40)
    (workspace / "mod3.c").unlink()
    (workspace / "mod3.c").mkdir()
    (workspace / "mod4.c").unlink()
    os.mkfifo(workspace / "mod4.c")
    os.kill(proc.pid, signal.SIGCONT)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    start = next(e for e in map(json.loads, stdout.splitlines()) if e["event"] == "start")
    assert {skipped["path"]: skipped["reason"] for skipped in start["skipped"]} == {
        "mod1.c": "deleted during the scan", "mod3.c": "not a regular file", "mod4.c": "not a regular file"}
    metadata = load_checkpoint(tmp_path / "model.cllm").metadata
    assert start["files"] == 5 and "mod2.c" in metadata["train_files"] + metadata["val_files"]
    assert start["corpus"]["bytes"] == sum(os.path.getsize(workspace / f"mod{i}.c") for i in (0, 2, 5, 6, 7))
