"""`cllm lsp` end to end: learning while idle (server/learning.py): a save and an idle period start a background
run that ends with the swap or the discard in the status; typing stops the child (SIGSTOP, seen in /proc) and idling
continues it; with learnWhileIdle false nothing starts."""

from __future__ import annotations

import asyncio
from pathlib import Path

from lsprotocol import types

from cllm.server.learning import LEARNED_FILE, read_learned

from lsp_helpers import TINY_TRAINING, execute, lsp_session, model_folder, open_c, wait_until

TRAIN_TIMEOUT = 240  # seconds; a hang fails the test instead of the whole suite


def save(client, uri: str) -> None:
    client.text_document_did_save(types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri)))


def type_into(client, uri: str, version: int, text: str) -> None:
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)]))


def trainer_states(server_pid: int) -> list[str]:
    """The /proc states ("R", "S", "T" for stopped, ...) of the server's `cllm train` children."""
    states = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(fields[1]) == server_pid and b"train" in cmdline:
            states.append(fields[0])
    return states


def learning_session(c_workspace: Path, tmp_path: Path, **settings):
    """A real `cllm lsp` on the workspace, its model folder tmp_path/models (model_folder) and the tiny training
    settings, with `settings` (idleSeconds, learnWhileIdle) on top."""
    options = {"modelDir": str(model_folder(tmp_path, None)), "training": TINY_TRAINING, **settings}
    return lsp_session(c_workspace, options, tmp_path / "cache")


async def train_own_model(client) -> None:
    """Train on Workspace first, so that the background run continues the workspace's own tiny model."""
    assert (await execute(client, "cllm.trainWorkspace"))["started"]
    assert await wait_until(lambda: client.progress_reports and all(
        any(v.kind == "end" for v in values) for values in client.progress_reports.values()), TRAIN_TIMEOUT)


async def status(client) -> dict:
    return await execute(client, "cllm.status")


async def learning_states(client) -> list[dict]:
    """The status' `learning` objects seen, polled until the background run has settled (its outcome is set)."""
    seen: list[dict] = []
    deadline = asyncio.get_running_loop().time() + TRAIN_TIMEOUT
    while asyncio.get_running_loop().time() < deadline:
        seen.append((await status(client))["learning"])
        if seen[-1]["outcome"] is not None:
            break
        await asyncio.sleep(0.2)
    return seen


async def test_a_save_and_an_idle_period_learn_in_the_background(c_workspace: Path, tmp_path: Path):
    path = c_workspace / "mod0.c"
    async with learning_session(c_workspace, tmp_path, idleSeconds=1) as client:
        await train_own_model(client)
        trained = await status(client)
        uri = open_c(client, path, path.read_text())
        path.write_text(path.read_text() + "\nint added(int x) { return x + 1; }\n")
        save(client, uri)
        outcomes = await learning_states(client)
        after = await status(client)
    learning = after["learning"]
    assert trained["learning"] == {"enabled": True, "state": "idle", "saves": 0, "pending": 0, "lastAt": None,
                                   "summary": "learned from 0 saves", "outcome": None, "reason": None}
    assert any(seen["state"] == "learning" for seen in outcomes)
    assert learning["outcome"] in ("learned", "discarded"), learning
    assert learning["state"] == "idle" and learning["pending"] == 0
    if learning["outcome"] == "learned":
        assert learning["saves"] == 1 and learning["summary"].startswith("learned from 1 save, last at ")
        assert after["model"]["trainedAt"] != trained["model"]["trainedAt"]
        assert read_learned(model_folder(tmp_path, None) / LEARNED_FILE)[0] == 1  # a restart says it too
    else:
        assert learning["saves"] == 0 and learning["reason"].startswith("discarded the candidate")
        assert after["model"]["trainedAt"] == trained["model"]["trainedAt"]
    assert after["training"]["job"] == "learn" and after["training"]["state"] == "done"
    assert not list(model_folder(tmp_path, None).glob("model.cllm.learning*"))
    assert len(client.progress_reports) == 1  # the explicit run's progress only: learning is quiet


async def test_typing_stops_the_background_run_and_idling_continues_it(c_workspace: Path, tmp_path: Path):
    long = {**TINY_TRAINING, "maxSteps": 400, "epochs": 1000}
    path = c_workspace / "mod1.c"
    text = path.read_text()
    async with learning_session(c_workspace, tmp_path, idleSeconds=2) as client:
        await train_own_model(client)
        pid = client._server.pid
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
            settings={"cllm": {"training": long}}))
        uri = open_c(client, path, text)
        save(client, uri)
        assert await wait_until(lambda: trainer_states(pid), TRAIN_TIMEOUT), "no background run started"
        stopped = []
        for version in range(2, 12):  # the user types for a while: the child stays stopped
            type_into(client, uri, version, text + "x" * version)
            await asyncio.sleep(0.3)
            stopped.append(trainer_states(pid))
        paused = (await status(client))["learning"]
        # then idles: the run continues and ends
        assert await wait_until(lambda: trainer_states(pid) not in ([], ["T"]), TRAIN_TIMEOUT), "never continued"
        settled = (await learning_states(client))[-1]
        ended = trainer_states(pid)
    assert all(states == ["T"] for states in stopped[1:]), stopped
    assert paused["state"] == "paused"
    assert settled["outcome"] in ("learned", "discarded"), settled
    assert ended == []


async def test_with_learn_while_idle_false_nothing_starts(c_workspace: Path, tmp_path: Path):
    path = c_workspace / "mod2.c"
    async with learning_session(c_workspace, tmp_path, idleSeconds=0.5, learnWhileIdle=False) as client:
        uri = open_c(client, path, path.read_text())
        save(client, uri)
        await asyncio.sleep(2)  # four idle periods
        after = await status(client)
        states = trainer_states(client._server.pid)
    assert after["learning"]["enabled"] is False and after["learning"]["state"] == "off"
    assert after["learning"]["pending"] == 1 and after["learning"]["outcome"] is None
    assert after["training"]["state"] == "idle" and states == []


async def test_train_on_workspace_takes_over_from_a_background_run(c_workspace: Path, tmp_path: Path):
    path = c_workspace / "mod3.c"
    async with learning_session(c_workspace, tmp_path, idleSeconds=1) as client:
        await train_own_model(client)
        pid = client._server.pid
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
            settings={"cllm": {"training": {**TINY_TRAINING, "maxSteps": 100_000, "epochs": 1000}}}))
        uri = open_c(client, path, path.read_text())
        save(client, uri)
        assert await wait_until(lambda: trainer_states(pid), TRAIN_TIMEOUT), "no background run started"
        taken = await execute(client, "cllm.trainWorkspace", {"maxSteps": 4, "epochs": 1})
        assert await wait_until(lambda: len(client.progress_reports) == 2 and all(
            any(v.kind == "end" for v in values) for values in client.progress_reports.values()), TRAIN_TIMEOUT)
        after = await status(client)
    assert taken == {"started": True}
    assert after["training"]["job"] == "train" and after["training"]["state"] == "done", after["training"]
    assert after["learning"]["outcome"] == "cancelled" and after["learning"]["reason"] == "an explicit training took over"
    assert not list(model_folder(tmp_path, None).glob("model.cllm.learning*"))
