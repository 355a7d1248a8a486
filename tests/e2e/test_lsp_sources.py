"""`cllm lsp` end to end (pytest-lsp): a suggestion copied from the workspace says from where, on the completion
item (label details and documentation) and on the inline item (its command's title and argument)."""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types

from conftest import SECOND_COPY, SECOND_COPY_TEXT, write_copy_workspace
from lsp_helpers import end_position, execute, inline_params, lsp_session, open_c
from lsp_helpers import plain as plain_json

NOT_COPIED = "int main(void) {\n    "


async def test_a_copied_suggestion_names_its_source_and_one_not_copied_does_not(tmp_path: Path,
                                                                                tiny_model_path: Path):
    root = write_copy_workspace(tmp_path / "ws", tiny_model_path, tmp_path / "models")
    options = {"modelDir": str(tmp_path / "models"), "multiline": True}
    statuses = []
    async with lsp_session(root, options, tmp_path / "cache") as client:
        async def mixing() -> bool:
            statuses.append(await execute(client, "cllm.status"))
            return statuses[-1].get("completer") == "transformer+cache"

        for _ in range(600):  # the workspace index is built in the background
            if await mixing():
                break
        assert statuses[-1]["completer"] == "transformer+cache", statuses[-1]
        uri = open_c(client, root / "src" / "b.c", SECOND_COPY)
        inline = await client.text_document_inline_completion_async(inline_params(uri, end_position(SECOND_COPY)))
        listed = await client.text_document_completion_async(types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=end_position(SECOND_COPY)))
        accepted = await execute(client, "cllm.accepted", plain_json(inline.items[0].command.arguments)[0])
        other = open_c(client, root / "src" / "c.c", NOT_COPIED)
        fresh_inline = await client.text_document_inline_completion_async(
            inline_params(other, end_position(NOT_COPIED)))
        fresh = await client.text_document_completion_async(types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=other), position=end_position(NOT_COPIED)))
    [item] = inline.items
    assert item.insert_text == SECOND_COPY_TEXT
    assert item.command.title == "copied from src/a.c:4" and item.command.command == "cllm.accepted"
    assert plain_json(item.command.arguments)[0]["source"] == "src/a.c:4"
    assert plain_json(accepted) == {"counted": True}  # accepting the copy counts it, its source aside
    [entry] = listed.items
    assert entry.label_details.description == "src/a.c:4" and entry.documentation == "copied from src/a.c:4"
    [plain] = fresh_inline.items
    assert plain.insert_text and "source" not in plain_json(plain.command.arguments)[0]
    [plain_entry] = fresh.items
    assert plain_entry.label_details is None and plain_entry.documentation is None
