"""Headless Neovim as a real LSP client: train a small workspace through `cllm lsp`, then complete."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from cllm.engine import Completer, CompletionOptions, ServedModel, load_model
from conftest import require_program
from lsp_helpers import SERVER_COMMAND, TINY_TRAINING

SCRIPT = Path(__file__).with_name("nvim_lsp.lua")


def test_neovim_trains_the_workspace_and_gets_an_inline_completion(c_workspace: Path, tmp_path: Path):
    nvim = require_program("nvim")
    source = c_workspace / "mod1.c"
    lines = source.read_text().splitlines()
    out = tmp_path / "report.json"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "CLLM_NVIM_OUT": str(out),
           "CLLM_NVIM_CMD": json.dumps(SERVER_COMMAND), "CLLM_NVIM_ROOT": str(c_workspace),
           "CLLM_NVIM_FILE": str(source), "CLLM_NVIM_LINE": "8", "CLLM_NVIM_CHARACTER": str(len(lines[8])),
           "CLLM_NVIM_OPTIONS": json.dumps({"training": {**TINY_TRAINING, "epochs": 3, "maxSteps": 30},
                                             "maxTokens": 8})}
    subprocess.run([nvim, "--headless", "--clean", "-u", "NONE", "-c", f"luafile {SCRIPT}"], env=env,
                   stdin=subprocess.DEVNULL, capture_output=True, timeout=600, check=False)
    assert out.is_file(), "Neovim wrote no report"
    report = json.loads(out.read_text())
    assert report.get("failure") is None, report
    assert report["capabilities"] is not None
    assert report["train"] == {"started": True}
    kinds = [p["kind"] for p in report["progress"]]
    assert kinds[0] == "begin" and kinds[-1] == "end", kinds
    assert report["progress"][-1]["message"].startswith("done"), report["progress"][-1]
    assert report["activity"] >= 1
    status = report["status"]
    text = source.read_text()
    cursor = sum(len(line) + 1 for line in lines[:8]) + len(lines[8])
    model = load_model(status["model"]["path"])
    options = CompletionOptions(max_tokens=8)
    alone = Completer(model).complete(text[:cursor], text[cursor:], options, path="mod1.c").text
    served = ServedModel(model)
    served.build()
    mixed = served.complete(text[:cursor], text[cursor:], options, path="mod1.c").text
    # The server swaps the workspace mixture in once it is built, so the request may have met either completer;
    # a status that still says "transformer" proves it met the transformer alone.
    wants = [alone] if status["completer"] == "transformer" else [alone, mixed]
    items = report["inline"]["items"]
    assert [item["insertText"] for item in items] in [[want] if want else [] for want in wants]
    assert all(item["range"]["start"] == {"line": 8, "character": len(lines[8])} for item in items)
    assert status["model"]["present"] is True and status["training"]["state"] == "done"
    assert status["model"]["config"]["layers"] == TINY_TRAINING["layers"]
