"""`cllm lsp --with SERVER [ARGS...]`: cllm and another language server as one, for clients that run a single
server per language (Emacs eglot, Helix before it had several, Kate, ...).

The proxy starts SERVER (e.g. clangd) and `cllm lsp` as child processes and passes JSON-RPC messages
between them and the client (stdin/stdout):
- every client message goes to SERVER with its id unchanged, except `textDocument/inlineCompletion` and the
  `cllm.*` commands, which go to cllm alone;
- notifications (document sync, settings, `initialized`, `exit`) go to both;
- `initialize` goes to SERVER first, then to cllm with SERVER's position encoding, and the client gets SERVER's
  capabilities plus cllm's completion, inline completion and commands;
- `textDocument/completion` goes to both and the client gets SERVER's items followed by cllm's;
- `shutdown` goes to both and is answered once both have answered;
- requests from either server to the client are forwarded (cllm's with their ids prefixed, so that they
  cannot clash with SERVER's) and the client's answers go back to the server that asked.

cllm's settings go in `initializationOptions` under the key "cllm" (SERVER gets the options without it) and
in the `cllm` section of the client's configuration, as without the proxy.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

from cllm.engine.errors import CllmError

from .protocol import MAX_FRAME_BYTES

log = logging.getLogger(__name__)

CLLM_COMMAND = [sys.executable, "-m", "cllm.server.cli", "lsp"]
_OURS_PREFIX = "cllm:"  # ids of cllm's requests to the client, as the client sees them
_EXIT_TIMEOUT = 10.0  # seconds a child may take to end after `exit`


class Peer:
    """One JSON-RPC connection: Content-Length frames read from `reader` and written to `writer`."""

    def __init__(self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter | Any) -> None:
        self.name = name
        self.reader = reader
        self.writer = writer

    async def read(self) -> dict[str, Any] | None:
        """The next message; None at the end of the stream. Frames that are not JSON objects are skipped."""
        while True:
            length = None
            while True:
                line = await self.reader.readline()
                if not line:
                    return None
                if line in (b"\r\n", b"\n"):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length" and value.strip().isdigit():
                    length = int(value)
            if length is None or length > MAX_FRAME_BYTES:
                log.warning("%s: skipped a frame without a usable Content-Length (%s)", self.name, length)
                continue
            body = await self.reader.readexactly(length)
            try:
                message = json.loads(body)
            except ValueError as exc:
                log.warning("%s: skipped a frame that is not JSON: %s", self.name, exc)
                continue
            if isinstance(message, dict):
                return message
            log.warning("%s: skipped a frame that is not a JSON-RPC message", self.name)

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message, ensure_ascii=False).encode()
        self.writer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)


def merge_completions(theirs: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    """The client's completion response: SERVER's items (a CompletionList, an array or null) followed by
    cllm's. SERVER's response is kept as it is when cllm has nothing to add; SERVER's error is kept when
    there are no items at all."""
    our_result = ours.get("result") or {}
    our_items = our_result.get("items", []) if isinstance(our_result, dict) else []
    if not our_items:
        return theirs
    result = theirs.get("result")
    if isinstance(result, dict):
        items, incomplete = result.get("items") or [], bool(result.get("isIncomplete"))
    else:
        items, incomplete = (result if isinstance(result, list) else []), False
    merged = {**(result if isinstance(result, dict) else {}), "items": items + our_items,
              "isIncomplete": incomplete or bool(our_result.get("isIncomplete"))}
    return {"jsonrpc": "2.0", "id": theirs.get("id"), "result": merged}


def merge_capabilities(theirs: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    """SERVER's InitializeResult with cllm's completion, inline completion and commands added."""
    result = dict(theirs.get("result") or {})
    caps = dict(result.get("capabilities") or {})
    our_caps = (ours.get("result") or {}).get("capabilities") or {}
    caps.setdefault("completionProvider", our_caps.get("completionProvider"))
    caps["inlineCompletionProvider"] = our_caps.get("inlineCompletionProvider")
    commands = (caps.get("executeCommandProvider") or {}).get("commands", [])
    our_commands = (our_caps.get("executeCommandProvider") or {}).get("commands", [])
    caps["executeCommandProvider"] = {**(caps.get("executeCommandProvider") or {}), "commands": commands + our_commands}
    result["capabilities"] = caps
    info = result.get("serverInfo") or {}
    result["serverInfo"] = {**info, "name": f"{info.get('name', 'server')} + cllm"}
    return {"jsonrpc": "2.0", "id": theirs.get("id"), "result": result}


def _for_cllm(message: dict[str, Any]) -> bool:
    """Client requests only cllm answers."""
    method, params = message.get("method"), message.get("params") or {}
    if method == "textDocument/inlineCompletion":
        return True
    return method == "workspace/executeCommand" and str(params.get("command", "")).startswith("cllm.")


class Proxy:
    """Routes messages between the client and the two servers (see the module docstring)."""

    def __init__(self, client: Peer, theirs: Peer, ours: Peer) -> None:
        self.client, self.theirs, self.ours = client, theirs, ours
        self.waiting: dict[tuple[str, Any], asyncio.Future] = {}  # (server, id) -> its response, awaited here
        self.routes: dict[Any, list[Peer]] = {}  # client request id -> the servers it went to (for cancels)
        self.asked: dict[Any, tuple[Peer, Any]] = {}  # server request id as the client sees it -> (server, id)
        self.tasks: set[asyncio.Task] = set()

    # client -> servers

    def from_client(self, message: dict[str, Any]) -> None:
        method, msg_id = message.get("method"), message.get("id")
        if method is None:  # the client's answer to a server's request
            peer, original = self.asked.pop(msg_id, (self.theirs, msg_id))
            peer.send({**message, "id": original})
        elif msg_id is None:  # a notification
            if method == "$/cancelRequest":
                for peer in self.routes.get((message.get("params") or {}).get("id"), [self.theirs]):
                    peer.send(message)
            else:
                self.theirs.send(message)
                self.ours.send(message)
        elif method == "initialize":
            self._spawn(self._initialize(message))
        elif method in ("textDocument/completion", "shutdown"):
            self._spawn(self._both(message))
        else:
            peer = self.ours if _for_cllm(message) else self.theirs
            self.routes[msg_id] = [peer]
            peer.send(message)

    def _spawn(self, work) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _ask(self, peer: Peer, message: dict[str, Any]) -> dict[str, Any]:
        future = asyncio.get_running_loop().create_future()
        self.waiting[(peer.name, message["id"])] = future
        peer.send(message)
        return await future

    async def _initialize(self, message: dict[str, Any]) -> None:
        """SERVER first: cllm must count positions in the encoding SERVER chose (clangd may pick UTF-8)."""
        params = message.get("params") or {}
        options = params.get("initializationOptions")
        theirs_options = {k: v for k, v in options.items() if k != "cllm"} if isinstance(options, dict) else options
        theirs = await self._ask(self.theirs, {**message, "params": {**params, "initializationOptions": theirs_options}})
        result = theirs.get("result") or {}
        encoding = (result.get("capabilities") or {}).get("positionEncoding") or result.get("offsetEncoding") or "utf-16"
        capabilities = params.get("capabilities") or {}
        general = {**(capabilities.get("general") or {}), "positionEncodings": [encoding]}
        ours = await self._ask(self.ours, {**message, "params": {**params, "capabilities": {**capabilities, "general": general}}})
        self.client.send(merge_capabilities(theirs, ours) if "result" in theirs else theirs)

    async def _both(self, message: dict[str, Any]) -> None:
        self.routes[message["id"]] = [self.theirs, self.ours]
        theirs, ours = await asyncio.gather(self._ask(self.theirs, message), self._ask(self.ours, message))
        self.routes.pop(message["id"], None)
        self.client.send(merge_completions(theirs, ours) if message["method"] == "textDocument/completion" else theirs)

    # servers -> client

    def from_server(self, peer: Peer, message: dict[str, Any]) -> None:
        method, msg_id = message.get("method"), message.get("id")
        if method is None:  # a response to a client request
            future = self.waiting.pop((peer.name, msg_id), None)
            if future is not None:
                future.set_result(message)
            else:
                self.routes.pop(msg_id, None)
                self.client.send(message)
        elif msg_id is not None:  # a request to the client
            seen = f"{_OURS_PREFIX}{msg_id}" if peer is self.ours else msg_id
            self.asked[seen] = (peer, msg_id)
            self.client.send({**message, "id": seen})
        else:
            self.client.send(message)

    async def pump(self, source: Peer) -> str:
        """Pass `source`'s messages on until its stream ends; returns its name."""
        while (message := await source.read()) is not None:
            if source is self.client:
                self.from_client(message)
                if message.get("method") == "exit":
                    break
            else:
                self.from_server(source, message)
        return source.name


async def _stdio() -> tuple[asyncio.StreamReader, Any]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_FRAME_BYTES)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, sys.stdout.buffer)
    return reader, asyncio.StreamWriter(transport, protocol, None, loop)


async def _start(command: list[str]) -> asyncio.subprocess.Process:
    try:
        return await asyncio.create_subprocess_exec(*command, stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE, limit=MAX_FRAME_BYTES)
    except OSError as exc:
        raise CllmError(f"cannot start {command[0]}: {exc.strerror or exc}") from None


async def serve(command: list[str], cllm_args: list[str]) -> int:
    """Run the proxy on stdin/stdout until the client sends `exit` or a stream ends; returns SERVER's exit
    status after `exit`, 1 when a server ended on its own."""
    children = [await _start(command)]
    children.append(await _start(CLLM_COMMAND + cllm_args))
    theirs, ours = (Peer(name, child.stdout, child.stdin) for name, child in zip((command[0], "cllm"), children))
    client = Peer("client", *await _stdio())
    proxy = Proxy(client, theirs, ours)
    pumps = {asyncio.ensure_future(proxy.pump(peer)) for peer in (client, theirs, ours)}
    done, pending = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
    ended = next(iter(done)).result()
    for pump in pending:
        pump.cancel()
    if ended != "client":
        log.error("%s ended before the client said exit", ended)
    for child in children:  # after `exit` they end by themselves; at the end of stdin they see its end too
        child.stdin.close()
    for child in children:
        try:
            await asyncio.wait_for(child.wait(), _EXIT_TIMEOUT)
        except asyncio.TimeoutError:
            child.kill()
            await child.wait()
    return children[0].returncode if ended == "client" else 1


def run_proxy(command: list[str], cllm_args: list[str]) -> int:
    """`cllm lsp --with SERVER...`: serve until the client exits; logs go to stderr."""
    logging.basicConfig(level=logging.INFO, format="cllm-lsp-proxy %(levelname)s %(name)s: %(message)s")
    return asyncio.run(serve(command, cllm_args))
