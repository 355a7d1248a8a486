"""The cllm language server (pygls 2): thin handlers over one Workspace per workspace folder.

Threads and the event loop:
- Handlers run on pygls' asyncio event loop; every message to the client is sent from it.
- Blocking work runs off the loop: a folder's Workspace is created (its model loaded) on a helper thread, and
  completions and settings changes on the Workspace's worker thread (server/worker.py), which its HTTP face
  shares. Only the newest completion request of a document is computed; `$/cancelRequest` stops one too.
- Training runs in a child process owned by the Workspace; server/relay.py turns its events into `$/progress`
  and `cllm/sphereActivity` notifications.
- A workspace's HTTP face (dashboard, /v1/...) runs on the same event loop: started for the first folder by
  `--http-port`, or on a free loopback port by the `cllm.dashboard` command, which hands the editor the link.
- server/protocol.py holds the JSON-RPC layer under pygls, server/positions.py the document positions.

Logs go to stderr and, for cllm's own loggers, to `window/logMessage`; stdout carries the protocol only.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidRequest, JsonRpcParseError
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from . import __version__ as SERVER_VERSION
from .acceptance import parse_report
from .positions import Suggestion, complete_at, is_c_document
from .protocol import CllmProtocol, serve_stdio
from .relay import TrainingRelay
from .settings import TRAINING_KEYS, layer_settings, parse_settings
from .worker import LSP
from .workspace import Workspace

if TYPE_CHECKING:  # aiohttp is imported only when a dashboard is served: it adds a quarter second to start-up
    from .http.app import HttpServer

log = logging.getLogger(__name__)

SERVER_NAME = "cllm"
CMD_TRAIN, CMD_CANCEL, CMD_STATUS = "cllm.trainWorkspace", "cllm.cancelTraining", "cllm.status"
CMD_DASHBOARD = "cllm.dashboard"
# Run by the editor when a suggestion is taken whole (the item's own command) or in part (server/acceptance.py).
CMD_ACCEPTED, CMD_PARTIAL = "cllm.accepted", "cllm.partiallyAccepted"
# "Train on Workspace" while no base model exists at all, neither the user's nor the shipped one (Workspace.base_missing):
# the question and its answers. With a base (engine/train/shipped.py best_base) training fine-tunes it unasked.
PREPARE_BASE, FROM_SCRATCH, DONT_ASK = "Prepare base first", "Train from scratch", "Don't ask again"


# -- settings and logging ------------------------------------------------------------------------------


def cllm_section(raw: Any) -> Any:
    """The `cllm` object from initializationOptions or didChangeConfiguration (wrapped or not)."""
    if isinstance(raw, dict) and "cllm" in raw:
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


def _is_folder(path: Path) -> bool:
    """Whether `path` is a folder; False (not an error) for a name past the system's limits or a NUL in it."""
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def lone_file_workspace(path: Path) -> Path | None:
    """The workspace of a file opened with no folder: its own folder, unless that is a folder holding whole trees
    of unrelated files (/, the home folder or a folder above it, the temporary folder), which would make them the
    training set; None then (completions wait for a folder). A folder without a project marker (.git, a Makefile)
    still counts: many C projects and editors' single-file setups have none."""
    try:
        folder = path.parent.resolve()
        if not folder.is_dir():
            return None
        home = Path.home().resolve()
    except (OSError, RuntimeError, ValueError):  # a name past the system's limits, no home folder, a NUL
        return None
    if folder == Path(folder.anchor) or home.is_relative_to(folder) or folder == Path(tempfile.gettempdir()).resolve():
        return None
    return folder


# -- the server ----------------------------------------------------------------------------------------


class CllmServer(LanguageServer):
    """pygls server holding the workspaces, the settings and the training relays."""

    def __init__(self, http_port: int | None = None) -> None:
        super().__init__(SERVER_NAME, SERVER_VERSION, protocol_cls=CllmProtocol,
                         text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.http_port = http_port
        self.http: dict[Path, HttpServer] = {}
        self._http_lock = asyncio.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.initial_settings: Any = None  # the `cllm` object of initializationOptions: the base layer
        self.raw_settings: Any = None  # the settings in force (settings.layer_settings)
        self.workspaces: dict[Path, Workspace] = {}
        self.relays: dict[Path, TrainingRelay] = {}
        self.progress_tokens: dict[str, Workspace] = {}
        self._reported: set[str] = set()
        self._hinted: set[Path] = set()
        self.base_answer: str | None = None  # "scratch" after "Don't ask again", for the rest of the session

    # messages to the user

    def report_server_error(self, error: Exception, source: Any) -> None:
        """Errors outside a request go to the log, not a popup. A frame pygls could not take gets an error
        reply with id null: a parse error when it is not UTF-8 JSON, an invalid request otherwise."""
        log.warning("protocol error: %s", error)
        if isinstance(error, ValueError):  # json.JSONDecodeError, UnicodeDecodeError
            self.protocol._send_response(None, None, JsonRpcParseError(str(error)).to_response_error())
        elif source is JsonRpcException:  # what pygls.io_.run_async passes for a message it could not handle
            message = f"not a JSON-RPC message: {error}"
            self.protocol._send_response(None, None, JsonRpcInvalidRequest(message).to_response_error())

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

    async def base_choice(self, workspace: Workspace, overrides: dict[str, Any]) -> str | None:
        """How "Train on Workspace" starts: "prepare" (the base model first), "scratch", "default" (a base exists, the
        user's or the shipped one, or the workspace has a model: `cllm train` decides, unasked) or None (the user
        dismissed the question).

        The `training.base` setting decides, else an earlier "Don't ask again", else the user through
        window/showMessageRequest; a client that cannot answer one gets "scratch"."""
        if not workspace.base_missing(overrides):
            return "default"
        choice = workspace.settings.base if workspace.settings.base != "ask" else self.base_answer
        window = self.client_capabilities.window
        if choice is not None or not (window and window.show_message):
            return choice or "scratch"
        minutes = max(1, round(workspace.training_options(overrides)[0]["time_budget"] / 60))
        answer = await self.window_show_message_request_async(types.ShowMessageRequestParams(
            type=types.MessageType.Info,
            message=f"No base model yet: prepare one from this machine's C first (about {minutes} minute{'s' * (minutes != 1)}, in the "
                    f"background), or train from scratch?",
            actions=[types.MessageActionItem(title=title) for title in (PREPARE_BASE, FROM_SCRATCH, DONT_ASK)]))
        title = answer.title if answer is not None else None
        if title == DONT_ASK:
            self.base_answer = "scratch"
        return {PREPARE_BASE: "prepare", FROM_SCRATCH: "scratch", DONT_ASK: "scratch"}.get(title)

    # workspaces

    async def open_workspace(self, root: Path) -> Workspace:
        """Create (on a helper thread: it loads the model) and register the Workspace of a folder."""
        root = root.resolve()
        if root in self.workspaces:
            return self.workspaces[root]
        workspace = await asyncio.to_thread(Workspace, root, settings=self.raw_settings)
        if root in self.workspaces:  # opened meanwhile by another request
            workspace.close()
            return self.workspaces[root]
        self.workspaces[root] = workspace
        self.relays[root] = TrainingRelay(self, workspace, self.progress_tokens)
        return workspace

    def close_workspace(self, root: Path) -> None:
        workspace = self.workspaces.pop(root.resolve(), None)
        relay = self.relays.pop(root.resolve(), None)
        if relay is not None:
            relay.close()
        if workspace is not None:
            workspace.worker.close()
            workspace.acceptance.close()
            workspace.cancel_training()

    async def workspace_for(self, path: Path | None) -> Workspace | None:
        """The Workspace of the innermost open folder holding `path`; with no folders open, one for the
        file's own folder unless that is a whole tree of unrelated files (lone_file_workspace)."""
        if path is not None:
            inside = [root for root in self.workspaces if path.is_relative_to(root)]
            if inside:
                return self.workspaces[max(inside, key=lambda root: len(root.parts))]
        if self.workspaces:
            return next(iter(self.workspaces.values()))
        folder = lone_file_workspace(path) if path is not None else None
        return None if folder is None else await self.open_workspace(folder)

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
                        overrides[TRAINING_KEYS[key].flag] = value
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
        if workspace is None:
            return None, workspace
        if not workspace.has_model:
            if workspace.settings.enable:
                self.hint_untrained(workspace)
            return None, workspace
        text, codec = document.source, document.position_codec

        def run(cancel: threading.Event) -> Suggestion | None:
            # `enable` is read on the worker, after any settings change queued before this request
            if not workspace.settings.enable:
                return None
            return complete_at(workspace, text, position, codec, document.path, uri, cancel)

        return await workspace.worker.submit(run, face=LSP, key=uri), workspace

    def accept_command(self, workspace: Workspace, suggestion: Suggestion) -> types.Command:
        """Count `suggestion` as shown; the command the editor runs when it is taken whole. LSP inline items have no
        field for a description, so a copy's "path:line" rides in the title and the argument, for the client to
        show while it offers the item."""
        chars = len(suggestion.text)
        report = {"workspace": workspace.root.as_uri(), "id": workspace.acceptance.shown(chars), "chars": chars}
        if suggestion.source is None:
            return types.Command(title="cllm: suggestion accepted", command=CMD_ACCEPTED, arguments=[report])
        return types.Command(title=f"copied from {suggestion.source}", command=CMD_ACCEPTED,
                             arguments=[{**report, "source": suggestion.source}])

    async def count_acceptance(self, args: tuple[Any, ...], partial: bool) -> dict[str, Any]:
        """`cllm.accepted` / `cllm.partiallyAccepted`: count the report in `args` (saving the counts off the loop)."""
        report = parse_report(args)
        if isinstance(report, str):
            return {"counted": False, "reason": report}
        workspace, _, problems = self.command_target((report.workspace,) if report.workspace else ())
        if workspace is None or problems:
            return {"counted": False, "reason": "; ".join(problems) or "no such workspace folder is open"}
        count = workspace.acceptance.partially_accepted if partial else workspace.acceptance.accepted
        return {"counted": await asyncio.to_thread(count, report)}

    async def start_http(self, workspace: Workspace, port: int = 0) -> HttpServer | None:
        """Serve `workspace` over the loopback HTTP API too (dashboard, /v1/...), on this event loop; port 0
        picks a free one. A server already running for the workspace is reused. None (after telling the
        user) when the port cannot be served."""
        from .http.app import serve_http

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
        """Stop the HTTP face of the folder `root` (of every folder when None); its token file stays (the stable key)."""
        roots = list(self.http) if root is None else [root.resolve()]
        for key in roots:
            http = self.http.pop(key, None)
            if http is not None:
                await http.close()

    def close(self) -> None:
        """Stop the workspaces' workers and end any training (server shutdown)."""
        for root in list(self.workspaces):
            workspace = self.workspaces[root]
            self.close_workspace(root)
            workspace.close()


# -- handlers: each one short, delegating to the CllmServer and the Workspace


async def initialize(ls: CllmServer, params: types.InitializeParams) -> None:
    ls.loop = asyncio.get_running_loop()
    ls.initial_settings = ls.raw_settings = cllm_section(params.initialization_options)
    folders = [f.uri for f in params.workspace_folders or []] or ([params.root_uri] if params.root_uri else [])
    for uri in folders:
        path = to_fs_path(uri)
        if path and _is_folder(Path(path)):
            await ls.open_workspace(Path(path))


async def initialized(ls: CllmServer, params: types.InitializedParams) -> None:
    ls.report_problems(parse_settings(ls.raw_settings)[1])
    if ls.http_port is not None and ls.workspaces:
        await ls.start_http(next(iter(ls.workspaces.values())), ls.http_port)


async def shutdown(ls: CllmServer, params: None) -> None:
    for workspace in ls.workspaces.values():
        workspace.cancel_training()
    await ls.stop_http()


async def did_change_configuration(ls: CllmServer, params: types.DidChangeConfigurationParams) -> None:
    """Lay the client's `cllm` section (sent along, else pulled) over initializationOptions; no section
    leaves them in force."""
    settings = params.settings
    if not (isinstance(settings, dict) and "cllm" in settings):
        workspace_caps = ls.client_capabilities.workspace
        if not (workspace_caps and workspace_caps.configuration):
            return
        items = [types.ConfigurationItem(section="cllm")]
        answer = await ls.workspace_configuration_async(types.ConfigurationParams(items=items))
        settings = answer[0] if answer else None
    ls.raw_settings, problems = layer_settings(ls.initial_settings, cllm_section(settings))
    ls.report_problems(problems + parse_settings(ls.raw_settings)[1])
    for workspace in list(ls.workspaces.values()):
        await workspace.worker.submit(lambda _cancel, w=workspace: w.update_settings(ls.raw_settings), face=LSP)


async def did_change_folders(ls: CllmServer, params: types.DidChangeWorkspaceFoldersParams) -> None:
    for folder in params.event.removed:
        root = Path(to_fs_path(folder.uri) or folder.uri)
        await ls.stop_http(root)
        ls.close_workspace(root)
    for folder in params.event.added:
        path = to_fs_path(folder.uri)
        if path and _is_folder(Path(path)):
            await ls.open_workspace(Path(path))


async def did_save(ls: CllmServer, params: types.DidSaveTextDocumentParams) -> None:
    path = to_fs_path(params.text_document.uri)
    workspace = await ls.workspace_for(Path(path)) if path else None
    if workspace is not None:
        workspace.file_saved(path)


async def did_change(ls: CllmServer, params: types.DidChangeTextDocumentParams) -> None:
    """Typing: a background learning run pauses at once (server/learning.py)."""
    path = to_fs_path(params.text_document.uri)
    inside = [root for root in ls.workspaces if path and Path(path).is_relative_to(root)]
    for root in inside:
        ls.workspaces[root].typing()


async def inline_completion(ls: CllmServer, params: types.InlineCompletionParams) -> types.InlineCompletionList:
    suggestion, workspace = await ls.suggest(params.text_document.uri, params.position)
    if suggestion is None or workspace is None:
        return types.InlineCompletionList(items=[])
    here = types.Range(start=params.position, end=params.position)
    item = types.InlineCompletionItem(insert_text=suggestion.text, range=here,
                                      command=ls.accept_command(workspace, suggestion))
    return types.InlineCompletionList(items=[item])


async def completion(ls: CllmServer, params: types.CompletionParams) -> types.CompletionList:
    suggestion, workspace = await ls.suggest(params.text_document.uri, params.position)
    if suggestion is None or workspace is None:
        return types.CompletionList(is_incomplete=True, items=[])
    start = types.Position(line=params.position.line,
                           character=max(0, params.position.character - suggestion.word_units))
    full = suggestion.word + suggestion.text
    label = full.splitlines()[0] if full.strip() else full
    copied = suggestion.source is not None
    item = types.CompletionItem(
        label=label.strip() or full, kind=types.CompletionItemKind.Text, detail="cllm", filter_text=full,
        sort_text="0", insert_text_format=types.InsertTextFormat.PlainText,
        label_details=types.CompletionItemLabelDetails(description=suggestion.source) if copied else None,
        documentation=f"copied from {suggestion.source}" if copied else None,
        text_edit=types.TextEdit(range=types.Range(start=start, end=params.position), new_text=full),
        command=ls.accept_command(workspace, suggestion))
    return types.CompletionList(is_incomplete=True, items=[item])


async def train_workspace(ls: CllmServer, *args: Any) -> dict[str, Any]:
    """Start training; on the worker, so that the settings changes received before apply first."""
    workspace, overrides, problems = ls.command_target(args)
    if problems:
        return {"started": False, "reason": "; ".join(problems)}
    if workspace is None:
        return {"started": False, "reason": "no such workspace folder is open"}
    choice = await ls.base_choice(workspace, overrides)
    if choice is None:
        return {"started": False, "reason": "no answer to the base model question", "code": "cancelled"}
    start = workspace.start_pretraining if choice == "prepare" else workspace.start_training
    scratch = {"from_scratch": True} if choice == "scratch" else {}
    result = await workspace.worker.submit(lambda _cancel: start(**scratch, **overrides), face=LSP)
    if not result.get("started"):
        ls.window_show_message(types.ShowMessageParams(type=types.MessageType.Warning,
                                                       message=f"cllm: {result.get('reason')}"))
    return result


def cancel_training(ls: CllmServer, *args: Any) -> dict[str, Any]:
    workspace, _, problems = ls.command_target(args)
    return {"cancelled": bool(workspace is not None and not problems and workspace.cancel_training())}


def status(ls: CllmServer, *args: Any) -> dict[str, Any]:
    workspace, _, problems = ls.command_target(args)
    if workspace is None or problems:
        return {"error": "; ".join(problems) or "no workspace folder is open",
                "workspaces": [str(root) for root in ls.workspaces]}
    return {**workspace.status(), "enabled": workspace.settings.enable,
            "workspaces": [str(root) for root in ls.workspaces]}


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


async def accepted(ls: CllmServer, *args: Any) -> dict[str, Any]:
    return await ls.count_acceptance(args, partial=False)


async def partially_accepted(ls: CllmServer, *args: Any) -> dict[str, Any]:
    return await ls.count_acceptance(args, partial=True)


def progress_cancel(ls: CllmServer, params: types.WorkDoneProgressCancelParams) -> None:
    workspace = ls.progress_tokens.get(str(params.token))
    if workspace is not None:
        workspace.cancel_training()


# The protocol's methods and cllm's commands, each with its handler above.
_FEATURES = (
    (types.INITIALIZE, None, initialize),
    (types.INITIALIZED, None, initialized),
    (types.SHUTDOWN, None, shutdown),
    (types.WORKSPACE_DID_CHANGE_CONFIGURATION, None, did_change_configuration),
    (types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS, None, did_change_folders),
    (types.TEXT_DOCUMENT_DID_SAVE, None, did_save),
    (types.TEXT_DOCUMENT_DID_CHANGE, None, did_change),
    (types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions(), inline_completion),
    (types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(resolve_provider=False), completion),
    (types.WINDOW_WORK_DONE_PROGRESS_CANCEL, None, progress_cancel),
)
_COMMANDS = (
    (CMD_TRAIN, train_workspace),
    (CMD_CANCEL, cancel_training),
    (CMD_STATUS, status),
    (CMD_DASHBOARD, dashboard),
    (CMD_ACCEPTED, accepted),
    (CMD_PARTIAL, partially_accepted),
)


def build_server(http_port: int | None = None) -> CllmServer:
    """A CllmServer with every feature registered; `http_port` also serves the first folder over HTTP."""
    server = CllmServer(http_port)
    for feature, options, handler in _FEATURES:
        server.feature(feature, options)(handler)
    for command, handler in _COMMANDS:
        server.command(command)(handler)
    return server


def run_stdio(http_port: int | None = None) -> int:
    """`cllm lsp`: serve on stdin/stdout until the client exits (the exit code: 0, or 1 for an `exit` without
    `shutdown`); logs go to stderr and the client's log."""
    logging.basicConfig(level=logging.INFO, format="cllm-lsp %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pygls").setLevel(logging.WARNING)
    server = build_server(http_port)
    client_log = _ClientLogHandler(server)
    client_log.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger("cllm").addHandler(client_log)
    protocol_out = sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print() must not corrupt the protocol stream
    try:
        return serve_stdio(server, sys.stdin.buffer, protocol_out)
    finally:
        logging.getLogger("cllm").removeHandler(client_log)
        server.close()
