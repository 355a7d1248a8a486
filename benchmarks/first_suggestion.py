"""Seconds from a fresh install's first server start to its first suggestion, with and without `cllm warmup`.

    python benchmarks/first_suggestion.py [--timeout 240] [--train-steps 20]

Each scenario starts from a fresh state: an empty XDG_CACHE_HOME and an empty NUMBA_CACHE_DIR (nothing compiled
yet, as after `pip install`), and its own copy of the model folder (no workspace index yet). It then times, from
spawning the server:

- lsp: `cllm lsp` on stdio (a pygls client): initialize, didOpen a C file, inlineCompletion every POLL seconds
  until an answer holds text;
- http: `cllm serve` on a free loopback port: POST /v1/completions every POLL seconds until a 200 with text.

"with warmup" runs `cllm warmup` in that fresh state first (its own time is a column: an install pays it once);
"without" does not, and the server then starts the background warm-up of a first start, as a user's would.
The model is the shipped base (engine/train/shipped/base.cllm) when the package has one, served as a first open
serves it (an empty model folder: no model of the workspace's own yet), else one `cllm train` trains here on a
synthetic workspace (default shape, --train-steps steps, in a numba cache of its own).
Prints one row per scenario next to the issue's goal (first suggestion <= 5 s after the warm-up, on 2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from lsprotocol import types
from pygls.lsp.client import LanguageClient

from cllm.engine.train.shipped import SHIPPED_BASE

sys.path.insert(0, str(Path(__file__).parent))
from completion_latency import synthetic_c  # noqa: E402  (the same synthetic C as the engine benchmark)

CLLM = [sys.executable, "-m", "cllm.server.cli"]
GOAL_SECONDS = 5.0
POLL = 0.2  # seconds between attempts
API_KEY = "first-suggestion-benchmark-key"
PREFIX = ("#include <stdio.h>\n#include <stdlib.h>\n\nstatic size_t compute_total(size_t count, int limit) {\n"
          "    int total = 0;\n    for (int i = 0; i < limit; i++) {\n        total += ")


def make_workspace(folder: Path) -> Path:
    """A synthetic C workspace of six files, and the file the clients open."""
    folder.mkdir(parents=True)
    for i in range(6):
        (folder / f"file{i}.c").write_text(synthetic_c(40, seed=i))
    (folder / "main.c").write_text(PREFIX)
    return folder


def prepare_model(folder: Path, workspace: Path, steps: int) -> tuple[Path, str]:
    """The model folder every scenario copies, and which model it holds."""
    models = folder / "models"
    models.mkdir()
    if SHIPPED_BASE.is_file():
        return models, f"the shipped base ({SHIPPED_BASE.name}), no model of the workspace's own"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(folder / "train-numba"), "XDG_CACHE_HOME": str(folder / "train-cache"),
           "CLLM_SHIPPED_BASE": ""}
    subprocess.run([*CLLM, "train", str(workspace), "--out", str(models / "model.cllm"), "--max-steps", str(steps),
                    "--no-base", "--json"], env=env, check=True, stdout=subprocess.DEVNULL)
    return models, f"a model trained here (default shape, {steps} steps; no shipped base in this checkout)"


def fresh_env(folder: Path) -> dict[str, str]:
    """An environment with nothing cached: an empty user cache folder and an empty numba cache."""
    for name in ("cache", "numba"):
        (folder / name).mkdir(parents=True)
    env = {**os.environ, "XDG_CACHE_HOME": str(folder / "cache"), "NUMBA_CACHE_DIR": str(folder / "numba"),
           "CLLM_BACKGROUND_WARMUP": "1"}
    env.pop("CLLM_SHIPPED_BASE", None)  # the package's own base, as installed
    return env


def warm_up(env: dict[str, str]) -> float:
    """`cllm warmup` in that environment; its seconds."""
    began = time.perf_counter()
    subprocess.run([*CLLM, "warmup"], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - began


async def first_lsp(workspace: Path, models: Path, env: dict[str, str], timeout: float) -> float:
    """Seconds from spawning `cllm lsp` to the first inline completion with text."""
    client = LanguageClient("cllm-first-suggestion", "1")
    for method in (types.WINDOW_LOG_MESSAGE, types.WINDOW_WORK_DONE_PROGRESS_CREATE, types.PROGRESS,
                   "cllm/sphereActivity", "cllm/status"):
        client.feature(method)(lambda params: None)
    began = time.perf_counter()
    await client.start_io(*CLLM, "lsp", env=env)
    try:
        await client.initialize_async(types.InitializeParams(
            capabilities=types.ClientCapabilities(), root_uri=workspace.as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=workspace.as_uri(), name=workspace.name)],
            initialization_options={"modelDir": str(models), "maxTokens": 16}))
        client.initialized(types.InitializedParams())
        uri = (workspace / "main.c").as_uri()
        client.text_document_did_open(types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="c", version=1, text=PREFIX)))
        lines = PREFIX.split("\n")
        params = types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=len(lines) - 1, character=len(lines[-1])),
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked))
        while time.perf_counter() - began < timeout:
            answer = await client.text_document_inline_completion_async(params)
            items = answer.items if isinstance(answer, types.InlineCompletionList) else answer or []
            if any(str(item.insert_text) for item in items):
                return time.perf_counter() - began
            await asyncio.sleep(POLL)
        return float("nan")
    finally:
        await client.shutdown_async(None)
        client.exit(None)
        await client.stop()


async def first_http(workspace: Path, models: Path, env: dict[str, str], timeout: float) -> float:
    """Seconds from spawning `cllm serve` to the first 200 of /v1/completions with text."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    began = time.perf_counter()
    server = subprocess.Popen([*CLLM, "serve", "--workspace", str(workspace), "--model-dir", str(models),
                               "--port", str(port), "--api-key", API_KEY], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    body = {"model": "cllm", "prompt": PREFIX, "max_tokens": 16, "temperature": 0}
    headers = {"Authorization": f"Bearer {API_KEY}"}
    try:
        async with aiohttp.ClientSession() as session:
            while time.perf_counter() - began < timeout:
                try:
                    async with session.post(f"http://127.0.0.1:{port}/v1/completions", json=body,
                                            headers=headers) as response:
                        if response.status == 200 and (await response.json())["choices"][0]["text"]:
                            return time.perf_counter() - began
                except aiohttp.ClientConnectionError:  # not listening yet
                    pass
                await asyncio.sleep(POLL)
        return float("nan")
    finally:
        server.terminate()
        server.wait()


async def scenario(folder: Path, workspace: Path, models: Path, protocol: str, warm: bool, timeout: float
                   ) -> tuple[float | None, float]:
    """One fresh start: the warm-up's seconds (None without) and the seconds to the first suggestion."""
    env = fresh_env(folder)
    own_models = folder / "models"
    shutil.copytree(models, own_models)
    warmup_seconds = warm_up(env) if warm else None
    first = first_lsp if protocol == "lsp" else first_http
    return warmup_seconds, await first(workspace, own_models, env, timeout)


async def main(timeout: float, train_steps: int) -> None:
    with tempfile.TemporaryDirectory(prefix="cllm-first-") as tmp:
        root = Path(tmp)
        workspace = make_workspace(root / "ws")
        models, which = prepare_model(root, workspace, train_steps)
        rows = []
        for protocol in ("lsp", "http"):
            for warm in (False, True):
                folder = root / f"{protocol}-{'warm' if warm else 'cold'}"
                rows.append((protocol, warm, *await scenario(folder, workspace, models, protocol, warm, timeout)))
    print(f"model: {which}")
    print(f"{'protocol':<10}{'warmup first':<14}{'warmup s':>10}{'first suggestion s':>20}{'goal':>8}")
    for protocol, warm, warmup_seconds, first in rows:
        spent = "-" if warmup_seconds is None else f"{warmup_seconds:.1f}"
        goal = f"{GOAL_SECONDS:.0f}" if warm else "-"
        print(f"{protocol:<10}{'yes' if warm else 'no':<14}{spent:>10}{first:>20.1f}{goal:>8}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=240.0, help="give up on a scenario after this many seconds")
    parser.add_argument("--train-steps", type=int, default=20, help="steps of the model trained when none is shipped")
    args = parser.parse_args()
    asyncio.run(main(args.timeout, args.train_steps))
