"""Acceptance counts end to end (pytest-lsp): an item's accept command counts, partial accepts count, the counts
survive a restart of the server on the same model folder, and a damaged counts file is reset."""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types

from conftest import TINY_C_SOURCES, write_tiny_sources
from lsp_helpers import end_position, execute, inline_params, lsp_session, model_folder, open_c

MAIN = TINY_C_SOURCES["src/main.c"]
CUT = MAIN.index("printf")


def run_command(item: types.InlineCompletionItem | types.CompletionItem) -> tuple[str, dict]:
    """What the editor runs when it inserts `item`: the item's command and its one argument."""
    assert item.command is not None
    (argument,) = item.command.arguments
    return item.command.command, dict(argument)


async def test_accepts_count_and_survive_a_restart_on_the_same_model_folder(tmp_path: Path, tiny_model_path: Path):
    root = write_tiny_sources(tmp_path / "ws")
    options = {"modelDir": str(model_folder(tmp_path, tiny_model_path)), "maxTokens": 16}
    async with lsp_session(root, options, tmp_path / "cache") as client:
        uri = open_c(client, root / "src/main.c", MAIN[:CUT])
        here = end_position(MAIN[:CUT])
        first = (await client.text_document_inline_completion_async(inline_params(uri, here))).items[0]
        second = (await client.text_document_inline_completion_async(inline_params(uri, here))).items[0]
        listed = (await client.text_document_completion_async(types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=here))).items[0]
        command, report = run_command(first)
        partial = await execute(client, "cllm.partiallyAccepted", {**run_command(second)[1], "chars": 3})
        whole = await execute(client, command, report)
        again = await execute(client, command, report)
        status = (await execute(client, "cllm.status"))["acceptance"]
    text = first.insert_text
    assert command == "cllm.accepted" and report["chars"] == len(text) and report["workspace"] == root.as_uri()
    assert run_command(listed)[0] == "cllm.accepted", "completion items carry the same command"
    assert len({report["id"], run_command(second)[1]["id"], run_command(listed)[1]["id"]}) == 3
    assert partial == {"counted": True} and whole == {"counted": True} and again == {"counted": False}
    assert status == {"shown": 3, "accepted": 1, "partiallyAccepted": 1, "acceptanceRate": 2 / 3,
                      "charactersAccepted": len(text) + 3, "charactersToday": len(text) + 3}

    async with lsp_session(root, options, tmp_path / "cache") as client:
        after = (await execute(client, "cllm.status"))["acceptance"]
    assert after == status


async def test_bad_reports_are_answered_and_a_damaged_counts_file_is_reset(tmp_path: Path, tiny_model_path: Path):
    root = write_tiny_sources(tmp_path / "ws")
    folder = model_folder(tmp_path, tiny_model_path)
    (folder / "acceptance.json").write_text('{"version": 1, "shown": "lots"')
    async with lsp_session(root, {"modelDir": str(folder)}, tmp_path / "cache") as client:
        status = (await execute(client, "cllm.status"))["acceptance"]
        bad = await execute(client, "cllm.accepted", {"id": 7, "chars": 2})
        elsewhere = await execute(client, "cllm.accepted", {"id": "x-1", "chars": 2,
                                                            "workspace": (tmp_path / "nowhere").as_uri()})
        counted = await execute(client, "cllm.accepted", {"id": "x-1", "chars": 2})
    assert status["shown"] == 0 and status["accepted"] == 0 and status["acceptanceRate"] is None
    assert any("counting again from zero" in params.message for params in client.log_messages)
    assert bad["counted"] is False and "id must be a non-empty string" in bad["reason"]
    assert elsewhere == {"counted": False, "reason": "no such workspace folder is open"}
    assert counted == {"counted": True}
    assert '"accepted": 1' in (folder / "acceptance.json").read_text()
