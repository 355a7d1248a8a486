"""Per-workspace model folders and the training lock (engine/paths.py)."""

import re

import pytest

from cllm.engine.paths import (LOCK_FILE, LOCK_HELD_ENV, MODEL_FILE, WorkspaceBusy, acquire_training_lock,
                               default_model_path, model_dir, release_training_lock)


def test_model_folder_is_named_after_the_workspace_and_its_path(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    a, b = tmp_path / "one" / "src", tmp_path / "two" / "src"
    assert re.fullmatch(r"src-[0-9a-f]{12}", model_dir(a).name)
    assert model_dir(a) != model_dir(b)
    assert model_dir(a) == model_dir(tmp_path / "one" / "." / "src")
    assert model_dir(a).is_relative_to(tmp_path / "cache")
    assert default_model_path(a) == model_dir(a) / "model.cllm"
    assert re.fullmatch(r"my_work_-[0-9a-f]{12}", model_dir(tmp_path / "my work!").name)


def test_training_lock_is_exclusive_per_workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    lock = acquire_training_lock(tmp_path / "ws")
    try:
        with pytest.raises(WorkspaceBusy, match="already running"):
            acquire_training_lock(tmp_path / "ws")
        acquire_training_lock(tmp_path / "other").release()
    finally:
        lock.release()
    acquire_training_lock(tmp_path / "ws").release()


def test_a_child_of_the_lock_holder_trains_under_the_parents_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    parent = acquire_training_lock(tmp_path / "ws")
    try:
        monkeypatch.setenv(LOCK_HELD_ENV, parent.lock_file)
        assert acquire_training_lock(tmp_path / "ws") is None
        with pytest.raises(WorkspaceBusy):  # the variable names one lock file, not every workspace's
            monkeypatch.setenv(LOCK_HELD_ENV, parent.lock_file + "x")
            acquire_training_lock(tmp_path / "ws")
    finally:
        parent.release()


def test_releasing_leaves_no_lock_in_a_folder_without_a_model(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    release_training_lock(acquire_training_lock(tmp_path / "failed"))
    assert not model_dir(tmp_path / "failed").exists()
    lock = acquire_training_lock(tmp_path / "trained")
    default_model_path(tmp_path / "trained").write_bytes(b"model")
    release_training_lock(lock)
    assert sorted(p.name for p in model_dir(tmp_path / "trained").iterdir()) == sorted([LOCK_FILE, MODEL_FILE])
