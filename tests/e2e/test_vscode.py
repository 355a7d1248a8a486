"""The VS Code extension end to end in a real VS Code (code-server, driven by Debian's Chromium).

vscode-extension/scripts/e2e-code-server.mjs installs the packaged .vsix into a fresh code-server profile, opens a
small C workspace whose .vscode/settings.json asks for a small model, runs "CLLM: Train on Workspace" from the
command palette, follows the status bar through training to ready, opens the Show Status view, types in a C file
until ghost text appears, saves test-artifacts/vscode.png, then runs "CLLM: Open Dashboard" and opens the link it
offers (with the token) in the same browser; last it sets cllm.server.path to a missing file in the workspace
settings and expects one error notification with the fix and the status bar's error state. The language server is
this checkout's `cllm`.

Prerequisites: node, chromium, code-server (vscode-extension/scripts/install-code-server.sh) and the built
extension with its node_modules (`make vscode`). Missing, the test is skipped unless CLLM_REQUIRE_E2E=1.
"""

from __future__ import annotations

import json
import re
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

# A small model that still completes this workspace sensibly (so the screenshot shows real code): ~20 s on 2 cores.
SMALL_TRAINING = {
    "cllm.training.epochs": 60,
    "cllm.training.threads": 2,
    "cllm.training.advanced": {"vocabSize": 400, "dModel": 64, "layers": 2, "heads": 4, "ffn": 256, "seqLen": 128,
                               "batchSize": 12, "gradAccum": 1, "lr": 0.005},
}
TYPED = "\n\nstatic int step_0_10(int a, int b)\n{\n    int s = a + b * 3;\n"
TRAINING_TEXT = re.compile(r"^\u2b22 12 spheres \u00b7 [\d.]+k? tok/s \u00b7 loss \d+\.\d\d \u00b7 \d+/60$")
READY_TEXT = re.compile(r"^\u2b22 CLLM \u00b7 just now \u00b7 \d+\.\d\d bpb$")


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


def test_train_status_and_ghost_text_in_code_server(tmp_path: Path) -> None:
    node = _prerequisites()
    workspace = write_c_workspace(tmp_path / "project")
    settings = {"cllm.modelDir": str(tmp_path / "models"), **SMALL_TRAINING}
    (workspace / ".vscode").mkdir()
    (workspace / ".vscode" / "settings.json").write_text(json.dumps(settings, indent=2))
    cllm = Path(sys.executable).with_name("cllm")

    run = subprocess.run(
        [node, str(DRIVER), "--code-server", str(CODE_SERVER), "--vsix", str(VSIX), "--workspace", str(workspace),
         "--file", "mod0.c", "--cllm", str(cllm), "--screenshot", str(SCREENSHOT), "--type", TYPED,
         "--timeout", str(DRIVER_TIMEOUT - 30)],
        capture_output=True, text=True, timeout=DRIVER_TIMEOUT, cwd=EXTENSION)

    lines = run.stdout.strip().splitlines()
    seen = json.loads(lines[-1]) if lines else {}
    assert run.returncode == 0, f"driver failed: {seen.get('error')}\n{run.stderr[-3000:]}"
    texts = seen["statusTexts"]
    training = [i for i, text in enumerate(texts) if TRAINING_TEXT.match(text)]
    ready = [i for i, text in enumerate(texts) if READY_TEXT.match(text)]
    assert "\u2b21 CLLM: untrained" in texts, texts
    assert training, f"no training status seen: {texts}"
    assert ready and ready[-1] > training[0], f"status never went from training to ready: {texts}"
    assert seen["progressNotification"].startswith("CLLM training"), seen["progressNotification"]
    assert "Held-out bits per byte" in seen["statusView"], seen["statusView"]
    assert seen["ghostText"].strip(), "no ghost text appeared"
    assert seen["dashboard"] == {"host": seen["dashboard"]["host"], "tokenState": "valid", "title": "cllm dashboard"}
    assert seen["dashboard"]["host"].startswith("127.0.0.1:")
    assert len(seen["serverMissing"]) == 1, seen["serverMissing"]
    assert "cllm.server.path is set to /nonexistent/cllm" in seen["serverMissing"][0]
    assert seen["errorStatus"] == {"text": "CLLM", "codicon": 1}
    assert (tmp_path / "models" / "model.cllm").is_file()
    assert SCREENSHOT.stat().st_size > 10_000
