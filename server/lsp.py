"""The cllm language server (pygls 2): thin handlers over one Workspace per workspace folder.

Threads and the event loop:
- Handlers run on pygls' asyncio event loop; every message to the client is sent from it.
- Blocking work (loading models, completions) runs on one dedicated worker thread (`Worker`), never on the
  event loop and never in pygls' thread pool (that pool also reads stdin). When completion requests for a
  document pile up, only the newest is computed: an older queued one is answered with an empty result and
  a running one is stopped through its cancel event. `$/cancelRequest` sets the same event.
- Training runs in a child process owned by the Workspace; its events reach the loop through
  `loop.call_soon_threadsafe` and become `$/progress` and `cllm/sphereActivity` notifications.
- A workspace's HTTP face (dashboard, /v1/...) runs on the same event loop: started for the first folder by
  `--http-port`, or on a free loopback port by the `cllm.dashboard` command, which hands the editor the link.

Logs go to stderr and, for cllm's own loggers, to `window/logMessage`; stdout carries the protocol only.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import unquote

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcParseError
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.uris import to_fs_path
from pygls.workspace.position_codec import PositionCodec

from cllm.engine.config import CorpusConfig

from .settings import TRAINING_KEYS, parse_settings
from .workspace import Workspace

if TYPE_CHECKING:  # aiohttp is imported only when a dashboard is served: it adds a quarter second to start-up
    from .http import HttpServer

log = logging.getLogger(__name__)

SERVER_NAME = "cllm"
SERVER_VERSION = "0.1.0"
ACTIVITY_NOTIFICATION = "cllm/sphereActivity"
CMD_TRAIN, CMD_CANCEL, CMD_STATUS = "cllm.trainWorkspace", "cllm.cancelTraining", "cllm.status"
CMD_DASHBOARD = "cllm.dashboard"
ACTIVITY_INTERVAL = 0.25  # seconds: cllm/sphereActivity and progress reports at most 4 per second
PROGRESS_CREATE_TIMEOUT = 10.0
MAX_PREFIX_CHARS = 64_000  # the model sees a few hundred tokens; bound the work for huge documents
PREFIX_ALIGN = 4096
MAX_SUFFIX_CHARS = 16_000
C_EXTENSIONS = frozenset(CorpusConfig().extensions)
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")
_WORD_BEFORE = re.compile(r"[A-Za-z0-9_]*\Z")


# -- the worker thread ---------------------------------------------------------------------------------


@dataclass
class Job:
    """One unit of blocking work: `fn(cancel)` runs on the worker; its result resolves `future` on the loop."""

    fn: Callable[[threading.Event], Any]
    future: asyncio.Future
    key: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)


class Worker:
    """A single thread for blocking work, so the event loop stays free and pygls' pool keeps reading stdin.

    Jobs with the same key supersede each other: submitting a newer one answers a queued older one with
    `superseded` and sets the cancel event of a running older one.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, superseded: Any = None):
        self._loop = loop
        self._superseded = superseded
        self._cond = threading.Condition()
        self._queue: OrderedDict[object, Job] = OrderedDict()
        self._running: Job | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="cllm-worker", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[threading.Event], Any], key: str | None = None) -> Job:
        """Queue `fn`; call from the event loop. Await `job.future` for its result."""
        job = Job(fn=fn, future=self._loop.create_future(), key=key)
        with self._cond:
            slot: object = key if key is not None else object()
            older = self._queue.pop(slot, None)
            if older is not None and not older.future.done():
                older.future.set_result(self._superseded)
            if key is not None and self._running is not None and self._running.key == key:
                self._running.cancel.set()
            self._queue[slot] = job
            self._cond.notify()
        return job

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                _, job = self._queue.popitem(last=False)
                self._running = job
            try:
                if job.cancel.is_set() or job.future.done():
                    result, error = self._superseded, None
                else:
                    result, error = job.fn(job.cancel), None
            except Exception as exc:  # reported to the awaiting handler, which answers with an error
                result, error = None, exc
            finally:
                with self._cond:
                    self._running = None
            self._loop.call_soon_threadsafe(_settle, job.future, result, error)

    def close(self) -> None:
        """Stop taking jobs (the thread ends after the current one)."""
        with self._cond:
            self._closed = True
            self._cond.notify()


def _settle(future: asyncio.Future, result: Any, error: Exception | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


async def run_job(job: Job) -> Any:
    """Await a worker job; if the request is cancelled ($/cancelRequest), stop the job too."""
    try:
        return await job.future
    except asyncio.CancelledError:
        job.cancel.set()
        raise


# -- documents and positions ---------------------------------------------------------------------------


@dataclass
class Suggestion:
    """The model's continuation at a cursor, and the identifier being typed before it (for list filters)."""

    text: str
    word: str
    word_units: int


def split_lines(text: str) -> list[str]:
    """Lines as LSP counts them (\\n, \\r\\n and \\r end a line), each with its ending."""
    return _LINE.findall(text)


def offset_at(text: str, position: types.Position, codec: PositionCodec) -> int | None:
    """Index into `text` of an LSP position (characters past the line end clamp to it); None when the
    line does not exist."""
    lines = split_lines(text)
    if position.line > len(lines) or position.line < 0 or position.character < 0:
        return None
    if position.line == len(lines):  # the empty line after a final line break (or of an empty document)
        return len(text) if not lines or lines[-1][-1] in "\r\n" else None
    start = sum(len(line) for line in lines[: position.line])
    content = lines[position.line].rstrip("\r\n")
    units = min(position.character, codec.client_num_units(content))
    column = codec.position_from_client_units([content], types.Position(line=0, character=units)).character
    return start + column


def is_c_document(uri: str, language_id: str | None) -> bool:
    """C by language id, or by file extension when the client sends none or a generic one."""
    if language_id == "c":
        return True
    return Path(unquote(uri)).suffix in C_EXTENSIONS and language_id in (None, "", "plaintext", "cpp")


def _complete_at(workspace: Workspace, text: str, position: types.Position, codec: PositionCodec,
                 path: str | None, doc_key: str, cancel: threading.Event) -> Suggestion | None:
    """Worker side of a completion request: cut prefix and suffix at the cursor and ask the model."""
    offset = offset_at(text, position, codec)
    if offset is None:
        return None
    start = max(0, offset - MAX_PREFIX_CHARS)
    start -= start % PREFIX_ALIGN  # a start that stays put while typing keeps the completer's cache reusable
    prefix = text[start: offset]
    suffix = text[offset: offset + MAX_SUFFIX_CHARS]
    completion = workspace.complete(prefix, suffix, path=path, doc_key=doc_key, cancel=cancel)
    if completion is None or not completion.text or cancel.is_set():
        return None
    word = _WORD_BEFORE.search(prefix).group(0)
    return Suggestion(text=completion.text, word=word, word_units=codec.client_num_units(word))


# -- settings and logging ------------------------------------------------------------------------------


def cllm_section(raw: Any) -> Any:
    """The `cllm` object from initializationOptions or didChangeConfiguration (wrapped or not)."""
    if isinstance(raw, dict) and isinstance(raw.get("cllm"), dict):
        return raw["cllm"]
    return raw


class _ClientLogHandler(logging.Handler):
    """Forwards cllm log records to the client's log (window/logMessage), always from the event loop."""

    LEVELS = {logging.ERROR: types.MessageType.Error, logging.WARNING: types.MessageType.Warning,
              logging.INFO: types.MessageType.Info}

    def __init__(self, server: "CllmServer"):
        super().__init__(logging.INFO)
        self._server = server

    def emit(self, record: logging.LogRecord) -> None:
        loop = self._server.loop
        if loop is None or loop.is_closed():
            return
        kind = self.LEVELS.get(record.levelno, types.MessageType.Log)
        params = types.LogMessageParams(type=kind, message=self.format(record))
        loop.call_soon_threadsafe(self._server.window_log_message, params)


# -- training events -> $/progress and cllm/sphereActivity ---------------------------------------------


def _rate(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "? tok/s"
    return f"{value / 1000:.1f}k tok/s" if value >= 1000 else f"{value:.0f} tok/s"


def progress_message(live: dict[str, Any]) -> str:
    """ "epoch 3/10 · loss 2.41 · 3.1k tok/s" from the live training status; before the first step, the phase:
    "tokenize 120/820 MB"."""
    phase, done, total = live.get("phase"), live.get("done"), live.get("total")
    if "epoch" not in live and phase in ("scan", "tokenizer", "tokenize") and isinstance(done, int):
        if live.get("unit") == "bytes":
            return f"{phase} {done / 1e6:,.0f}" + (f"/{total / 1e6:,.0f}" if isinstance(total, int) else "") + " MB"
        return f"{phase} {done:,}" + (f"/{total:,}" if isinstance(total, int) else "") + f" {live.get('unit', '')}"
    parts = []
    if "epoch" in live:
        parts.append(f"epoch {live['epoch']}/{live.get('epochs', '?')}")
    if isinstance(live.get("loss"), (int, float)):
        parts.append(f"loss {live['loss']:.2f}")
    if "tokensPerSecond" in live:
        parts.append(_rate(live["tokensPerSecond"]))
    return " · ".join(parts) or "starting"


def sphere_activity(workspace: Workspace, live: dict[str, Any]) -> dict[str, Any]:
    """The cllm/sphereActivity payload from the live training status."""
    spheres = [{"id": s.get("id"), "busy": s.get("busy"), "tokens": s.get("tokens"), "loss": s.get("loss")}
               for s in live.get("spheres") or [] if isinstance(s, dict)]
    return {"workspace": workspace.root.as_uri(), "state": live.get("state"), "epoch": live.get("epoch"),
            "epochs": live.get("epochs"), "step": live.get("step"), "totalSteps": live.get("totalSteps"),
            "loss": live.get("loss"), "tokensPerSecond": live.get("tokensPerSecond"), "spheres": spheres}


class TrainingRelay:
    """Turns one Workspace's events into $/progress and cllm/sphereActivity, in order, on the event loop."""

    _tokens = itertools.count(1)

    def __init__(self, server: "CllmServer", workspace: Workspace):
        self.server = server
        self.workspace = workspace
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.token: str | None = None
        self._last_sent = 0.0
        self.task = asyncio.ensure_future(self._run())
        self.unsubscribe = workspace.subscribe(self._from_thread)

    def _from_thread(self, event: dict[str, Any]) -> None:
        loop = self.server.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.queue.put_nowait, event)

    async def _run(self) -> None:
        while True:
            event = await self.queue.get()
            try:
                await self._handle(event)
            except Exception:
                log.exception("cannot relay training event %s", event.get("event"))

    async def _handle(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        live = self.workspace.status()["training"]
        if kind == "training_started":
            await self._begin()
        elif kind in ("step", "epoch") and time.monotonic() - self._last_sent >= ACTIVITY_INTERVAL:
            self._last_sent = time.monotonic()
            self._report(live)
            self.server.protocol.notify(ACTIVITY_NOTIFICATION, sphere_activity(self.workspace, live))
        elif kind == "training_finished":
            self._end(event, live)
            self.server.protocol.notify(ACTIVITY_NOTIFICATION, sphere_activity(self.workspace, live))

    def _progress_supported(self) -> bool:
        window = self.server.client_capabilities.window
        return bool(window and window.work_done_progress)

    async def _begin(self) -> None:
        self.token = None
        if not self._progress_supported():
            return
        token = f"cllm-train-{next(self._tokens)}"
        try:
            await asyncio.wait_for(self.server.work_done_progress.create_async(token), PROGRESS_CREATE_TIMEOUT)
        except Exception as exc:  # the client refused or did not answer: train without a progress bar
            log.warning("client did not create the progress token: %s", exc)
            return
        self.token = token
        self.server.progress_tokens[token] = self.workspace
        self.server.work_done_progress.begin(token, types.WorkDoneProgressBegin(
            title=f"Training cllm on {self.workspace.root.name}", cancellable=True, message="starting",
            percentage=0))

    def _report(self, live: dict[str, Any]) -> None:
        if self.token is None:
            return
        percentage = live.get("percent")
        self.server.work_done_progress.report(self.token, types.WorkDoneProgressReport(
            message=progress_message(live), percentage=percentage if isinstance(percentage, int) else None,
            cancellable=True))

    def _end(self, event: dict[str, Any], live: dict[str, Any]) -> None:
        state, reason = event.get("state"), event.get("reason")
        if state == "done":
            model = self.workspace.status()["model"]
            bpb = model.get("valBitsPerByte")
            message = "done" + (f" · {bpb:.2f} bits/byte" if isinstance(bpb, (int, float)) else "")
        else:
            message = f"{state}: {reason}" if reason else str(state)
        if state == "failed":
            self.server.window_show_message(types.ShowMessageParams(
                type=types.MessageType.Error, message=f"cllm training failed: {reason}"))
        if self.token is not None:
            self.server.work_done_progress.end(self.token, types.WorkDoneProgressEnd(message=message))
            self.server.progress_tokens.pop(self.token, None)
            self.token = None

    def close(self) -> None:
        self.unsubscribe()
        self.task.cancel()


# -- the server ----------------------------------------------------------------------------------------


class _Answered:
    """Stands in for a request already answered with an error: pygls drops messages whose jsonrpc is not 2.0."""

    jsonrpc = "answered"


class CllmProtocol(LanguageServerProtocol):
    """LanguageServerProtocol that answers requests whose parameters do not fit the method with an error
    (pygls alone would drop them and leave the client waiting)."""

    def structure_message(self, data: dict[str, Any]):
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            if "jsonrpc" not in data or "method" not in data or "id" not in data:
                raise
            if isinstance(data["id"], (int, str)):
                self._send_response(data["id"], None, exc.to_response_error())
            log.warning("invalid parameters for %s: %s", data.get("method"), exc.__cause__ or exc)
            return _Answered()


class CllmServer(LanguageServer):
    """pygls server holding the workspaces, the worker, the settings and the training relays."""

    def __init__(self, http_port: int | None = None) -> None:
        super().__init__(SERVER_NAME, SERVER_VERSION, protocol_cls=CllmProtocol,
                         text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.http_port = http_port
        self.http: dict[Path, HttpServer] = {}
        self._http_lock = asyncio.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.worker: Worker | None = None
        self.raw_settings: Any = None
        self.workspaces: dict[Path, Workspace] = {}
        self.relays: dict[Path, TrainingRelay] = {}
        self.progress_tokens: dict[str, Workspace] = {}
        self._reported: set[str] = set()
        self._hinted: set[Path] = set()

    # messages to the user

    def report_server_error(self, error: Exception, source: Any) -> None:
        """Errors outside a request go to the log, not a popup; unparseable JSON gets a parse error reply."""
        log.warning("protocol error: %s", error)
        if isinstance(error, json.JSONDecodeError):
            self.protocol._send_response(None, None, JsonRpcParseError(str(error)).to_response_error())

    def report_problems(self, problems: list[str]) -> None:
        """Show each settings problem once per session."""
        for problem in problems:
            if problem not in self._reported:
                self._reported.add(problem)
                self.window_show_message(types.ShowMessageParams(type=types.MessageType.Warning,
                                                                 message=f"cllm: {problem}"))

    def hint_untrained(self, workspace: Workspace) -> None:
        """Once per workspace: there is no model yet, suggest training."""
        if workspace.root in self._hinted or workspace.training:
            return
        self._hinted.add(workspace.root)
        self.window_show_message(types.ShowMessageParams(
            type=types.MessageType.Info,
            message=f"cllm has no model for {workspace.root.name} yet: run \"Train on Workspace\" "
                    f"(command {CMD_TRAIN}) to learn this workspace's C code."))

    # workspaces

    async def open_workspace(self, root: Path) -> Workspace:
        """Create (on the worker: it loads the model) and register the Workspace of a folder."""
        root = root.resolve()
        if root in self.workspaces:
            return self.workspaces[root]
        assert self.worker is not None
        workspace = await self.worker.submit(lambda _cancel: Workspace(root, settings=self.raw_settings)).future
        if root in self.workspaces:
            return self.workspaces[root]
        self.workspaces[root] = workspace
        self.relays[root] = TrainingRelay(self, workspace)
        return workspace

    def close_workspace(self, root: Path) -> None:
        workspace = self.workspaces.pop(root.resolve(), None)
        relay = self.relays.pop(root.resolve(), None)
        if relay is not None:
            relay.close()
        if workspace is not None:
            workspace.cancel_training()

    async def workspace_for(self, path: Path | None) -> Workspace | None:
        """The Workspace of the innermost open folder holding `path`; with no folders open, one for the
        file's own folder."""
        if path is not None:
            inside = [root for root in self.workspaces if path.is_relative_to(root)]
            if inside:
                return self.workspaces[max(inside, key=lambda root: len(root.parts))]
        if self.workspaces:
            return next(iter(self.workspaces.values()))
        if path is not None and path.parent.is_dir():
            return await self.open_workspace(path.parent)
        return None

    def command_target(self, args: tuple[Any, ...]) -> tuple[Workspace | None, dict[str, Any], list[str]]:
        """Workspace and training overrides of a command's arguments: none, a folder URI or path, or an
        object {"workspace": uri-or-path, <training settings>...}."""
        target: Any = None
        overrides: dict[str, Any] = {}
        problems: list[str] = []
        if args:
            first = args[0]
            if isinstance(first, dict):
                target = first.get("workspace")
                for key, value in first.items():
                    if key in TRAINING_KEYS:
                        overrides[TRAINING_KEYS[key][0]] = value
                    elif key != "workspace":
                        problems.append(f"unknown argument {key!r}")
            elif isinstance(first, str):
                target = first
            else:
                problems.append(f"expected a folder or an object, got {first!r}")
        if target is None:
            return next(iter(self.workspaces.values()), None), overrides, problems
        if not isinstance(target, str):
            return None, overrides, problems + [f"workspace must be a folder URI or path, got {target!r}"]
        path = Path(to_fs_path(target) if target.startswith("file:") else target).resolve()
        return self.workspaces.get(path), overrides, problems

    async def suggest(self, uri: str, position: types.Position) -> tuple[Suggestion | None, Workspace | None]:
        """The model's suggestion at a position of an open C document (None when there is none)."""
        document = self.workspace.text_documents.get(unquote(uri))
        if document is None or not is_c_document(uri, document.language_id):
            return None, None
        path = Path(document.path) if document.path else None
        workspace = await self.workspace_for(path)
        if workspace is None or not workspace.settings.enable:
            return None, workspace
        if not workspace.has_model:
            self.hint_untrained(workspace)
            return None, workspace
        assert self.worker is not None
        text, codec = document.source, document.position_codec
        job = self.worker.submit(
            lambda cancel: _complete_at(workspace, text, position, codec, document.path, uri, cancel), key=uri)
        return await run_job(job), workspace

    async def start_http(self, workspace: Workspace, port: int = 0) -> HttpServer | None:
        """Serve `workspace` over the loopback HTTP API too (dashboard, /v1/...), on this event loop; port 0
        picks a free one. A server already running for the workspace is reused. None (after telling the
        user) when the port cannot be served."""
        from .http import serve_http

        async with self._http_lock:  # two quick "Open Dashboard" requests must not start two servers
            running = self.http.get(workspace.root)
            if running is not None:
                return running
            try:
                http = await serve_http(workspace, port=port)
            except (OSError, ValueError) as exc:
                log.error("cannot serve HTTP on port %s: %s", port, exc)
                self.report_problems([f"cannot serve HTTP on port {port}: {exc}"])
                return None
            self.http[workspace.root] = http
        log.info("serving %s over HTTP at %s/v1 (token in %s)", workspace.root, http.url, http.token_path)
        return http

    async def stop_http(self, root: Path | None = None) -> None:
        """Stop the HTTP face of the folder `root` (of every folder when None); its token file goes too."""
        roots = list(self.http) if root is None else [root.resolve()]
        for key in roots:
            http = self.http.pop(key, None)
            if http is not None:
                await http.close()

    def close(self) -> None:
        """Stop the worker and end any training (server shutdown)."""
        for root in list(self.workspaces):
            workspace = self.workspaces[root]
            self.close_workspace(root)
            workspace.close()
        if self.worker is not None:
            self.worker.close()


def build_server(http_port: int | None = None) -> CllmServer:
    """A CllmServer with every feature registered; `http_port` also serves the first folder over HTTP."""
    server = CllmServer(http_port)

    @server.feature(types.INITIALIZE)
    async def initialize(ls: CllmServer, params: types.InitializeParams) -> None:
        ls.loop = asyncio.get_running_loop()
        ls.worker = Worker(ls.loop)
        ls.raw_settings = cllm_section(params.initialization_options)
        folders = [f.uri for f in params.workspace_folders or []] or ([params.root_uri] if params.root_uri else [])
        for uri in folders:
            path = to_fs_path(uri)
            if path and Path(path).is_dir():
                await ls.open_workspace(Path(path))

    @server.feature(types.INITIALIZED)
    async def initialized(ls: CllmServer, params: types.InitializedParams) -> None:
        ls.report_problems(parse_settings(ls.raw_settings)[1])
        if ls.http_port is not None and ls.workspaces:
            await ls.start_http(next(iter(ls.workspaces.values())), ls.http_port)

    @server.feature(types.SHUTDOWN)
    async def shutdown(ls: CllmServer, params: None) -> None:
        for workspace in ls.workspaces.values():
            workspace.cancel_training()
        await ls.stop_http()

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(ls: CllmServer, params: types.DidChangeConfigurationParams) -> None:
        settings = params.settings
        if not (isinstance(settings, dict) and "cllm" in settings):
            workspace_caps = ls.client_capabilities.workspace
            if not (workspace_caps and workspace_caps.configuration):
                return
            items = [types.ConfigurationItem(section="cllm")]
            answer = await ls.workspace_configuration_async(types.ConfigurationParams(items=items))
            settings = answer[0] if answer else None
        ls.raw_settings = cllm_section(settings)
        problems = parse_settings(ls.raw_settings)[1]
        ls.report_problems(problems)
        assert ls.worker is not None
        for workspace in list(ls.workspaces.values()):
            await ls.worker.submit(lambda _cancel, w=workspace: w.update_settings(ls.raw_settings)).future

    @server.feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
    async def did_change_folders(ls: CllmServer, params: types.DidChangeWorkspaceFoldersParams) -> None:
        for folder in params.event.removed:
            root = Path(to_fs_path(folder.uri) or folder.uri)
            await ls.stop_http(root)
            ls.close_workspace(root)
        for folder in params.event.added:
            path = to_fs_path(folder.uri)
            if path and Path(path).is_dir():
                await ls.open_workspace(Path(path))

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(ls: CllmServer, params: types.InlineCompletionParams) -> types.InlineCompletionList:
        suggestion, _ = await ls.suggest(params.text_document.uri, params.position)
        if suggestion is None:
            return types.InlineCompletionList(items=[])
        here = types.Range(start=params.position, end=params.position)
        return types.InlineCompletionList(items=[types.InlineCompletionItem(insert_text=suggestion.text, range=here)])

    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(resolve_provider=False))
    async def completion(ls: CllmServer, params: types.CompletionParams) -> types.CompletionList:
        suggestion, _ = await ls.suggest(params.text_document.uri, params.position)
        if suggestion is None:
            return types.CompletionList(is_incomplete=True, items=[])
        start = types.Position(line=params.position.line,
                               character=max(0, params.position.character - suggestion.word_units))
        full = suggestion.word + suggestion.text
        label = full.splitlines()[0] if full.strip() else full
        item = types.CompletionItem(
            label=label.strip() or full, kind=types.CompletionItemKind.Text, detail="cllm", filter_text=full,
            sort_text="0", insert_text_format=types.InsertTextFormat.PlainText,
            text_edit=types.TextEdit(range=types.Range(start=start, end=params.position), new_text=full))
        return types.CompletionList(is_incomplete=True, items=[item])

    @server.command(CMD_TRAIN)
    def train_workspace(ls: CllmServer, *args: Any) -> dict[str, Any]:
        workspace, overrides, problems = ls.command_target(args)
        if problems:
            return {"started": False, "reason": "; ".join(problems)}
        if workspace is None:
            return {"started": False, "reason": "no such workspace folder is open"}
        result = workspace.start_training(**overrides)
        if not result.get("started"):
            ls.window_show_message(types.ShowMessageParams(type=types.MessageType.Warning,
                                                           message=f"cllm: {result.get('reason')}"))
        return result

    @server.command(CMD_CANCEL)
    def cancel_training(ls: CllmServer, *args: Any) -> dict[str, Any]:
        workspace, _, problems = ls.command_target(args)
        return {"cancelled": bool(workspace is not None and not problems and workspace.cancel_training())}

    @server.command(CMD_STATUS)
    def status(ls: CllmServer, *args: Any) -> dict[str, Any]:
        workspace, _, problems = ls.command_target(args)
        if workspace is None or problems:
            return {"error": "; ".join(problems) or "no workspace folder is open",
                    "workspaces": [str(root) for root in ls.workspaces]}
        return {**workspace.status(), "enabled": workspace.settings.enable,
                "workspaces": [str(root) for root in ls.workspaces]}

    @server.command(CMD_DASHBOARD)
    async def dashboard(ls: CllmServer, *args: Any) -> dict[str, Any]:
        """The dashboard link (with the token) of the folder's HTTP face, starting that on a free port if needed;
        the editor opens it in a browser, and a running training carries on."""
        workspace, overrides, problems = ls.command_target(args)
        if overrides:
            problems.append(f"{CMD_DASHBOARD} takes no training settings")
        if workspace is None or problems:
            return {"error": "; ".join(problems) or "no such workspace folder is open",
                    "workspaces": [str(root) for root in ls.workspaces]}
        http = await ls.start_http(workspace)
        if http is None:
            return {"error": "cannot serve the dashboard over HTTP (see the server log)"}
        return {"url": http.dashboard_url}

    @server.feature(types.WINDOW_WORK_DONE_PROGRESS_CANCEL)
    def progress_cancel(ls: CllmServer, params: types.WorkDoneProgressCancelParams) -> None:
        workspace = ls.progress_tokens.get(str(params.token))
        if workspace is not None:
            workspace.cancel_training()

    return server


def run_stdio(http_port: int | None = None) -> int:
    """`cllm lsp`: serve on stdin/stdout until the client exits; logs go to stderr and the client's log."""
    logging.basicConfig(level=logging.INFO, format="cllm-lsp %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pygls").setLevel(logging.WARNING)
    server = build_server(http_port)
    client_log = _ClientLogHandler(server)
    client_log.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger("cllm").addHandler(client_log)
    protocol_out = sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print() must not corrupt the protocol stream
    try:
        server.start_io(sys.stdin.buffer, protocol_out)
    finally:
        logging.getLogger("cllm").removeHandler(client_log)
        server.close()
    return 0
