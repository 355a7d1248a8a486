"""Emacs + lsp-mode (Debian's elpa-lsp-mode) as a real LSP client of `cllm lsp`, configured by the recipe a user
copies (emacs_lsp_mode.el): completion-at-point offers cllm's completion, and cllm.status answers."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import missing_prerequisite, require_program
from editor_recipes import open_project, run_emacs, wanted_completions

DRIVER = Path(__file__).with_name("emacs_lsp_mode_driver.el")


def test_emacs_lsp_mode_offers_cllms_completion_at_point(tmp_path: Path, tiny_model_path: Path):
    emacs = require_program("emacs")
    if subprocess.run([emacs, "--batch", "--eval", "(require 'lsp-mode)"], capture_output=True).returncode:
        missing_prerequisite("lsp-mode is not installed for Emacs (Debian: elpa-lsp-mode)")
    source, env = open_project(tmp_path, tiny_model_path)
    out = tmp_path / "report.json"
    env = {**env, "CLLM_EMACS_OUT": str(out), "CLLM_EMACS_FILE": str(source),
           "CLLM_EMACS_ROOT": str(source.parent.parent)}
    report = run_emacs(emacs, DRIVER, env, out, timeout=300)
    status = report["status"]
    assert status["model"]["present"] is True and status["modelDir"] == str((tmp_path / "models").resolve())
    ours = [candidate["text"] for candidate in report["candidates"] if candidate["detail"] == "cllm"]
    wants = wanted_completions(tiny_model_path, status["completer"])
    assert len(ours) == 1 and ours[0] in wants, (ours, wants)
