"""Helpers for driving `cllm lsp` as a subprocess: a pytest-lsp session and a raw JSON-RPC pipe.

Every server gets its own cache folder (XDG_CACHE_HOME) so that no test touches the user's models.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

SERVER_COMMAND = [sys.executable, "-m", "cllm.server.cli", "lsp"]
ACTIVITY = "cllm/sphereActivity"
# Tiny training for tests: a handful of steps of a very small model (advanced settings, see server/settings.py).
TINY_TRAINING = {"epochs": 1, "maxSteps": 4, "spheres": 2, "threads": 1, "batchSize": 4, "seqLen": 32,
                 "vocabSize": 300, "dModel": 32, "layers": 1, "heads": 2, "ffn": 64}


def plain(value: Any) -> Any:
    """pygls hands custom notifications over as named tuples: turn them back into dicts and lists."""
    if hasattr(value, "_asdict"):
        return {key: plain(item) for key, item in value._asdict().items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def server_env(cache: Path) -> dict[str, str]:
    """The server's environment: the test's cache folder, numba's shared cache kept."""
    return {**os.environ, "XDG_CACHE_HOME": str(cache), "PYTHONUNBUFFERED": "1"}


def model_folder(tmp: Path, model: Path | None) -> Path:
    """A fresh model folder, holding a copy of `model` as model.cllm when given."""
    folder = tmp / "models"
    folder.mkdir(parents=True, exist_ok=True)
    if model is not None:
        shutil.copyfile(model, folder / "model.cllm")
    return folder


@contextlib.asynccontextmanager
async def lsp_session(root: Path, options: dict[str, Any] | None, cache: Path, capabilities: str = "visual-studio-code",
                      extra_folders: tuple[Path, ...] = (), args: tuple[str, ...] = ()) -> AsyncIterator[LanguageClient]:
    """A pytest-lsp client connected to `cllm lsp ARGS...` and initialized on `root` (and `extra_folders`) with
    initializationOptions."""
    config = ClientServerConfig(server_command=[*SERVER_COMMAND, *args], server_env=server_env(cache))
    client = await config.start()
    client.activity = []  # type: ignore[attr-defined]

    @client.feature(ACTIVITY)
    def on_activity(params: Any) -> None:
        client.activity.append(plain(params))  # type: ignore[attr-defined]

    try:
        client.init_result = await asyncio.wait_for(client.initialize_session(types.InitializeParams(  # type: ignore[attr-defined]
            capabilities=client_capabilities(capabilities), root_uri=root.as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=folder.as_uri(), name=folder.name)
                               for folder in (root, *extra_folders)],
            initialization_options=options)), 60)
        yield client
        await asyncio.wait_for(client.shutdown_session(), 30)
    finally:
        server = client._server
        if server is not None and server.returncode is None:  # the test failed midway: do not wait for it
            server.kill()
            await server.wait()
        await client.stop()


def open_c(client: LanguageClient, path: Path, text: str, language: str = "c", version: int = 1) -> str:
    """didOpen a document; returns its URI."""
    uri = path.as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id=language, version=version, text=text)))
    return uri


def end_position(text: str) -> types.Position:
    """The LSP position just after the last character of `text` (ASCII text)."""
    lines = text.split("\n")
    return types.Position(line=len(lines) - 1, character=len(lines[-1]))


def inline_params(uri: str, position: types.Position) -> types.InlineCompletionParams:
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=position,
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic))


async def execute(client: LanguageClient, command: str, *arguments: Any) -> Any:
    return await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=command, arguments=list(arguments) or None))


def progress_kinds(client: LanguageClient) -> dict[str, list[str]]:
    """Token -> the kinds of the $/progress values received for it."""
    return {str(token): [value.kind for value in values] for token, values in client.progress_reports.items()}


async def wait_until(predicate, timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate()` until it holds or `timeout` seconds pass (a hang fails the test, not the suite)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return bool(predicate())


class RawServer:
    """`cllm lsp` over a raw pipe, for input no well-behaved client would send."""

    def __init__(self, process: asyncio.subprocess.Process):
        self.process = process
        self.messages: list[dict[str, Any]] = []
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, cache: Path, *args: str) -> "RawServer":
        process = await asyncio.create_subprocess_exec(
            *SERVER_COMMAND, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=None, env=server_env(cache))
        return cls(process)

    def write(self, raw: bytes) -> None:
        """Bytes onto the server's stdin as they are, framing or not."""
        assert self.process.stdin is not None
        self.process.stdin.write(raw)

    def send_bytes(self, body: bytes) -> None:
        self.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def send(self, message: dict[str, Any]) -> None:
        self.send_bytes(json.dumps({"jsonrpc": "2.0", **message}).encode())

    async def _read(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        while True:
            length = 0
            while True:
                line = await stdout.readline()
                if not line:
                    return
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
                if line in (b"\r\n", b"\n"):
                    break
            self.messages.append(json.loads(await stdout.readexactly(length)))

    async def response(self, msg_id: Any, timeout: float = 30.0) -> dict[str, Any]:
        """The response to request `msg_id` (fails the test after `timeout` seconds)."""
        found: list[dict[str, Any]] = []

        def answered() -> bool:
            found[:] = [m for m in self.messages if m.get("id") == msg_id and "method" not in m]
            return bool(found)

        assert await wait_until(answered, timeout), f"no response to request {msg_id!r}"
        return found[0]

    async def close(self) -> None:
        if self.process.returncode is None:
            self.send({"id": "bye", "method": "shutdown"})
            with contextlib.suppress(AssertionError):
                await self.response("bye", timeout=10)
            self.send({"method": "exit"})
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.process.wait(), 10)
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        self._reader.cancel()
