"""`cllm lsp --with clangd` end to end (pytest-lsp): clangd and cllm behind one connection."""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types

from cllm.engine import Completer, CompletionOptions, load_model
from conftest import TINY_C_SOURCES, require_program, write_tiny_sources
from lsp_helpers import end_position, execute, inline_params, lsp_session, model_folder, open_c

MAIN = TINY_C_SOURCES["src/main.c"]
TYPED = MAIN[:MAIN.index("printf")] + "pri"  # the cursor after "pri" in main's body


async def test_clangd_answers_through_the_proxy_and_completions_carry_both_servers_items(tmp_path: Path,
                                                                                          tiny_model_path: Path):
    clangd = require_program("clangd")
    root = write_tiny_sources(tmp_path / "ws")
    options = {"cllm": {"modelDir": str(model_folder(tmp_path, tiny_model_path)), "maxTokens": 16},
               "fallbackFlags": ["-std=c11"]}
    async with lsp_session(root, options, tmp_path / "cache", args=("--with", clangd)) as client:
        caps = client.init_result.capabilities
        info = client.init_result.server_info
        main_uri = open_c(client, root / "src/main.c", MAIN)
        symbols = await client.text_document_document_symbol_async(types.DocumentSymbolParams(
            text_document=types.TextDocumentIdentifier(uri=main_uri)))
        uri = open_c(client, root / "src/typed.c", TYPED)
        completion = await client.text_document_completion_async(types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=end_position(TYPED)))
        inline = await client.text_document_inline_completion_async(inline_params(uri, end_position(TYPED)))
        status = await execute(client, "cllm.status")
    assert "clangd" in info.name and "cllm" in info.name
    assert caps.document_symbol_provider and caps.inline_completion_provider is not None
    assert {"cllm.status", "cllm.trainWorkspace"} <= set(caps.execute_command_provider.commands)
    assert "main" in [symbol.name for symbol in symbols]  # a request only clangd answers
    items = completion.items if isinstance(completion, types.CompletionList) else completion
    ours = [item for item in items if item.detail == "cllm"]
    theirs = [item for item in items if item.detail != "cllm"]
    assert any("printf" in (item.filter_text or item.label) for item in theirs), [item.label for item in theirs]
    want = Completer(load_model(tiny_model_path)).complete(TYPED, "", CompletionOptions(max_tokens=16),
                                                           path="src/typed.c").text
    assert want and len(ours) == 1 and ours[0].text_edit.new_text == "pri" + want
    assert [item.insert_text for item in inline.items] == [want]
    assert status["model"]["present"] is True
