"""Workspace: model folder, loading, completion, status, settings, and training through the real trainer."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import shutil
import threading
import time
import weakref
from pathlib import Path

import numpy as np
import pytest

from cllm.engine import Completer, CompletionOptions, load_model
from cllm.engine.config import ModelConfig, Option, TrainConfig, config_options
from cllm.engine.model.checkpoint import load_checkpoint, save_checkpoint
from cllm.engine.complete.mixture import COMPONENTS, N_BUCKETS, Mixture, mixture_metadata
from cllm.engine.paths import acquire_training_lock, default_base_path
from cllm.engine.complete.workspace_index import BYTES_PER_SOURCE_BYTE, sampled
from cllm.server.cli import build_parser
from cllm.server.cli.flags import MODEL_FLAGS
from cllm.server.cli.request import apply_request
from cllm.server.cli.train import _train_configs
from cllm.server.settings import DEFAULT_EDITOR_TIME_BUDGET, TRAINING_KEYS
from cllm.server.worker import HTTP, LSP
from cllm.server.records import ServerEvent, TrainingFinished
from cllm.server.trainer_job import TrainerJob
from cllm.server.workspace import Workspace, default_model_dir
from conftest import TINY_C_SOURCES, write_c_workspace, write_tiny_sources

TINY_TRAINING = {"epochs": 1, "maxSteps": 3, "spheres": 2, "threads": 1, "batchSize": 4, "seqLen": 32,
                 "vocabSize": 300, "dModel": 32, "layers": 1, "heads": 2, "ffn": 64}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private user cache folder for the default model folders."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def trained_dir(tmp_path: Path, tiny_model_path: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copyfile(tiny_model_path, folder / "model.cllm")
    return folder


def test_the_default_model_folder_is_per_workspace_in_the_user_cache(tmp_path: Path, cache: Path):
    (tmp_path / "a" / "src").mkdir(parents=True)
    (tmp_path / "b" / "src").mkdir(parents=True)
    first, second = Workspace(tmp_path / "a" / "src"), Workspace(tmp_path / "b" / "src")
    assert first.model_dir != second.model_dir
    assert first.model_dir.parent == cache / "cllm" / "models"
    assert first.model_dir.name.startswith("src-")
    assert first.model_dir == default_model_dir(tmp_path / "a" / "src")
    assert not first.has_model and first.complete("int ", "") is None
    assert first.status()["model"] == {"present": False}


def test_the_model_dir_setting_and_argument_choose_the_folder(tmp_path: Path, trained_dir: Path, cache: Path):
    by_setting = Workspace(tmp_path, {"modelDir": str(trained_dir)})
    by_argument = Workspace(tmp_path, {"modelDir": str(tmp_path / "ignored")}, model_dir=trained_dir)
    assert by_setting.model_dir == by_argument.model_dir == trained_dir.resolve()
    assert by_setting.has_model and by_argument.has_model


def test_complete_matches_the_engine_and_honours_settings(tmp_path: Path, trained_dir: Path, tiny_model_path: Path):
    workspace = Workspace(tmp_path, {"modelDir": str(trained_dir), "maxTokens": 6})
    prefix = "int main(void) {\n    "
    got = workspace.complete(prefix, "", path=tmp_path / "src" / "main.c", doc_key="doc")
    want = Completer(load_model(tiny_model_path)).complete(prefix, "", CompletionOptions(max_tokens=6),
                                                           path="src/main.c")
    assert got.text == want.text and got.tokens <= 6
    longer = workspace.complete(prefix, "", path="src/main.c", max_tokens=12)
    assert longer.tokens >= got.tokens
    with pytest.raises(ValueError, match="colour"):
        workspace.complete(prefix, "", colour="blue")
    cancel = threading.Event()
    cancel.set()
    assert workspace.complete(prefix, "", cancel=cancel).stop_reason == "cancelled"


async def test_the_workspace_owns_one_worker_for_both_faces_until_closed(tmp_path: Path, trained_dir: Path):
    workspace = Workspace(tmp_path, {"modelDir": str(trained_dir), "maxTokens": 4})
    prefix = "int main(void) {\n    "
    from_editor = workspace.worker.submit(lambda cancel: workspace.complete(prefix, cancel=cancel), face=LSP, key="d")
    from_http = workspace.worker.submit(lambda cancel: workspace.complete(prefix, cancel=cancel), face=HTTP)
    first, second = await asyncio.gather(from_editor, from_http)
    assert first.text == second.text == workspace.complete(prefix).text
    workspace.close()
    with pytest.raises(RuntimeError, match="closed"):
        await workspace.worker.submit(lambda cancel: workspace.complete(prefix), face=HTTP)


def test_the_mixture_is_swapped_in_once_built(tmp_path: Path, tiny_model_path: Path):
    source = tmp_path / "ws"
    write_tiny_sources(source)
    ckpt = load_checkpoint(tiny_model_path)
    cache_only = Mixture(np.tile(np.eye(COMPONENTS)[2], (N_BUCKETS, 1)))  # all weight on the document cache
    ckpt.metadata.update(workspace=str(source), train_files=sorted(TINY_C_SOURCES), mixture=mixture_metadata(cache_only))
    (tmp_path / "models").mkdir()
    save_checkpoint(tmp_path / "models" / "model.cllm", ckpt)
    workspace = Workspace(source, {"modelDir": str(tmp_path / "models")})
    prefix = "int zzz_counter = 0;\nint zzz_counter = 0;\nint y;\nint zzz_"  # not the line above: that is cut
    assert workspace.mixture_settled.wait(120), "the mixture completer was never built"
    assert workspace.complete(prefix, "", path="x.c").text == "counter = 0;"


def test_a_swapped_out_model_is_freed(tmp_path: Path, tiny_model_path: Path):
    """Nothing (completer, workspace index builder, shared completers) keeps the old model's weights alive."""
    source = tmp_path / "ws"
    write_tiny_sources(source)
    ckpt = load_checkpoint(tiny_model_path)
    ckpt.metadata.update(workspace=str(source), train_files=sorted(TINY_C_SOURCES),
                         mixture=mixture_metadata(Mixture(np.tile(np.eye(COMPONENTS)[2], (N_BUCKETS, 1)))))
    (tmp_path / "models").mkdir()
    save_checkpoint(tmp_path / "models" / "model.cllm", ckpt)
    workspace = Workspace(source, {"modelDir": str(tmp_path / "models")})
    assert workspace.mixture_settled.wait(120), "the mixture completer was never built"
    workspace.complete("int zzz_", "", path="x.c")
    old_params = weakref.ref(workspace.model.params)
    ckpt.params = ckpt.params * 0.5  # model B
    save_checkpoint(tmp_path / "models" / "model.cllm", ckpt)
    workspace.load()
    assert workspace.mixture_settled.wait(120)
    workspace.complete("int zzz_", "", path="x.c")
    gc.collect()
    assert old_params() is None
    workspace.close()


def test_the_index_memory_setting_caps_the_workspace_index_from_the_next_model_load(tmp_path: Path,
                                                                                    tiny_model_path: Path):
    source = write_c_workspace(tmp_path / "ws", files=8)
    files = sorted(p.name for p in source.glob("*.c"))
    ckpt = load_checkpoint(tiny_model_path)
    ckpt.metadata.update(workspace=str(source), train_files=files,
                         mixture=mixture_metadata(Mixture(np.tile(np.eye(COMPONENTS)[2], (N_BUCKETS, 1)))))
    (tmp_path / "models").mkdir()
    save_checkpoint(tmp_path / "models" / "model.cllm", ckpt)
    half_mb = sum((source / f).stat().st_size for f in files) * BYTES_PER_SOURCE_BYTE * 0.5 / 2**20
    settings = {"modelDir": str(tmp_path / "models")}
    workspace = Workspace(source, settings)
    assert workspace.mixture_settled.wait(120), "the mixture completer was never built"
    built = workspace._index
    assert built.progress["files"] == len(files) and built.fraction == 1.0
    assert workspace.update_settings({**settings, "indexMemoryMB": half_mb}) == []
    assert workspace._index is built  # the index in force is kept until the next model load
    workspace.load()
    assert workspace.mixture_settled.wait(120), "the mixture completer was never rebuilt"
    assert workspace._index.fraction == pytest.approx(0.5)
    assert set(workspace._index.index.files) == {f for f in files if sampled(f, workspace._index.fraction)}
    assert 0 < workspace._index.progress["files"] < len(files)
    workspace.close()


def test_before_any_training_the_base_serves_with_the_workspace_mixture(tmp_path: Path, cache: Path,
                                                                       tiny_base_path: Path):
    """No model of its own: the base model (where `cllm pretrain` writes it) completes, mixed with a 5-gram over
    this workspace's files built in the background (here all the stored weight is on that 5-gram)."""
    from cllm.engine.paths import default_base_path

    ckpt = load_checkpoint(tiny_base_path)
    kn_only = Mixture(np.tile(np.eye(COMPONENTS)[1], (N_BUCKETS, 1)))
    everything = {"low": 0.0, "normal": 0.0, "high": 0.0}  # show every suggestion, however unsure
    ckpt.metadata.update(mixture=mixture_metadata(kn_only), thresholds=everything)
    default_base_path().parent.mkdir(parents=True)
    save_checkpoint(default_base_path(), ckpt)
    source = tmp_path / "ws"
    (source / "src").mkdir(parents=True)
    (source / "src" / "counter.c").write_text("int zzz_counter = 0;\nint zzz_counter_max = 10;\n")
    workspace = Workspace(source)
    status = workspace.status()["model"]
    assert status["serving"] == "base" and status["path"] == str(default_base_path()) and status["base"] is None
    assert workspace.mixture_settled.wait(120), "the mixture completer was never built"
    assert workspace.complete("int zzz_", "", path="other.c").text.startswith("counter")
    (workspace.model_dir / "model.cllm").parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tiny_base_path, workspace.model_dir / "model.cllm")
    workspace.load()
    assert workspace.status()["model"]["serving"] == "workspace"


@pytest.mark.parametrize("damaged", [False, True])
def test_the_user_base_serves_unless_damaged_and_each_base_is_read_once(
        tmp_path: Path, cache: Path, tiny_base_path: Path, monkeypatch: pytest.MonkeyPatch, damaged: bool):
    from cllm.engine.model import checkpoint
    from cllm.engine.paths import default_base_path
    from cllm.engine.train.shipped import SHIPPED_BASE_ENV

    monkeypatch.setenv(SHIPPED_BASE_ENV, str(tiny_base_path))
    user = default_base_path()
    user.parent.mkdir(parents=True)
    user.write_bytes(tiny_base_path.read_bytes()[:1000] if damaged else tiny_base_path.read_bytes())
    read: list[Path] = []
    real_read = checkpoint._read
    monkeypatch.setattr(checkpoint, "_read", lambda f, path, *rest: read.append(path) or real_read(f, path, *rest))
    workspace = Workspace(tmp_path / "ws")
    try:
        status = workspace.status()["model"]
    finally:
        workspace.close()
    assert status["serving"] == "base" and status["path"] == str(tiny_base_path if damaged else user)
    assert read == ([user, tiny_base_path] if damaged else [user])


def test_status_describes_the_model(tmp_path: Path, trained_dir: Path):
    status = Workspace(tmp_path, {"modelDir": str(trained_dir)}).status()
    assert status["workspace"] == str(tmp_path.resolve())
    assert status["model"]["present"] is True
    assert status["model"]["config"] == {"vocabSize": 320, "dModel": 32, "layers": 2, "heads": 4, "ffn": 64,
                                         "maxSeqLen": 64}
    assert status["training"] == {"state": "idle"}


def test_a_corrupt_model_is_reported_not_raised(tmp_path: Path):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "model.cllm").write_bytes(b"not a model at all")
    workspace = Workspace(tmp_path, {"modelDir": str(folder)})
    assert not workspace.has_model
    assert workspace.status()["model"]["present"] is False and workspace.status()["model"]["error"]


def test_settings_problems_are_collected_and_the_rest_applies(tmp_path: Path, trained_dir: Path):
    workspace = Workspace(tmp_path, {"modelDir": str(trained_dir), "maxTokens": 0, "multiline": "yes",
                                     "training": {"epochs": 2.5, "threads": 0, "nope": 1}, "extra": True})
    problems = "\n".join(workspace.settings_problems)
    for key in ("maxTokens", "multiline", "training.epochs", "training.nope", "extra"):
        assert f"cllm.{key}" in problems
    assert workspace.settings.training == {"threads": 0}
    assert workspace.update_settings({"enable": False, "modelDir": str(tmp_path / "empty")}) == []
    assert workspace.settings.enable is False and not workspace.has_model  # moved to an empty folder


def test_the_trainer_continues_the_workspace_model_unless_fresh(tmp_path: Path, trained_dir: Path, cache: Path):
    model = str(trained_dir / "model.cllm")
    continued = Workspace(tmp_path, {"modelDir": str(trained_dir)})._train_request(tmp_path, {"epochs": 1})
    fresh = Workspace(tmp_path, {"modelDir": str(trained_dir)})._train_request(tmp_path, {"fresh": True})
    untrained = Workspace(tmp_path)  # no model yet in the default folder
    untrained.model_dir.mkdir(parents=True)
    first = untrained._train_request(tmp_path, {})
    assert continued["continue_from"] == model and "fresh" not in continued["options"]
    assert fresh["options"]["fresh"] is True and "continue_from" not in fresh and "continue_from" not in first


def _accepted_value(option: Option):
    """A value the option's check accepts, other than its usual default where that is easy."""
    check = option.check
    if check.kind is bool:
        return True
    if check.choices:
        return check.choices[0]
    return 3 if check.kind is int else 0.25


def test_every_option_the_editor_can_set_reaches_the_trainer(tmp_path: Path, cache: Path):
    training = {key: _accepted_value(option) for key, option in TRAINING_KEYS.items()}
    workspace = Workspace(tmp_path, {"modelDir": str(tmp_path / "models"), "training": training})
    assert workspace.settings_problems == []
    options, _ = workspace.training_options({})
    request = tmp_path / "request.json"
    request.write_text(json.dumps(workspace._train_request(tmp_path, options, from_scratch=True)))
    args = build_parser().parse_args(["train", "--request", str(request), "--json"])
    apply_request(args, "train")
    model_config, train_config = _train_configs(args)
    fields = {o.flag: name for cls in (ModelConfig, TrainConfig) for name, o in config_options(cls).items()}
    for key, option in TRAINING_KEYS.items():
        assert getattr(args, option.flag) == training[key], key
        if option.flag in fields:
            config = model_config if option.flag in MODEL_FLAGS else train_config
            assert getattr(config, fields[option.flag]) == training[key], key
    assert args.path == str(tmp_path) and args.no_base is True and args.out.endswith("model.cllm.training")


def test_a_prepared_base_gets_its_request_as_cllm_pretrain_takes_it(tmp_path: Path, cache: Path,
                                                                   monkeypatch: pytest.MonkeyPatch):
    sent = {}

    def start(job, request, options, out_path, **more):
        sent.update(request=request, kind=more["kind"])
        return {"started": True}

    monkeypatch.setattr(TrainerJob, "start", start)
    workspace = Workspace(tmp_path, {"modelDir": str(tmp_path / "models"),
                                     "training": {"baseCorpus": ["/inc"], "epochs": 2, "layers": 2, "fresh": True}})
    assert workspace.start_pretraining(time_budget=30) == {"started": True} and sent["kind"] == "pretrain"
    request = tmp_path / "request.json"
    request.write_text(json.dumps(sent["request"]))
    args = build_parser().parse_args(["pretrain", "--request", str(request), "--json"])
    apply_request(args, "pretrain")
    assert (args.paths, args.epochs, args.time_budget, args.out) == (["/inc"], 2, 30.0, str(default_base_path()))
    assert set(sent["request"]["options"]) == {"epochs", "time_budget"}  # the shape and `fresh` are train's


def test_bad_training_requests_are_refused_with_a_reason(tmp_path: Path, cache: Path):
    (tmp_path / "ws").mkdir()
    workspace = Workspace(tmp_path / "ws", {"modelDir": str(tmp_path / "models")})
    for refused, words in ((workspace.start_training(epochs=0), "epochs"),
                           (workspace.start_training(colour=1), "colour"),
                           (workspace.start_training(path=tmp_path), "not inside"),
                           (workspace.start_training(path=tmp_path / "ws" / "missing"), "does not exist")):
        assert refused["code"] == "invalid" and words in refused["reason"]
    lock = acquire_training_lock(tmp_path / "ws")
    try:
        busy = workspace.start_training(**{"max_steps": 1})
    finally:
        lock.release()
    assert busy["started"] is False and busy["code"] == "busy" and "already running" in busy["reason"]
    assert workspace.cancel_training() is False
    assert workspace.status()["training"] == {"state": "idle"}


def test_training_swaps_the_new_model_in_and_publishes_events(c_workspace: Path, tmp_path: Path,
                                                              trained_dir: Path, cache: Path):
    (c_workspace / "blob.h").write_bytes(b"\x00\x01\x02 not text")  # skipped as binary
    workspace = Workspace(c_workspace, {"modelDir": str(trained_dir), "training": TINY_TRAINING})
    events: list[dict] = []
    finished = threading.Event()

    def on_event(event: ServerEvent) -> None:
        events.append(event.to_json())
        if isinstance(event, TrainingFinished):
            finished.set()

    workspace.subscribe(on_event)
    assert workspace.start_training() == {"started": True}
    assert workspace.start_training()["started"] is False  # one at a time
    assert workspace.has_model and workspace.model.config.n_layers == 2  # the last good model meanwhile
    assert workspace.status()["training"]["options"]["timeBudget"] == DEFAULT_EDITOR_TIME_BUDGET  # not "no limit"
    assert finished.wait(240), "training did not finish"
    kinds = [e["event"] for e in events]
    assert kinds[0] == "training_started" and kinds[-2:] == ["model_loaded", "training_finished"]
    assert {"phase", "start", "step", "done"} <= set(kinds)
    assert {e["phase"] for e in events if e["event"] == "phase"} >= {"scan", "tokenizer", "tokenize", "train"}
    assert events[-1]["state"] == "done"
    assert workspace.model.config.n_layers == 1
    status = workspace.status()
    assert status["training"]["state"] == "done" and status["training"]["percent"] == 100
    assert status["training"]["phase"] == "train" and status["training"]["unit"] == "steps"
    assert status["model"]["files"] == 8 and status["model"]["lastLoss"] is not None
    assert 0.0 <= status["model"]["lineExactMatch"] <= 1.0  # the held-out number the status bar shows
    assert workspace.wait_training(60)
    assert not list(cache.rglob("train.lock")), "a model folder elsewhere leaves no lock in the user's cache"
    assert status["training"]["lineExactMatch"] == status["model"]["lineExactMatch"]
    assert status["training"]["timeBudget"] == DEFAULT_EDITOR_TIME_BUDGET
    assert status["training"]["skipped"] == {"count": 1, "reasons": {"binary": 1}, "summary": "skipped 1: 1 binary"}
    assert all(e["seconds_remaining"] >= 0 for e in events if e["event"] == "step")
    assert not list(trained_dir.glob("model.cllm.training*"))
    # the lock is free again: a second run starts, with the budget it is given
    assert workspace.start_training(time_budget=30.0) == {"started": True}
    assert workspace.status()["training"]["options"]["timeBudget"] == 30.0
    assert workspace.cancel_training() is True
    assert workspace.wait_training(60)


def test_a_cancelled_run_cleans_up_and_a_model_dir_change_applies_when_it_ends(c_workspace: Path, tmp_path: Path,
                                                                 trained_dir: Path, cache: Path):
    workspace = Workspace(c_workspace, {"modelDir": str(trained_dir), "training": TINY_TRAINING})
    interrupted_save = trained_dir / ".model.cllm.training.k1ll3d.tmp"  # what a kill during a save leaves
    interrupted_save.write_bytes(b"partial")
    assert workspace.start_training() == {"started": True}
    trainer = workspace._job.process.pid
    wanted = min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)
    for _ in range(200):  # until `nice` has lowered the priority and exec'd the trainer
        if os.getpriority(os.PRIO_PROCESS, trainer) == wanted:
            break
        time.sleep(0.01)
    assert os.getpriority(os.PRIO_PROCESS, trainer) == wanted, "the trainer runs at lower CPU priority"
    moved = tmp_path / "moved"
    workspace.update_settings({"modelDir": str(moved)})
    assert workspace.model_dir == trained_dir.resolve()  # the running job keeps writing to its folder
    assert workspace.cancel_training() is True
    assert workspace.wait_training(60)
    assert workspace.model_dir == moved.resolve() and not workspace.has_model
    assert not interrupted_save.exists() and (trained_dir / "model.cllm").is_file()


def test_a_suggestion_below_the_eagerness_threshold_comes_back_empty(tmp_path: Path, tiny_model_path: Path):
    folder = tmp_path / "models"
    folder.mkdir()
    ckpt = load_checkpoint(tiny_model_path)
    ckpt.metadata.update(thresholds={"low": 2.0, "normal": 0.0, "high": 0.0})
    save_checkpoint(folder / "model.cllm", ckpt)
    pieces = []
    shown = Workspace(tmp_path, {"modelDir": str(folder)}).complete("int main(void) {\n", "", on_text=pieces.append)
    hidden = Workspace(tmp_path, {"modelDir": str(folder), "eagerness": "low"}).complete("int main(void) {\n", "")
    assert shown.text and pieces == [shown.text]  # streamed as one piece once its confidence is known
    assert hidden.text == "" and hidden.confidence == shown.confidence
