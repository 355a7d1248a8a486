"""The VS Code extension end to end in a real VS Code (code-server, driven by Debian's Chromium).

vscode-extension/scripts/e2e-code-server.mjs installs the packaged .vsix into a fresh code-server profile, opens a
small C workspace whose .vscode/settings.json asks for a small model, runs "CLLM: Train on Workspace" from the
command palette, follows the status bar through training to ready, opens the Show Status view, types in a C file
until ghost text appears, saves test-artifacts/vscode.png, takes the ghost text's next word (Ctrl+Right) and then the
rest (Tab), Show Status counting each (accepted in part, accepted whole), clicks the status-bar item to turn suggestions off (no
ghost text then) and on again, then runs "CLLM: Open Dashboard" and opens the link it
offers (with the token) in the same browser; last it sets cllm.server.path to a missing file in the workspace
settings and expects one error notification with the fix and the status bar's error state. The language server is
this checkout's `cllm`.

The fresh-user test starts from nothing: no `cllm` settings in the user data, no `cllm` on PATH. The extension
installs its own server (the wheel inside the .vsix) into a private virtual environment, with `python3` on PATH;
pip takes the dependencies from its cache or the package index, and numba compiles from cold. It trains from the
palette, sees ghost text and prints the time from installing the .vsix to the first ghost text.

Prerequisites: node, chromium, code-server (vscode-extension/scripts/install-code-server.sh) and the built
extension with its node_modules (`make vscode`). Missing, the test is skipped unless CLLM_REQUIRE_E2E=1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import missing_prerequisite, require_program, write_c_workspace

REPO = Path(__file__).resolve().parents[2]
EXTENSION = REPO / "vscode-extension"
CODE_SERVER = REPO / ".tools" / "code-server"
VSIX = EXTENSION / "dist" / "cllm.vsix"
DRIVER = EXTENSION / "scripts" / "e2e-code-server.mjs"
SCREENSHOT = REPO / "test-artifacts" / "vscode.png"
DRIVER_TIMEOUT = 300  # seconds for the whole run; it takes well under a minute with a warm numba cache
FRESH_TIMEOUT = 1200  # seconds for the fresh user's run: pip installs numpy, numba, ..., numba compiles from cold

# A small model that still completes this workspace sensibly (so the screenshot shows real code): ~20 s on 2 cores.
SMALL_TRAINING = {
    "cllm.training.epochs": 60,
    "cllm.training.threads": 2,
    "cllm.training.advanced": {"vocabSize": 400, "dModel": 64, "layers": 2, "heads": 4, "ffn": 256, "seqLen": 128,
                               "batchSize": 12, "gradAccum": 1, "lr": 0.005},
}
TYPED = "\n\nstatic int step_0_10(int a, int b)\n{\n    int s = a + b * 3;\n"
TRAINING_TEXT = re.compile(r"^\u2b22 12 spheres \u00b7 [\d.]+k? tok/s \u00b7 loss \d+\.\d\d \u00b7 \d+/60"
                           r"(?: \u00b7 (?:<1 min|~(?:\d+ h )?\d+ min) left)?$")
READY_TEXT = re.compile(r"^\u2b22 CLLM \u00b7 just now \u00b7 \d+ % lines exact$")


def _prerequisites() -> str:
    """The node executable, after checking everything the driver needs."""
    node = require_program("node")
    require_program("chromium")
    if not (CODE_SERVER / "out" / "node" / "entry.js").is_file():
        missing_prerequisite(f"code-server is not installed in {CODE_SERVER} "
                             "(run bash vscode-extension/scripts/install-code-server.sh)")
    if not VSIX.is_file() or not (EXTENSION / "node_modules" / "playwright-core").is_dir():
        missing_prerequisite(f"the extension is not built ({VSIX}; run make vscode)")
    return node


def _workspace(tmp_path: Path) -> Path:
    """The C workspace, its settings asking for a small model kept in tmp_path/models."""
    workspace = write_c_workspace(tmp_path / "project")
    settings = {"cllm.modelDir": str(tmp_path / "models"), **SMALL_TRAINING}
    (workspace / ".vscode").mkdir()
    (workspace / ".vscode" / "settings.json").write_text(json.dumps(settings, indent=2))
    return workspace


def _drive(node: str, workspace: Path, server: list[str], screenshot: Path, timeout: int,
           env: dict[str, str] | None = None) -> dict:
    """Run the driver; what it saw, after checking it succeeded."""
    run = subprocess.run(
        [node, str(DRIVER), "--code-server", str(CODE_SERVER), "--vsix", str(VSIX), "--workspace", str(workspace),
         "--file", "mod0.c", *server, "--root", str(workspace.parent / "code-server"), "--screenshot", str(screenshot),
         "--type", TYPED, "--timeout", str(timeout - 30)],
        capture_output=True, text=True, timeout=timeout, cwd=EXTENSION, env=env)
    lines = run.stdout.strip().splitlines()
    seen = json.loads(lines[-1]) if lines else {}
    assert run.returncode == 0, f"driver failed: {seen.get('error')}\n{run.stderr[-3000:]}"
    return seen


def _assert_trained_with_ghost_text(seen: dict) -> None:
    texts = seen["statusTexts"]
    training = [i for i, text in enumerate(texts) if TRAINING_TEXT.match(text)]
    ready = [i for i, text in enumerate(texts) if READY_TEXT.match(text)]
    assert "\u2b21 CLLM: untrained" in texts, texts
    assert training, f"no training status seen: {texts}"
    assert ready and ready[-1] > training[0], f"status never went from training to ready: {texts}"
    assert seen["progressNotification"].startswith("CLLM training"), seen["progressNotification"]
    assert "Held-out bits per byte" in seen["statusView"], seen["statusView"]
    assert seen["ghostText"].strip(), "no ghost text appeared"


def test_train_status_and_ghost_text_in_code_server(tmp_path: Path) -> None:
    node = _prerequisites()
    workspace = _workspace(tmp_path)
    cllm = Path(sys.executable).with_name("cllm")

    seen = _drive(node, workspace, ["--cllm", str(cllm)], SCREENSHOT, DRIVER_TIMEOUT)

    _assert_trained_with_ghost_text(seen)
    assert seen["installNotification"] == "", "a configured server must not be installed"
    acceptance = seen["acceptance"]  # Ctrl+Right took a word of the ghost text, then Tab the rest
    assert re.search(r"Accepted in part\s+1\n", acceptance["afterWord"]), acceptance
    assert re.search(r"Accepted whole\s+1\n", acceptance["afterTab"]), acceptance
    assert re.search(r"Characters typed by cllm today\s+[1-9]", acceptance["afterTab"]), acceptance
    off = seen["suggestionsOff"]
    assert (off["status"], off["ghostText"]) == ("\u2b21 CLLM off", ""), off
    assert off["statusAfter"].startswith("\u2b22 CLLM \u00b7 "), off
    assert seen["dashboard"] == {"host": seen["dashboard"]["host"], "tokenState": "valid", "title": "cllm dashboard"}
    assert seen["dashboard"]["host"].startswith("127.0.0.1:")
    assert len(seen["serverMissing"]) == 1, seen["serverMissing"]
    assert "cllm.server.path is set to /nonexistent/cllm" in seen["serverMissing"][0]
    assert seen["errorStatus"] == {"text": "CLLM", "codicon": 1}
    assert (tmp_path / "models" / "model.cllm").is_file()
    assert SCREENSHOT.stat().st_size > 10_000


def test_fresh_user_gets_the_extensions_own_server(tmp_path: Path) -> None:
    node = _prerequisites()
    workspace = _workspace(tmp_path)
    path = os.pathsep.join(folder for folder in os.environ["PATH"].split(os.pathsep)
                           if not shutil.which("cllm", path=folder))
    assert shutil.which("cllm", path=path) is None
    assert shutil.which("python3", path=path), "the fresh user needs python3 on PATH"
    # The driver gives code-server a fresh HOME; pip keeps the user's cache (PIP_CACHE_DIR's default).
    pip_cache = os.environ.get("PIP_CACHE_DIR") or str(Path.home() / ".cache" / "pip")
    env = {**os.environ, "PATH": path, "PIP_CACHE_DIR": pip_cache}

    seen = _drive(node, workspace, ["--fresh"], SCREENSHOT.with_name("vscode-fresh.png"), FRESH_TIMEOUT, env)

    _assert_trained_with_ghost_text(seen)
    assert seen["installNotification"].startswith("CLLM: installing the language server"), seen["installNotification"]
    assert (tmp_path / "models" / "model.cllm").is_file()
    print(f"fresh user: server installed and running {seen['seconds']['serverRunning']} s, trained "
          f"{seen['seconds']['trained']} s, first ghost text {seen['seconds']['ghostText']} s after installing the .vsix")
