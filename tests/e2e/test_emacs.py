"""Emacs + eglot as a real LSP client of `cllm lsp`: completion-at-point, the status command, Train on
Workspace with the settings given as initializationOptions (eglot then sends no `cllm` section and answers the
settings pull with null, which once dropped them)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from cllm.engine import Completer, CompletionOptions, ServedModel, load_model
from conftest import TINY_C_SOURCES, require_program
from editor_recipes import run_emacs
from lsp_helpers import SERVER_COMMAND, TINY_TRAINING, model_folder

SCRIPT = Path(__file__).with_name("emacs_eglot.el")
MAIN = TINY_C_SOURCES["src/main.c"]
TYPED = MAIN[:MAIN.index("printf")]  # the buffer ends inside main's body


def test_emacs_eglot_completes_and_trains_with_its_initialization_options(c_workspace: Path, tmp_path: Path,
                                                                           tiny_model_path: Path):
    emacs = require_program("emacs")
    source = c_workspace / "src/main.c"
    source.parent.mkdir()
    source.write_text(TYPED)
    subprocess.run(["git", "init", "-q", str(c_workspace)], check=True)  # the project root eglot finds
    folder = model_folder(tmp_path, tiny_model_path)
    options = {"modelDir": str(folder), "maxTokens": 16, "training": {**TINY_TRAINING, "maxSteps": 6, "timeBudget": 600}}
    out = tmp_path / "report.json"
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(tmp_path / "cache"), "CLLM_EMACS_OUT": str(out),
           "CLLM_EMACS_CMD": json.dumps(SERVER_COMMAND), "CLLM_EMACS_FILE": str(source),
           "CLLM_EMACS_OPTIONS": json.dumps(options)}
    report = run_emacs(emacs, SCRIPT, env, out, timeout=600)

    before = report["statusBefore"]
    assert before["modelDir"] == str(folder.resolve()) and before["model"]["present"] is True
    model = load_model(tiny_model_path)
    served = ServedModel(model)
    served.build()
    completions = [completer.complete(TYPED, "", CompletionOptions(max_tokens=16), path="src/main.c").text
                   for completer in (Completer(model), served)]
    wants = completions[:1] if before["completer"] == "transformer" else completions
    ours = [candidate["text"] for candidate in report["candidates"] if candidate["detail"] == "cllm"]
    assert len(ours) == 1 and ours[0] in [want.splitlines()[0].strip() or want for want in wants], (ours, wants)

    assert report["train"] == {"started": True}
    options_used = report["statusDuring"]["training"]["options"]
    assert options_used["timeBudget"] == 600 and options_used["maxSteps"] == 6  # from initializationOptions
    after = report["status"]
    assert after["training"]["state"] == "done", after
    assert after["model"]["path"] == str((folder / "model.cllm").resolve())  # into modelDir, not the cache
    assert after["model"]["steps"] == 6 and after["model"]["config"]["layers"] == TINY_TRAINING["layers"]
    assert not list((tmp_path / "cache").rglob("model.cllm*"))
