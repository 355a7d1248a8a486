"""`cllm lsp` end to end: a suggestion less confident than the eagerness setting's threshold is not shown."""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types

from cllm.engine.model.checkpoint import load_checkpoint, save_checkpoint
from conftest import TINY_C_SOURCES, write_tiny_sources
from lsp_helpers import end_position, inline_params, lsp_session, model_folder, open_c

MAIN = TINY_C_SOURCES["src/main.c"]
CUT = MAIN.index("printf")


async def test_low_eagerness_hides_what_high_eagerness_shows(tmp_path: Path, tiny_model_path: Path):
    root = write_tiny_sources(tmp_path / "ws")
    folder = model_folder(tmp_path, tiny_model_path)
    ckpt = load_checkpoint(folder / "model.cllm")
    ckpt.metadata["thresholds"] = {"low": 2.0, "normal": 0.5, "high": 0.0}  # low: above any confidence
    save_checkpoint(folder / "model.cllm", ckpt)
    items = {}
    for eagerness in ("low", "high"):
        options = {"modelDir": str(folder), "maxTokens": 16, "eagerness": eagerness}
        async with lsp_session(root, options, tmp_path / f"cache-{eagerness}") as client:
            uri = open_c(client, root / "src/main.c", MAIN[:CUT])
            inline = await client.text_document_inline_completion_async(inline_params(uri, end_position(MAIN[:CUT])))
            listed = await client.text_document_completion_async(types.CompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri), position=end_position(MAIN[:CUT])))
        items[eagerness] = ([item.insert_text for item in inline.items], len(listed.items))
    assert items["low"] == ([], 0)
    assert items["high"][0] and items["high"][0][0].startswith("printf") and items["high"][1] == 1
