"""Vim 9 + ALE (Debian's vim-ale) as a real LSP client of `cllm lsp`, configured by the recipe a user copies
(vim_ale.vim): cllm.status answers through ALE, and <C-x><C-o> in Insert mode inserts cllm's completion (up to
its first "(", as ALE inserts every item)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from conftest import missing_prerequisite, require_program
from editor_recipes import TYPED, open_project, wanted_completions

RECIPE = Path(__file__).with_name("vim_ale.vim")
DRIVER = Path(__file__).with_name("vim_ale_driver.vim")


def test_vim_ale_completes_with_cllm_in_insert_mode(tmp_path: Path, tiny_model_path: Path):
    vim = require_program("vim")
    found = subprocess.run([vim, "-N", "-u", "NONE", "-i", "NONE", "-es", "-c", "packadd ale",
                            "-c", "if !exists('g:loaded_ale') | cquit | endif", "-c", "qall!"],
                           stdin=subprocess.DEVNULL, capture_output=True)
    if found.returncode:
        missing_prerequisite("ALE is not installed for Vim (Debian: vim-ale)")
    source, env = open_project(tmp_path, tiny_model_path)
    out = tmp_path / "report.json"
    options = "let g:cllm_options = json_decode($CLLM_EDITOR_OPTIONS)"  # before the recipe, as a vimrc would
    run = subprocess.run([vim, "-N", "--cmd", options, "-u", str(RECIPE), "-i", "NONE", "-n", "--not-a-term",
                          "-c", f"source {DRIVER}"],
                         env={**env, "CLLM_VIM_OUT": str(out), "CLLM_VIM_FILE": str(source)},
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300, check=False)
    assert out.is_file(), f"Vim wrote no report: {run.stderr[-3000:]}"
    report = json.loads(out.read_text())
    assert report["failure"] is None, report
    status = report["status"]
    assert status["model"]["present"] is True and status["modelDir"] == str((tmp_path / "models").resolve()), status
    # ALE inserts an LSP item's text up to its first "(" (it takes every item for a name): so does cllm's here.
    wants = [want.split("(")[0] for want in wanted_completions(tiny_model_path, status["completer"])]
    completed = report["completed"]
    assert completed["menu"] == "cllm" and completed["word"] in wants, (completed, wants)
    assert report["line"] == TYPED.splitlines()[-1] + completed["word"]
