"""What the editor recipes' tests share: a tiny C project to open, and the completions cllm may offer there."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

from cllm.engine import Completer, CompletionOptions, ServedModel, load_model
from conftest import TINY_C_SOURCES
from lsp_helpers import SERVER_COMMAND, model_folder

MAIN = TINY_C_SOURCES["src/main.c"]
TYPED = MAIN[:MAIN.index("printf")]  # the buffer ends inside main's body
MAX_TOKENS = 16


def open_project(tmp_path: Path, model: Path) -> tuple[Path, dict[str, str]]:
    """A git project whose src/main.c holds TYPED, and the environment of an editor started on it: a HOME of its
    own, a `cllm` first on PATH that runs this checkout's, the server command as CLLM_EDITOR_CMD and its
    initializationOptions as CLLM_EDITOR_OPTIONS (JSON)."""
    root = tmp_path / "project"
    source = root / "src/main.c"
    source.parent.mkdir(parents=True)
    source.write_text(TYPED)
    subprocess.run(["git", "init", "-q", str(root)], check=True)  # the project root the editor finds
    home = tmp_path / "home"
    home.mkdir()
    command = tmp_path / "bin" / "cllm"
    command.parent.mkdir()
    command.write_text(f"#!/bin/sh\nexec {shlex.join(SERVER_COMMAND[:-1])} \"$@\"\n")
    command.chmod(0o755)
    options = {"modelDir": str(model_folder(tmp_path, model)), "maxTokens": MAX_TOKENS}
    return source, {**os.environ, "HOME": str(home), "PATH": f"{command.parent}{os.pathsep}{os.environ['PATH']}",
                    "XDG_CACHE_HOME": str(tmp_path / "cache"),
                    "CLLM_EDITOR_CMD": json.dumps(SERVER_COMMAND), "CLLM_EDITOR_OPTIONS": json.dumps(options)}


def wanted_completions(model_path: Path, completer: str) -> list[str]:
    """The one-line completions cllm may offer at the end of TYPED: the transformer's, or either completer's once
    the workspace mixture may have served (`completer` is what cllm.status said served)."""
    model = load_model(model_path)
    served = ServedModel(model)
    served.build()
    texts = [each.complete(TYPED, "", CompletionOptions(max_tokens=MAX_TOKENS), path="src/main.c").text
             for each in (Completer(model), served)]
    wants = texts[:1] if completer == "transformer" else texts
    return [want.splitlines()[0].strip() or want for want in wants]


def run_emacs(emacs: str, driver: Path, env: dict[str, str], out: Path, timeout: float) -> dict:
    """Run `driver` in batch Emacs with `env`; the report it wrote to `out` (emacs_report.el), checked to say no
    failure."""
    run = subprocess.run([emacs, "--batch", "-l", str(driver)], env=env, stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=timeout, check=False)
    assert out.is_file(), f"Emacs wrote no report: {run.stderr[-3000:]}"
    report = json.loads(out.read_text())
    assert report["failure"] is None, (report, run.stderr[-3000:])
    return report
