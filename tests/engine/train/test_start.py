"""engine/train/start.py: the one decision of how a run starts, for each combination of flags and files on disk."""

import pytest

from cllm.engine.events import ResumePosition
from cllm.engine.model.checkpoint import load_checkpoint, save_checkpoint
from cllm.engine.train import start as start_module
from cllm.engine.train.errors import TrainError
from cllm.engine.train.start import (Continue, Fresh, FromBase, Resume, StartRequest, best_base, continuable,
                                     decide_start)


@pytest.fixture
def cached_base(tmp_path, monkeypatch):
    """The user's cached base path, in tmp_path (absent until a test writes it)."""
    path = tmp_path / "cache" / "base.cllm"
    monkeypatch.setattr(start_module, "default_base_path", lambda: path)
    return path


@pytest.fixture
def with_base(cached_base, tiny_base_path):
    cached_base.parent.mkdir(parents=True, exist_ok=True)
    cached_base.write_bytes(tiny_base_path.read_bytes())
    return cached_base


@pytest.fixture
def workspace(tmp_path):
    folder = tmp_path / "ws"
    folder.mkdir()
    return folder


@pytest.fixture
def own_model(workspace, tmp_path, tiny_model_path):
    """A model trained (by its metadata) on `workspace`, with its optimizer state: continuable."""
    ckpt = load_checkpoint(tiny_model_path, with_optimizer=True)
    ckpt.metadata["workspace"] = str(workspace.resolve())
    position = ResumePosition(epoch=1, batch=0, step=1, tokens=1, best_epoch_val=None, bad_epochs=0)
    ckpt.metadata["resume"] = position.to_json()
    path = tmp_path / "models" / "model.cllm"
    path.parent.mkdir()
    save_checkpoint(path, ckpt)
    return path


def _decide(workspace, verify=True, **flags):
    refusals = []
    start = decide_start(StartRequest(workspace=workspace, **flags), verify=verify, refused=refusals.append)
    return start, refusals


def test_nothing_on_disk_starts_fresh(workspace, cached_base):
    assert _decide(workspace)[0] == Fresh()


def test_the_cached_base_is_fine_tuned_by_default(workspace, with_base):
    assert _decide(workspace)[0] == FromBase(str(with_base))


def test_no_base_trains_from_scratch_despite_the_cached_base(workspace, with_base):
    assert _decide(workspace, no_base=True)[0] == Fresh()


def test_a_shape_option_trains_from_scratch_despite_the_cached_base(workspace, with_base):
    assert _decide(workspace, shape=("layers",))[0] == Fresh()


def test_a_named_base_is_fine_tuned_without_a_cached_one(workspace, cached_base):
    assert _decide(workspace, base="my.cllm")[0] == FromBase("my.cllm")


def test_a_named_base_wins_over_the_cached_one(workspace, with_base):
    assert _decide(workspace, base="my.cllm")[0] == FromBase("my.cllm")


def test_resume_resumes_even_with_a_cached_base(workspace, with_base):
    assert _decide(workspace, resume="part.cllm")[0] == Resume("part.cllm")


def test_resume_wins_over_the_workspace_model(workspace, cached_base, own_model):
    assert _decide(workspace, resume="part.cllm", own_model=own_model)[0] == Resume("part.cllm")


def test_the_workspace_model_is_continued_when_it_is_there(workspace, with_base, own_model):
    assert _decide(workspace, own_model=own_model)[0] == Continue(str(own_model))


def test_fresh_does_not_continue_the_workspace_model(workspace, cached_base, own_model):
    assert _decide(workspace, fresh=True, own_model=own_model)[0] == Fresh()


def test_fresh_still_fine_tunes_the_cached_base(workspace, with_base, own_model):
    assert _decide(workspace, fresh=True, own_model=own_model)[0] == FromBase(str(with_base))


def test_a_named_base_does_not_continue_the_workspace_model(workspace, cached_base, own_model):
    assert _decide(workspace, base="my.cllm", own_model=own_model)[0] == FromBase("my.cllm")


def test_an_absent_workspace_model_is_not_continued_and_not_reported(workspace, cached_base, tmp_path):
    assert _decide(workspace, own_model=tmp_path / "none.cllm") == (Fresh(), [])


def test_continue_from_continues_the_named_model(workspace, cached_base, own_model):
    assert _decide(workspace, continue_from=str(own_model))[0] == Continue(str(own_model))


def test_a_missing_continue_from_is_reported_and_starts_over(workspace, cached_base, tmp_path):
    start, refusals = _decide(workspace, continue_from=str(tmp_path / "none.cllm"))
    assert start == Fresh() and len(refusals) == 1


def test_another_workspaces_model_is_reported_and_the_base_fine_tuned(workspace, with_base, own_model, tmp_path):
    start, refusals = _decide(tmp_path, own_model=own_model)
    assert start == FromBase(str(with_base)) and "was trained on" in refusals[0]


def test_another_shape_than_the_models_is_reported_and_starts_fresh(workspace, cached_base, own_model):
    start, refusals = _decide(workspace, own_model=own_model, shape=("layers",), kept_shape={"n_layers": 99})
    assert start == Fresh() and "has another n_layers" in refusals[0]


def test_the_models_own_shape_still_continues(workspace, cached_base, own_model):
    layers = load_checkpoint(own_model).model_config.n_layers
    assert _decide(workspace, own_model=own_model, shape=("layers",),
                   kept_shape={"n_layers": layers})[0] == Continue(str(own_model))


def test_without_verify_the_model_file_is_not_read(workspace, cached_base, tmp_path):
    garbage = tmp_path / "garbage.cllm"
    garbage.write_bytes(b"not a model")
    assert _decide(workspace, verify=False, own_model=garbage)[0] == Continue(str(garbage))


@pytest.mark.parametrize("flags, message", [
    ({"continue_from": "m.cllm", "fresh": True}, "--continue-from and --fresh"),
    ({"continue_from": "m.cllm", "resume": "p.cllm"}, "--continue-from and --resume"),
    ({"continue_from": "m.cllm", "base": "b.cllm"}, "--continue-from and --base"),
    ({"base": "b.cllm", "no_base": True}, "--base and --no-base"),
    ({"base": "b.cllm", "resume": "p.cllm"}, "--base does not go with --resume"),
    ({"base": "b.cllm", "shape": ("layers",)}, "--layers cannot change with --base"),
])
def test_contradicting_flags_are_refused(workspace, cached_base, flags, message):
    with pytest.raises(ValueError, match=message):
        decide_start(StartRequest(workspace=workspace, **flags))


def test_best_base_is_the_cached_base_when_it_exists(cached_base, with_base):
    assert best_base() == with_base


def test_best_base_is_none_without_one(cached_base):
    assert best_base() is None


def test_continuable_says_why_a_model_without_optimizer_state_cannot_go_on(workspace, own_model):
    ckpt = load_checkpoint(own_model)
    del ckpt.metadata["resume"]
    save_checkpoint(own_model, ckpt)
    assert "no optimizer state" in continuable(own_model, workspace, {})


def test_resuming_a_model_without_optimizer_state_is_a_train_error(own_model):
    save_checkpoint(own_model, load_checkpoint(own_model))  # without the optimizer
    with pytest.raises(TrainError, match="cannot resume"):
        Resume(own_model).open()


def test_a_fresh_start_keeps_the_requested_shape(workspace):
    assert Fresh().open().shape is None
