"""`cllm lsp` end to end: Train on Workspace, $/progress, cllm/sphereActivity, cancel, failures, the lock."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from lsprotocol import types

from cllm.engine.paths import acquire_training_lock
from lsp_helpers import (TINY_TRAINING, end_position, execute, inline_params, lsp_session, model_folder, open_c,
                         wait_until)

TRAIN_TIMEOUT = 240  # seconds; a hang fails the test instead of the whole suite
REPORT = re.compile(r"^epoch \d+/\d+ · loss \d+\.\d\d · \d+(\.\d)?k? tok/s · (<1|~\d+) min left$")
LONG_TRAINING = {**TINY_TRAINING, "maxSteps": 100_000, "epochs": 1000, "timeBudget": 600}


def values(client, kind: str) -> list:
    return [v for vs in client.progress_reports.values() for v in vs if v.kind == kind]


async def test_training_reports_progress_and_swaps_the_new_model_in(c_workspace: Path, tmp_path: Path,
                                                                     tiny_model_path: Path):
    folder = model_folder(tmp_path, tiny_model_path)
    options = {"modelDir": str(folder), "training": TINY_TRAINING, "maxTokens": 4}
    text = (c_workspace / "mod0.c").read_text()
    async with lsp_session(c_workspace, options, tmp_path / "cache") as client:
        before = await execute(client, "cllm.status")
        started = await execute(client, "cllm.trainWorkspace")
        again = await execute(client, "cllm.trainWorkspace")
        uri = open_c(client, c_workspace / "mod0.c", text)
        during = await execute(client, "cllm.status")
        await client.text_document_inline_completion_async(inline_params(uri, end_position(text[:200])))
        assert await wait_until(lambda: values(client, "end"), TRAIN_TIMEOUT), "training never ended"
        after = await execute(client, "cllm.status")
        # the new model answers too (its output may be empty: it trained for four steps)
        await client.text_document_inline_completion_async(inline_params(uri, end_position(text[:200])))
        assert await wait_until(lambda: any(a["state"] == "done" for a in client.activity), 10)
    assert started == {"started": True}
    assert again["started"] is False and "already" in again["reason"]
    assert during["training"]["state"] == "training"
    assert during["model"]["config"]["layers"] == 2  # the last good model serves while training
    (token, reports), = client.progress_reports.items()
    kinds = [r.kind for r in reports]
    assert kinds[0] == "begin" and kinds[-1] == "end" and kinds.count("end") == 1
    assert all(REPORT.match(r.message) for r in reports if r.kind == "report"), [r.message for r in reports]
    assert re.match(r"^done · \d+ % lines exact · \d+\.\d\d bits/byte$", reports[-1].message), reports[-1].message
    activity = client.activity
    assert activity[-1]["state"] == "done"
    assert all(len(a["spheres"]) == TINY_TRAINING["spheres"] for a in activity if a["spheres"])
    assert before["model"]["config"]["dModel"] == 32 and before["model"]["config"]["layers"] == 2
    assert after["model"]["config"]["layers"] == TINY_TRAINING["layers"]  # swapped in
    assert after["model"]["files"] == 8 and after["model"]["trainedAt"]
    assert after["training"]["state"] == "done"
    assert (folder / "model.cllm").is_file() and not list(folder.glob("model.cllm.training*"))


async def test_cancelling_keeps_the_last_good_model(c_workspace: Path, tmp_path: Path, tiny_model_path: Path):
    folder = model_folder(tmp_path, tiny_model_path)
    original = (folder / "model.cllm").read_bytes()
    options = {"modelDir": str(folder), "training": LONG_TRAINING}
    async with lsp_session(c_workspace, options, tmp_path / "cache") as client:
        assert (await execute(client, "cllm.trainWorkspace"))["started"]
        assert await wait_until(lambda: values(client, "report"), TRAIN_TIMEOUT), "no progress report"
        token = next(iter(client.progress_reports))
        client.window_work_done_progress_cancel(types.WorkDoneProgressCancelParams(token=token))
        assert await wait_until(lambda: values(client, "end"), TRAIN_TIMEOUT), "cancel did not end training"
        nothing = await execute(client, "cllm.cancelTraining")
        restarted = await execute(client, "cllm.trainWorkspace")
        assert restarted["started"], restarted
        cancelled = await execute(client, "cllm.cancelTraining")
        assert await wait_until(lambda: len(values(client, "end")) == 2, TRAIN_TIMEOUT)
        status = await execute(client, "cllm.status")
    assert [v.message for v in values(client, "end")] == ["cancelled: cancelled on request"] * 2
    assert nothing == {"cancelled": False} and cancelled == {"cancelled": True}
    assert status["training"]["state"] == "cancelled"
    assert status["model"]["present"] is True
    assert (folder / "model.cllm").read_bytes() == original
    assert not list(folder.glob("model.cllm.training*"))


async def test_a_failed_training_is_reported(tmp_path: Path):
    empty = tmp_path / "no_c_here"
    empty.mkdir()
    (empty / "README.md").write_text("nothing to learn\n")
    options = {"modelDir": str(model_folder(tmp_path, None)), "training": TINY_TRAINING}
    async with lsp_session(empty, options, tmp_path / "cache") as client:
        assert (await execute(client, "cllm.trainWorkspace"))["started"]
        assert await wait_until(lambda: values(client, "end"), TRAIN_TIMEOUT)
        status = await execute(client, "cllm.status")
    (end,) = values(client, "end")
    assert end.message.startswith("failed: ")
    assert status["training"]["state"] == "failed" and status["training"]["reason"]
    assert any(m.type == types.MessageType.Error and "training failed" in m.message for m in client.messages)


async def test_bad_training_options_and_a_busy_workspace_are_refused(c_workspace: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    options = {"modelDir": str(model_folder(tmp_path, None)), "training": TINY_TRAINING}
    lock = acquire_training_lock(c_workspace)  # "another editor" is training this workspace
    try:
        async with lsp_session(c_workspace, options, cache) as client:
            busy = await execute(client, "cllm.trainWorkspace")
            bad = await execute(client, "cllm.trainWorkspace", {"epochs": "many", "colour": 1})
            elsewhere = await execute(client, "cllm.trainWorkspace", {"workspace": (tmp_path / "x").as_uri()})
            status = await execute(client, "cllm.status")
    finally:
        lock.release()
    assert busy["started"] is False and "already running" in busy["reason"] and "train.lock" in busy["reason"]
    assert bad["started"] is False and "colour" in bad["reason"]
    assert elsewhere["started"] is False
    assert status["training"]["state"] == "idle"


async def test_a_settings_section_overrides_the_initialization_options_key_by_key(c_workspace: Path, tmp_path: Path):
    folder = model_folder(tmp_path, None)
    options = {"modelDir": str(folder), "training": {**TINY_TRAINING, "timeBudget": 600}}
    async with lsp_session(c_workspace, options, tmp_path / "cache", capabilities="emacs") as client:
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
            settings={"cllm": {"training": {"maxSteps": 6, "layers": 2}}}))
        started = await execute(client, "cllm.trainWorkspace")
        assert await wait_until(lambda: values(client, "end"), TRAIN_TIMEOUT), "training never ended"
        status = await execute(client, "cllm.status")
    assert started == {"started": True}
    assert status["training"]["state"] == "done"
    assert status["model"]["path"] == str((folder / "model.cllm").resolve())  # modelDir from initializationOptions
    assert status["model"]["steps"] == 6 and status["model"]["config"]["layers"] == 2  # the section's keys
    assert status["model"]["config"]["dModel"] == TINY_TRAINING["dModel"]  # the rest from initializationOptions
    assert not list((tmp_path / "cache").rglob("model.cllm*"))  # nothing trained into the cache folder


# Training of the default shape (a base fixes the shape: no vocabSize, dModel, ... here), a couple of steps.
BASE_SIZED_TRAINING = {"epochs": 1, "maxSteps": 2, "spheres": 2, "threads": 1, "batchSize": 4, "seqLen": 32}


def answering(client, *titles: str | None) -> list[types.ShowMessageRequestParams]:
    """Make the client answer the window/showMessageRequests with the actions `titles` in turn (None: dismissed);
    returns the questions."""
    asked: list[types.ShowMessageRequestParams] = []

    @client.feature(types.WINDOW_SHOW_MESSAGE_REQUEST)
    def show_message_request(params: types.ShowMessageRequestParams) -> types.MessageActionItem | None:
        title = titles[len(asked)]
        asked.append(params)
        return None if title is None else types.MessageActionItem(title=title)

    return asked


async def test_with_no_base_train_asks_and_trains_from_scratch_when_told(c_workspace: Path, tmp_path: Path):
    options = {"modelDir": str(tmp_path / "models"), "training": BASE_SIZED_TRAINING}
    async with lsp_session(c_workspace, options, tmp_path / "cache") as client:
        asked = answering(client, "Train from scratch")
        started = await execute(client, "cllm.trainWorkspace")
        assert await wait_until(lambda: values(client, "end"), TRAIN_TIMEOUT), "training never ended"
        status = await execute(client, "cllm.status")
    (question,) = asked
    assert question.message.startswith("No base model yet: prepare one from this machine's C first (about 10 minutes")
    assert [a.title for a in question.actions] == ["Prepare base first", "Train from scratch", "Don't ask again"]
    assert started == {"started": True}
    assert status["training"]["state"] == "done" and status["training"]["job"] == "train"
    assert status["model"]["serving"] == "workspace" and status["model"]["base"] is None
    assert not list((tmp_path / "cache").rglob("base.cllm"))


async def test_prepare_base_first_pretrains_then_fine_tunes_on_the_new_base(c_workspace: Path, tmp_path: Path):
    from conftest import write_tiny_include

    include = write_tiny_include(tmp_path / "include")
    training = {**BASE_SIZED_TRAINING, "maxSteps": 1, "baseCorpus": [str(include)]}
    options = {"modelDir": str(tmp_path / "models"), "training": training}
    async with lsp_session(c_workspace, options, tmp_path / "cache") as client:
        asked = answering(client, "Prepare base first")
        started = await execute(client, "cllm.trainWorkspace")
        assert await wait_until(lambda: len(values(client, "end")) == 2, 2 * TRAIN_TIMEOUT), "training never ended"
        status = await execute(client, "cllm.status")
    assert len(asked) == 1 and started == {"started": True}
    begins = [v.title for v in values(client, "begin")]
    assert begins == ["Preparing the cllm base model", f"Training cllm on {c_workspace.name}"]
    assert [v.message for v in values(client, "end")][0] == "base model ready: training the workspace next"
    (base,) = (tmp_path / "cache").rglob("base.cllm")
    assert status["training"]["state"] == "done" and status["training"]["job"] == "train", status["training"]
    assert status["model"]["serving"] == "workspace" and status["model"]["base"]["path"] == str(base)


async def test_dont_ask_again_trains_from_scratch_and_a_dismissed_question_starts_nothing(c_workspace: Path,
                                                                                           tmp_path: Path):
    options = {"modelDir": str(tmp_path / "models"), "training": {**BASE_SIZED_TRAINING, "timeBudget": 30}}
    async with lsp_session(c_workspace, options, tmp_path / "cache") as client:
        asked = answering(client, None, "Don't ask again")
        dismissed = await execute(client, "cllm.trainWorkspace")
        first = await execute(client, "cllm.trainWorkspace")
        assert await wait_until(lambda: values(client, "end"), TRAIN_TIMEOUT), "training never ended"
        (tmp_path / "models" / "model.cllm").unlink()  # no model again: only "Don't ask again" spares the question
        second = await execute(client, "cllm.trainWorkspace")
        assert await wait_until(lambda: len(values(client, "end")) == 2, TRAIN_TIMEOUT), "training never ended"
    assert len(asked) == 2 and "about 1 minute, in" in asked[0].message
    assert dismissed["started"] is False and dismissed["code"] == "cancelled"
    assert first == second == {"started": True}


async def test_the_training_base_setting_decides_without_asking(c_workspace: Path, tmp_path: Path):
    options = {"modelDir": str(tmp_path / "models"), "training": {**BASE_SIZED_TRAINING, "base": "scratch"}}
    async with lsp_session(c_workspace, options, tmp_path / "cache") as client:
        asked = answering(client)
        started = await execute(client, "cllm.trainWorkspace")
        assert await wait_until(lambda: values(client, "end"), TRAIN_TIMEOUT), "training never ended"
    assert asked == [] and started == {"started": True}
    assert [v.title for v in values(client, "begin")] == [f"Training cllm on {c_workspace.name}"]
