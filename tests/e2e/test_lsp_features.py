"""`cllm lsp` end to end (pytest-lsp): capabilities, completions, commands, settings, messages."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from lsprotocol import types

from cllm.engine import Completer, load_model
from cllm.engine.paths import default_model_path
from conftest import TINY_C_SOURCES, write_tiny_sources
from lsp_helpers import end_position, execute, inline_params, lsp_session, model_folder, open_c, wait_until

MAIN = TINY_C_SOURCES["src/main.c"]
CUT = MAIN.index("printf")  # cursor inside main's body, text follows


@pytest.fixture
def tiny_ws(tmp_path: Path) -> Path:
    """The sources the tiny model was trained on, as a workspace."""
    root = tmp_path / "ws"
    write_tiny_sources(root)
    return root


def expected(model_path: Path, prefix: str, suffix: str, path: str, **options) -> str:
    """What the engine itself completes (greedy decoding is deterministic)."""
    from cllm.engine import CompletionOptions

    return Completer(load_model(model_path)).complete(prefix, suffix, CompletionOptions(**options), path=path).text


async def test_initialize_advertises_every_capability(tiny_ws: Path, tmp_path: Path):
    async with lsp_session(tiny_ws, None, tmp_path / "cache") as client:
        caps = client.init_result.capabilities
    assert caps.inline_completion_provider is not None
    assert caps.completion_provider is not None
    assert caps.text_document_sync.change == types.TextDocumentSyncKind.Incremental
    assert set(caps.execute_command_provider.commands) == {"cllm.trainWorkspace", "cllm.cancelTraining",
                                                           "cllm.status", "cllm.dashboard", "cllm.accepted",
                                                           "cllm.partiallyAccepted"}


async def test_inline_completion_uses_the_unsaved_buffer(tiny_ws: Path, tmp_path: Path, tiny_model_path: Path):
    options = {"modelDir": str(model_folder(tmp_path, tiny_model_path)), "maxTokens": 16}
    async with lsp_session(tiny_ws, options, tmp_path / "cache") as client:
        uri = open_c(client, tiny_ws / "src/main.c", "")
        # incremental edits: type the file in two pieces, then delete a stray character
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[types.TextDocumentContentChangePartial(
                range=types.Range(start=types.Position(line=0, character=0), end=types.Position(line=0, character=0)),
                text=MAIN[:CUT] + "X")]))
        end = end_position(MAIN[:CUT] + "X")
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=3),
            content_changes=[types.TextDocumentContentChangePartial(
                range=types.Range(start=types.Position(line=end.line, character=end.character - 1), end=end),
                text="")]))
        result = await client.text_document_inline_completion_async(inline_params(uri, end_position(MAIN[:CUT])))
    want = expected(tiny_model_path, MAIN[:CUT], "", "src/main.c", max_tokens=16)
    assert want, "the tiny model should complete its own training text"
    assert [item.insert_text for item in result.items] == [want]
    assert result.items[0].range.start == end_position(MAIN[:CUT])


async def test_completion_item_edits_the_word_being_typed(tiny_ws: Path, tmp_path: Path, tiny_model_path: Path):
    options = {"modelDir": str(model_folder(tmp_path, tiny_model_path)), "maxTokens": 8}
    prefix = MAIN[:CUT + 3]  # "...    pri"
    async with lsp_session(tiny_ws, options, tmp_path / "cache") as client:
        uri = open_c(client, tiny_ws / "src/main.c", prefix)
        here = end_position(prefix)
        result = await client.text_document_completion_async(types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=here))
    want = expected(tiny_model_path, prefix, "", "src/main.c", max_tokens=8)
    assert want
    (item,) = result.items
    assert item.text_edit.new_text == "pri" + want
    assert item.filter_text == "pri" + want
    assert item.text_edit.range == types.Range(
        start=types.Position(line=here.line, character=here.character - 3), end=here)


async def test_without_a_model_completions_are_empty_and_training_is_suggested_once(tiny_ws: Path, tmp_path: Path):
    options = {"modelDir": str(model_folder(tmp_path, None))}
    async with lsp_session(tiny_ws, options, tmp_path / "cache") as client:
        uri = open_c(client, tiny_ws / "src/main.c", MAIN)
        for _ in range(3):
            result = await client.text_document_inline_completion_async(inline_params(uri, end_position(MAIN[:CUT])))
            assert list(result.items) == []
        listed = await client.text_document_completion_async(types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=end_position(MAIN[:CUT])))
        assert list(listed.items) == []
        status = await execute(client, "cllm.status")
    hints = [m for m in client.messages if "Train on Workspace" in m.message]
    assert len(hints) == 1
    assert status["model"]["present"] is False
    assert status["training"]["state"] == "idle"


async def test_a_workspace_opened_for_the_first_time_completes_from_the_shipped_base(
        tiny_ws: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("CLLM_SHIPPED_BASE")  # the package's own base, as a fresh install has it
    options = {"modelDir": str(model_folder(tmp_path, None)), "maxTokens": 16, "eagerness": "high"}
    # a line whose end the file itself gives away, so that a suggestion is sure enough to be shown
    text = ("static int add(int left, int right)\n{\n    return left + right;\n}\n\n"
            "static int add_again(int left, int right)\n{\n    return left +")
    async with lsp_session(tiny_ws, options, tmp_path / "cache") as client:
        uri = open_c(client, tiny_ws / "src/add.c", text)
        items: list = []

        async def poll() -> bool:
            result = await client.text_document_inline_completion_async(inline_params(uri, end_position(text)))
            items[:] = list(result.items)
            return bool(items)

        for _ in range(600):  # the base loads in the background: the first answers may be empty
            if await poll():
                break
            await asyncio.sleep(0.1)
        status = await execute(client, "cllm.status")
    assert items and items[0].insert_text.strip()
    assert status["model"]["serving"] == "base" and status["model"]["baseKind"] == "shipped"
    assert not [m for m in client.messages if "Train on Workspace" in m.message]  # nothing to do before completing


async def test_status_describes_the_loaded_model(tiny_ws: Path, tmp_path: Path, tiny_model_path: Path):
    folder = model_folder(tmp_path, tiny_model_path)
    async with lsp_session(tiny_ws, {"modelDir": str(folder)}, tmp_path / "cache") as client:
        status = await execute(client, "cllm.status")
        by_uri = await execute(client, "cllm.status", tiny_ws.as_uri())
        unknown = await execute(client, "cllm.status", (tmp_path / "elsewhere").as_uri())
    assert status == by_uri
    assert status["workspace"] == str(tiny_ws.resolve())
    assert status["modelDir"] == str(folder.resolve())
    assert status["model"]["present"] is True
    assert status["model"]["files"] == len(TINY_C_SOURCES)
    assert status["model"]["config"]["dModel"] == 32
    assert status["training"] == {"state": "idle"}
    assert "error" in unknown


async def test_settings_problems_are_reported_once_and_the_rest_applies(tiny_ws: Path, tmp_path: Path,
                                                                        tiny_model_path: Path):
    options = {"modelDir": str(model_folder(tmp_path, tiny_model_path)), "colour": "blue", "maxTokens": "many",
               "training": {"epochs": 2, "speed": 11}}
    async with lsp_session(tiny_ws, {"cllm": options}, tmp_path / "cache") as client:
        await wait_until(lambda: len(client.messages) >= 3, 10)
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
            settings={"cllm": {**options, "enable": False}}))
        uri = open_c(client, tiny_ws / "src/main.c", MAIN)
        result = await client.text_document_inline_completion_async(inline_params(uri, end_position(MAIN[:CUT])))
        status = await execute(client, "cllm.status")
    warned = sorted(m.message for m in client.messages)
    assert len(warned) == 3, warned
    assert any("cllm.colour" in m for m in warned)
    assert any("cllm.maxTokens" in m for m in warned)
    assert any("cllm.training.speed" in m for m in warned)
    assert list(result.items) == []  # enable: false applied
    assert status["enabled"] is False and status["model"]["present"] is True


async def test_documents_that_are_not_c_get_nothing(tiny_ws: Path, tmp_path: Path, tiny_model_path: Path):
    options = {"modelDir": str(model_folder(tmp_path, tiny_model_path))}
    async with lsp_session(tiny_ws, options, tmp_path / "cache") as client:
        uri = open_c(client, tiny_ws / "notes.py", "def main():\n    ", language="python")
        result = await client.text_document_inline_completion_async(inline_params(uri, end_position("def main():\n    ")))
        c_uri = open_c(client, tiny_ws / "src/main.c", MAIN)
        still = await client.text_document_inline_completion_async(inline_params(c_uri, end_position(MAIN[:CUT])))
    assert list(result.items) == []
    assert still.items, "the server keeps completing C after refusing another language"


async def test_positions_outside_the_document_get_nothing(tiny_ws: Path, tmp_path: Path, tiny_model_path: Path):
    options = {"modelDir": str(model_folder(tmp_path, tiny_model_path))}
    async with lsp_session(tiny_ws, options, tmp_path / "cache") as client:
        uri = open_c(client, tiny_ws / "src/main.c", MAIN[:MAIN.index("{\n") + 1])  # ends on line 2
        beyond = await client.text_document_inline_completion_async(
            inline_params(uri, types.Position(line=500, character=0)))
        past_eol = await client.text_document_inline_completion_async(
            inline_params(uri, types.Position(line=2, character=900)))
        unopened = await client.text_document_inline_completion_async(
            inline_params((tiny_ws / "src/nope.c").as_uri(), types.Position(line=0, character=0)))
    assert list(beyond.items) == []
    assert list(unopened.items) == []
    assert past_eol.items and past_eol.items[0].range.start.character == 900  # clamped to the line end


async def test_huge_documents_are_answered(tiny_ws: Path, tmp_path: Path, tiny_model_path: Path):
    options = {"modelDir": str(model_folder(tmp_path, tiny_model_path)), "maxTokens": 8}
    huge = MAIN * 40_000 + MAIN[:CUT]  # ~3.5 MB, the cursor at its end
    async with lsp_session(tiny_ws, options, tmp_path / "cache") as client:
        uri = open_c(client, tiny_ws / "src/huge.c", huge)
        here = end_position(huge)
        result = await client.text_document_inline_completion_async(inline_params(uri, here))
        status = await execute(client, "cllm.status")
    assert [item.range.start for item in result.items] == [here]
    assert status["model"]["present"] is True


async def test_settings_are_pulled_when_the_change_notification_carries_none(tiny_ws: Path, tmp_path: Path,
                                                                               tiny_model_path: Path):
    options = {"modelDir": str(model_folder(tmp_path, tiny_model_path))}
    async with lsp_session(tiny_ws, options, tmp_path / "cache") as client:
        client.set_configuration({**options, "enable": False}, section="cllm")
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))
        for _ in range(100):  # the server asks the client for the section, then applies it
            status = await execute(client, "cllm.status")
            if status["enabled"] is False:
                break
            await asyncio.sleep(0.1)
    assert status["enabled"] is False
    assert status["model"]["present"] is True


async def test_each_workspace_folder_has_its_own_workspace(tmp_path: Path, tiny_model_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    first, second, third = (tmp_path / name for name in ("first", "second", "third"))
    for root in (first, second, third):
        (root / "src").mkdir(parents=True)
    trained = default_model_path(second)
    trained.parent.mkdir(parents=True)
    shutil.copyfile(tiny_model_path, trained)  # only the second folder has a model
    async with lsp_session(first, None, cache, extra_folders=(second,)) as client:
        in_first = open_c(client, first / "src/main.c", MAIN)
        in_second = open_c(client, second / "src/main.c", MAIN)
        nothing = await client.text_document_inline_completion_async(inline_params(in_first, end_position(MAIN[:CUT])))
        something = await client.text_document_inline_completion_async(
            inline_params(in_second, end_position(MAIN[:CUT])))
        client.workspace_did_change_workspace_folders(types.DidChangeWorkspaceFoldersParams(
            event=types.WorkspaceFoldersChangeEvent(
                added=[types.WorkspaceFolder(uri=third.as_uri(), name="third")],
                removed=[types.WorkspaceFolder(uri=first.as_uri(), name="first")])))
        for _ in range(100):
            status = await execute(client, "cllm.status", third.as_uri())
            if "error" not in status:
                break
            await asyncio.sleep(0.1)
    assert list(nothing.items) == [] and something.items
    assert [m.message for m in client.messages if "first" in m.message and "Train on Workspace" in m.message]
    assert status["workspace"] == str(third.resolve()) and status["model"]["present"] is False
    assert sorted(status["workspaces"]) == sorted([str(second.resolve()), str(third.resolve())])


async def test_eglot_sending_no_section_keeps_the_initialization_options(tiny_ws: Path, tmp_path: Path,
                                                                          tiny_model_path: Path):
    """Emacs + eglot 1.9 exactly: initializationOptions, then didChangeConfiguration {"settings": {}}, and
    the workspace/configuration pull answered [null] (no `cllm` section in eglot-workspace-configuration)."""
    folder = model_folder(tmp_path, tiny_model_path)
    options = {"modelDir": str(folder), "maxTokens": 16}
    async with lsp_session(tiny_ws, options, tmp_path / "cache", capabilities="emacs") as client:
        pulled: list[str | None] = []
        answer = client.get_configuration

        def record(section: str | None = None, scope_uri: str | None = None):
            pulled.append(section)
            return answer(section=section, scope_uri=scope_uri)

        client.get_configuration = record
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={}))
        assert await wait_until(lambda: pulled, 10), "the server did not pull its section"
        uri = open_c(client, tiny_ws / "src/main.c", MAIN[:CUT])
        result = await client.text_document_inline_completion_async(inline_params(uri, end_position(MAIN[:CUT])))
        status = await execute(client, "cllm.status")
    assert pulled == ["cllm"] and answer(section="cllm") is None  # the client answered [null]
    assert status["modelDir"] == str(folder.resolve()) and status["model"]["present"] is True
    assert result.items and [item.insert_text for item in result.items] == [
        expected(tiny_model_path, MAIN[:CUT], "", "src/main.c", max_tokens=16)]
