"""The local model server: one Workspace over HTTP (aiohttp), for tools and for the live dashboard.

Endpoints (security rules and the token hand-over are explained in server/http/security.py, the checks on
request bodies in server/http/input.py, connection limits and timeouts in server/http/limits.py):

    GET  /                    dashboard page (public; renders the token into the page only for `/?token=<valid>`)
    GET  /dashboard/<file>    its script and style sheet (public)
    GET  /v1/status           the Workspace status, the same object as the LSP `cllm.status` (public)
    GET  /v1/models           the workspace's loaded model (as /v1/status reports it), OpenAI list shape (public)
    POST /v1/completions      OpenAI-compatible text completion, optionally streamed (token); also at
                              /completions (Continue with an apiBase without /v1)
    POST /infill, /completion llama.cpp's server routes, for llama.vscode and other llama.cpp clients (token;
                              server/http/llama.py)
    GET  /health              llama.cpp's health check: 200 {"status": "ok"} with a model, else 503 (public)
    GET  /openapi.json        the OpenAPI 3.1 description of every route (public; server/http/openapi.py)
    POST /v1/train            start training the workspace or a folder inside it (token)
    POST /v1/train/cancel     cancel the running training (token)
    GET  /v1/events           server-sent events: current state first, then training progress (token); the
                              events of docs/protocol.md with camelCase keys

Completions run on the Workspace's worker thread (server/worker.py), which the language server's completions
share in turn (the model is not re-entrant and the event loop must never block); a small bounded number may
wait for it, more get 429. Training events reach clients through per-client
bounded queues that drop the oldest event when full: a slow client loses detail, never slows training or others.
`serve_http` runs the app inside an existing event loop (the language server's), `run_server` is `cllm serve`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from cllm.engine.events import to_wire
from cllm.engine.complete.generate import MAX_TEMPERATURE

from .fim import split_fim_prompt
from .input import BadInput, flag_field, parse_json_object, path_field
from .limits import ConnectionGate, ConnectionLimits, GatedSite, rate_limit_logs
from .security import API_KEY_ENV, MAX_BODY_BYTES, AccessPolicy, PathOutsideRoot, is_loopback_host, stable_token
from .sse import stream_completions
from .llama import (HEALTHY, NO_MODEL_TYPE, LlamaRequest, LlamaRequestError, final_object, parse_infill,
                        piece_object)
from .llama import parse_completion as parse_llama_completion
from .openapi import openapi_document
from ..records import ModelSummary
from ..settings import is_number, parse_settings
from ..worker import HTTP

log = logging.getLogger("cllm.http")

DASHBOARD_DIR = Path(__file__).parent / "dashboard"
STATIC_FILES = {"app.js": "application/javascript", "style.css": "text/css"}
PUBLIC_ROUTES = {"dashboard", "static", "status", "models", "health", "openapi"}
MODEL_ID = "cllm"
MAX_PROMPTS = 8
MAX_COMPLETION_TOKENS = 2048
MAX_REQUESTED_TOKENS = 32768  # a larger max_tokens is refused; up to it, one above MAX_COMPLETION_TOKENS is lowered
MAX_STOP_SEQUENCES = 32
SSE_PING_SECONDS = 15.0
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
NO_MODEL = "no model yet: train the workspace first (POST /v1/train, the editor command or `cllm train`)"
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
}

WORKSPACE = web.AppKey("workspace", object)
POLICY = web.AppKey("policy", AccessPolicy)
HUB = web.AppKey("hub", object)
LIMITS = web.AppKey("limits", object)
MAX_BODY = web.AppKey("max_body", int)


class ApiError(Exception):
    """An error answered as OpenAI-style JSON {"error": {"message", "type", "code"}} with `status`."""

    def __init__(self, status: int, message: str, kind: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind

    def response(self) -> web.Response:
        body = {"error": {"message": self.message, "type": self.kind, "code": self.status}}
        return web.json_response(body, status=self.status)


ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 405: "invalid_request_error", 413: "request_too_large",
               429: "rate_limit_error", 503: "service_unavailable"}


def _error(status: int, message: str) -> ApiError:
    return ApiError(status, message, ERROR_TYPES.get(status, "server_error"))


class PathOnlyAccessLogger(AbstractAccessLogger):
    """Access log lines without query strings: the dashboard URL carries the token, which must never be logged."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s %s %.1fms", request.method, request.path, response.status, time * 1000)


# ---------------------------------------------------------------------------------------------------- events


class EventHub:
    """Fans Workspace events out to SSE clients and remembers the current run for clients that join late.

    Workspace callbacks may come from any thread: they only schedule `_publish` on the loop, which never
    blocks. Each client has a bounded queue; when it is full the oldest event is dropped.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, max_clients: int = 16, queue_size: int = 256) -> None:
        self.loop = loop
        self.max_clients = max_clients
        self.queue_size = queue_size
        self.clients: set[asyncio.Queue] = set()
        self.steps: deque[dict] = deque(maxlen=4000)
        self.epochs: list[dict] = []
        self.last_step: dict | None = None
        self.dropped = 0

    def on_event(self, event: dict) -> None:
        """Workspace subscriber: hand the event to the loop (thread-safe, non-blocking)."""
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._publish, event)

    def _publish(self, event: dict | None) -> None:
        if event is not None:
            self._remember(event)
        for queue in self.clients:
            if queue.full():
                queue.get_nowait()
                self.dropped += 1
            queue.put_nowait(event)

    def _remember(self, event: dict) -> None:
        kind = event.get("event")
        if kind in ("training_started", "start"):
            self.steps.clear()
            self.epochs.clear()
            self.last_step = None
        elif kind == "step":
            self.last_step = event
            self.steps.append({k: v for k, v in event.items() if k != "spheres"})
        elif kind == "epoch":
            self.epochs.append(event)

    def replay(self) -> list[dict]:
        """What a client that connects now needs to draw the current run: history, then the last step."""
        events = [{"event": "history", "steps": list(self.steps), "epochs": list(self.epochs)}]
        if self.last_step is not None:
            events.append(self.last_step)
        return events

    def connect(self) -> asyncio.Queue:
        if len(self.clients) >= self.max_clients:
            raise _error(429, f"too many event listeners (at most {self.max_clients})")
        queue: asyncio.Queue = asyncio.Queue(self.queue_size)
        self.clients.add(queue)
        return queue

    def disconnect(self, queue: asyncio.Queue) -> None:
        self.clients.discard(queue)

    def close(self) -> None:
        """Wake every client with the end-of-stream marker (None)."""
        self._publish(None)


@dataclass
class Limits:
    """Completion concurrency: at most `max_pending` requests running or waiting for the workspace's worker."""

    max_pending: int
    pending: int = 0


# ---------------------------------------------------------------------------------------------------- middleware


@web.middleware
async def error_middleware(request: web.Request, handler: Callable) -> web.StreamResponse:
    """Every error becomes {"error": {"message", "type"}} JSON with its status; bugs become a logged 500."""
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except BadInput as exc:
        return _error(400, str(exc)).response()
    except web.HTTPException as exc:
        if exc.status_code < 400:
            raise
        message = exc.reason
        if exc.status_code == 413:
            message = f"request body too large (limit {request.app[MAX_BODY]} bytes)"
        return _error(exc.status_code, message).response()
    except ConnectionError:
        raise  # the client went away: aiohttp ends the request quietly
    except Exception:
        log.exception("internal error on %s %s", request.method, request.path)
        return ApiError(500, "internal server error (see the server log)", "server_error").response()


@web.middleware
async def guard_middleware(request: web.Request, handler: Callable) -> web.StreamResponse:
    """Host, Origin, body size and bearer token checks, before any handler reads or starts anything."""
    policy = request.app[POLICY]
    if not policy.host_allowed(request.headers.get("Host")):
        raise _error(403, "Host header does not name this server (requests must use 127.0.0.1, localhost or [::1] "
                          f"with port {policy.port})")
    if not policy.origin_allowed(request.headers.get("Origin")):
        raise _error(403, "cross-origin requests are not allowed")
    if request.content_length is not None and request.content_length > request.app[MAX_BODY]:
        raise _error(413, f"request body too large (limit {request.app[MAX_BODY]} bytes)")
    route = request.match_info.route
    if request.match_info.http_exception is None and route.name not in PUBLIC_ROUTES:
        if not policy.authorized(request.headers.get("Authorization")):
            raise ApiError(401, "missing or wrong bearer token (Authorization: Bearer <token>; the token is in "
                                f"{request.app[WORKSPACE].token_path})", "authentication_error")
    return await handler(request)


async def read_json_object(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    """The request body as a checked JSON object (server/http/input.py); 400 when it is not one, {} for an empty
    optional body."""
    return parse_json_object(await request.read(), optional=optional)


# ---------------------------------------------------------------------------------------------------- completions


@dataclass
class CompletionRequest:
    """A checked /v1/completions request."""

    prompts: list[str]
    suffix: str
    path: str | None
    stream: bool
    include_usage: bool
    options: dict[str, Any]


def _number(body: dict, key: str, kind: type, low: float, high: float) -> Any:
    value = body.get(key)
    if value is None:
        return None
    if not is_number(value) or (kind is int and value != int(value)):
        raise _error(400, f"{key} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    if not low <= value <= high:  # exact for ints of any size: no conversion to float
        shown = repr(value) if abs(value) < 10**20 else f"a number of {len(str(int(value)))} digits"
        raise _error(400, f"{key} must be between {low} and {high}, got {shown}")
    return kind(value)


def parse_completion_request(body: dict[str, Any]) -> CompletionRequest:
    """Check an OpenAI completions body; unsupported or malformed fields are a 400 that says which.

    Two extensions beyond OpenAI's fields: `multiline` (continue while a block is open) and `path` (the file's
    path in the workspace, which the model saw before each file in training).
    """
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        prompts = [prompt]
    elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        prompts = prompt
    else:
        raise _error(400, "prompt must be a string or a non-empty list of strings (token arrays are not supported)")
    if len(prompts) > MAX_PROMPTS:
        raise _error(400, f"at most {MAX_PROMPTS} prompts per request")
    if body.get("model") is not None and not isinstance(body["model"], str):
        raise _error(400, "model must be a string")
    suffix = body.get("suffix")
    if suffix is None:
        suffix = ""
    elif not isinstance(suffix, str):
        raise _error(400, "suffix must be a string")
    if any(body.get(key) is not None and (isinstance(body[key], bool) or body[key] != 1) for key in ("n", "best_of")):
        raise _error(400, "only n=1 and best_of=1 are supported")
    if body.get("echo") or body.get("logprobs"):
        raise _error(400, "echo and logprobs are not supported")
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and not (isinstance(stop, list) and len(stop) <= MAX_STOP_SEQUENCES
                                 and all(isinstance(s, str) and s for s in stop)):
        raise _error(400, f"stop must be a string or a list of at most {MAX_STOP_SEQUENCES} non-empty strings")
    options = {
        "max_tokens": clamp_max_tokens(_number(body, "max_tokens", int, 1, MAX_REQUESTED_TOKENS)),
        "temperature": _number(body, "temperature", float, 0.0, MAX_TEMPERATURE),
        "top_p": _number(body, "top_p", float, 1e-6, 1.0),
        "seed": _number(body, "seed", int, 0, 2**31 - 1),
        "stop": tuple(stop) if stop else None,
        "multiline": flag_field(body, "multiline"),
    }
    stream_options = body.get("stream_options")
    if stream_options is None:
        stream_options = {}
    elif not isinstance(stream_options, dict):
        raise _error(400, "stream_options must be an object")
    return CompletionRequest(prompts=prompts, suffix=suffix, path=path_field(body, "path"),
                             stream=bool(flag_field(body, "stream")),
                             include_usage=bool(flag_field(stream_options, "include_usage")),
                             options={k: v for k, v in options.items() if v is not None})


def clamp_max_tokens(requested: int | None) -> int | None:
    """A requested token limit, lowered to MAX_COMPLETION_TOKENS: clients send their own defaults (Continue
    4096), and the model's context caps the completion anyway."""
    return None if requested is None else min(requested, MAX_COMPLETION_TOKENS)


def with_cursor_from_fim_markers(req: CompletionRequest) -> CompletionRequest:
    """`req` with a prompt written in another model's FIM template (server/http/fim.py) split into the text before
    the cursor and the `suffix`; 400 when the request also gives a `suffix`."""
    cursors = [split_fim_prompt(prompt) for prompt in req.prompts]
    if not any(cursors):
        return req
    if req.suffix or len(req.prompts) > 1:
        raise _error(400, "a prompt with FIM markers carries its own suffix: send one prompt and no suffix field")
    return dataclasses.replace(req, prompts=[cursors[0].before], suffix=cursors[0].after)


def _finish_reason(stop_reason: str) -> str:
    """OpenAI finish_reason of an engine stop reason: "length" when cut by the token or time budget."""
    return "length" if stop_reason in ("max_tokens", "timeout") else "stop"


def _complete_one(workspace: Any, prompt: str, req: CompletionRequest, cancel: threading.Event,
                  on_text: Callable[[str], None] | None) -> tuple[Any, int]:
    """(Completion or None, prompt tokens): runs on the workspace's worker thread, tokenizing there too."""
    completion = workspace.complete(prompt, req.suffix, path=req.path, cancel=cancel, on_text=on_text,
                                    **req.options)
    return completion, (completion.prompt_tokens if completion is not None else 0)


async def _run_completions(request: web.Request, req: CompletionRequest,
                           on_text: Callable[[int, str], None] | None = None) -> list[tuple[Any, int]]:
    """Complete every prompt on the workspace's worker: [(Completion, prompt_tokens)]; 429/503 as needed.
    `on_text(prompt index, piece)` streams the text as it is generated (on the worker thread).
    A request whose client goes away stops its running completion (the awaiting task is cancelled)."""
    workspace = request.app[WORKSPACE]
    limits: Limits = request.app[LIMITS]
    if not workspace.has_model:
        raise _error(503, NO_MODEL)
    if limits.pending >= limits.max_pending:
        raise _error(429, f"too many concurrent completions (at most {limits.max_pending}); retry shortly")
    limits.pending += 1
    try:
        results = []
        for index, prompt in enumerate(req.prompts):
            pieces = None if on_text is None else functools.partial(on_text, index)
            job = workspace.worker.submit(
                lambda cancel, prompt=prompt, pieces=pieces: _complete_one(workspace, prompt, req, cancel, pieces),
                face=HTTP)
            try:
                outcome = await job
            except ValueError as exc:
                raise _error(400, str(exc)) from None
            if outcome is None:  # the worker closed before reaching it
                raise _error(503, "the workspace is closing")
            if outcome[0] is None:
                raise _error(503, NO_MODEL)
            results.append(outcome)
        return results
    finally:
        limits.pending -= 1


def _usage(results: list[tuple[Any, int]]) -> dict[str, int]:
    prompt = sum(p for _, p in results)
    completion = sum(c.tokens for c, _ in results)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def completions(request: web.Request) -> web.StreamResponse:
    """POST /v1/completions (and /completions): OpenAI text completion; `stream: true` answers with SSE chunks
    as the text is generated, then [DONE] (no comment lines: Continue ends a stream at `: ping`)."""
    req = with_cursor_from_fim_markers(parse_completion_request(await read_json_object(request)))
    head = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
            "model": MODEL_ID}
    if not req.stream:
        results = await _run_completions(request, req)
        choices = [{"text": c.text, "index": i, "finish_reason": _finish_reason(c.stop_reason), "logprobs": None}
                   for i, (c, _) in enumerate(results)]
        return web.json_response({**head, "choices": choices, "usage": _usage(results)})
    response = web.StreamResponse(headers=SSE_HEADERS)

    async def send(index: int, text: str) -> None:
        if not response.prepared:
            await response.prepare(request)
        await _send_sse(response, {**head, "choices": [{"text": text, "index": index, "finish_reason": None,
                                                        "logprobs": None}]})

    try:
        results = await stream_completions(lambda on_text: _run_completions(request, req, on_text), send)
        if not response.prepared:
            await response.prepare(request)
        for i, (c, _) in enumerate(results):
            choice = {"text": "", "index": i, "finish_reason": _finish_reason(c.stop_reason), "logprobs": None}
            await _send_sse(response, {**head, "choices": [choice]})
        if req.include_usage:
            await _send_sse(response, {**head, "choices": [], "usage": _usage(results)})
        await response.write(b"data: [DONE]\n\n")
    except ConnectionResetError:
        log.debug("a streaming completion client went away: its completion is cancelled")
    return response


# ---------------------------------------------------------------------------------------------------- llama.cpp


async def infill(request: web.Request) -> web.StreamResponse:
    """POST /infill: llama.cpp's fill-in-the-middle (server/http/llama.py)."""
    return await _llama_completion(request, parse_infill, fim_markers=False)


async def llama_completion(request: web.Request) -> web.StreamResponse:
    """POST /completion: llama.cpp's completion (server/http/llama.py)."""
    return await _llama_completion(request, parse_llama_completion, fim_markers=True)


async def _llama_completion(request: web.Request, parse: Callable[..., LlamaRequest], *,
                            fim_markers: bool) -> web.StreamResponse:
    """Run a llama.cpp request; streamed as `data:` events ending with the final object (no [DONE]).
    With `fim_markers`, a prompt in another model's FIM template is split at its markers."""
    try:
        llama = parse(await read_json_object(request), max_tokens=MAX_COMPLETION_TOKENS,
                      max_stops=MAX_STOP_SEQUENCES)
    except LlamaRequestError as exc:
        raise _error(400, str(exc)) from None
    workspace = request.app[WORKSPACE]
    if not workspace.has_model:
        raise ApiError(503, NO_MODEL, NO_MODEL_TYPE)
    req = CompletionRequest(prompts=[llama.prefix], suffix=llama.suffix, path=None, stream=llama.stream,
                            include_usage=False, options=llama.options)
    if fim_markers:
        req = with_cursor_from_fim_markers(req)
    settings = (workspace.model.context, workspace.completion_options().max_tokens)
    if llama.warm_only:  # n_predict 0: llama.cpp only fills its cache; nothing to generate here
        return web.json_response(final_object(None, llama, *settings))
    if not llama.stream:
        [(completion, _)] = await _run_completions(request, req)
        return web.json_response(final_object(completion, llama, *settings))
    response = web.StreamResponse(headers=SSE_HEADERS)

    async def send(_index: int, text: str) -> None:
        if not response.prepared:
            await response.prepare(request)
        await _send_sse(response, piece_object(text))

    try:
        [(completion, _)] = await stream_completions(lambda on_text: _run_completions(request, req, on_text), send)
        if not response.prepared:
            await response.prepare(request)
        await _send_sse(response, final_object(completion, llama, *settings))
    except ConnectionResetError:
        log.debug("a streaming llama.cpp client went away: its completion is cancelled")
    return response


async def health(request: web.Request) -> web.Response:
    """GET /health: llama.cpp's health check, {"status": "ok"} once a model serves completions, else 503."""
    if not request.app[WORKSPACE].has_model:
        raise ApiError(503, NO_MODEL, NO_MODEL_TYPE)
    return web.json_response(HEALTHY)


async def _send_sse(response: web.StreamResponse, data: dict) -> None:
    await response.write(f"data: {json.dumps(data, separators=(',', ':'))}\n\n".encode())


# ---------------------------------------------------------------------------------------------------- other API


async def status(request: web.Request) -> web.Response:
    """GET /v1/status: the Workspace status object."""
    return web.json_response(request.app[WORKSPACE].status())


async def models(request: web.Request) -> web.Response:
    """GET /v1/models: the model serving completions, if any (OpenAI list shape). It comes from the same
    Workspace state as /v1/status, not from the file on disk, which may be gone or half-written meanwhile."""
    workspace = request.app[WORKSPACE]
    model = workspace.state().model
    data = []
    if isinstance(model, ModelSummary):
        data.append({"id": MODEL_ID, "object": "model", "created": _unix_time(model.metadata.created),
                     "owned_by": "cllm", "workspace": str(workspace.root)})
    return web.json_response({"object": "list", "data": data})


def _unix_time(iso: Any) -> int:
    """Seconds since the epoch of an ISO 8601 time (a model's training date); 0 when unknown or unreadable."""
    try:
        return int(datetime.fromisoformat(iso).timestamp())
    except (TypeError, ValueError):
        return 0


def parse_train_request(policy: AccessPolicy, body: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for Workspace.start_training from {"path"?, "training"?: {camelCase settings}}.

    The path is checked against the allowed roots (after symlinks) before anything is read; training options
    use the same keys and checks as the editor settings (server/settings.py).
    """
    unknown = set(body) - {"path", "training"}
    if unknown:
        raise _error(400, f"unknown field(s) {sorted(unknown)}; expected 'path' and/or 'training'")
    kwargs: dict[str, Any] = {}
    if body.get("training") is not None:
        settings, problems = parse_settings({"training": body["training"]})
        if problems:
            raise _error(400, "; ".join(problems))
        kwargs.update(settings.training)
    requested = path_field(body, "path")
    if requested is not None:
        try:
            path = policy.resolve_training_path(requested)
        except PathOutsideRoot as exc:
            raise _error(403, str(exc)) from None
        if not path.is_dir():
            raise _error(404, f"path {requested!r} is not a folder")
        kwargs["path"] = path
    return kwargs


async def train(request: web.Request) -> web.Response:
    """POST /v1/train: start training (202), 429 when a run is already going."""
    kwargs = parse_train_request(request.app[POLICY], await read_json_object(request, optional=True))
    result = request.app[WORKSPACE].start_training(**kwargs)
    if result.get("started"):
        return web.json_response(result, status=202)
    status_code = {"busy": 429, "unavailable": 503}.get(result.get("code"), 400)
    raise _error(status_code, result.get("reason", "training did not start"))


async def cancel(request: web.Request) -> web.Response:
    """POST /v1/train/cancel: {"cancelled": true} when a run was stopped, false when none was running."""
    return web.json_response({"cancelled": bool(request.app[WORKSPACE].cancel_training())})


async def events(request: web.Request) -> web.StreamResponse:
    """GET /v1/events: SSE; the current status and run history first, then live events, pings while idle.

    Events keep snake_case keys inside the server; here, at the wire, they get camelCase ones (to_wire)."""
    hub: EventHub = request.app[HUB]
    queue = hub.connect()
    response = web.StreamResponse(headers=SSE_HEADERS)
    try:
        await response.prepare(request)
        await _send_sse(response, {"event": "status", "status": request.app[WORKSPACE].status()})
        for event in hub.replay():
            await _send_sse(response, to_wire(event))
        while (event := await _next_event(queue, response)) is not None:
            await _send_sse(response, to_wire(event))
    except ConnectionResetError:
        log.debug("an event listener went away")
    finally:
        hub.disconnect(queue)
    return response


async def _next_event(queue: asyncio.Queue, response: web.StreamResponse) -> dict | None:
    """The next hub event, writing a comment line every SSE_PING_SECONDS meanwhile (finds dead listeners)."""
    while True:
        try:
            return await asyncio.wait_for(queue.get(), SSE_PING_SECONDS)
        except asyncio.TimeoutError:
            await response.write(b": ping\n\n")


async def openapi(request: web.Request) -> web.Response:
    """GET /openapi.json: the OpenAPI 3.1 description of this server (server/http/openapi.py)."""
    limits = {"max_prompts": MAX_PROMPTS, "max_completion_tokens": MAX_COMPLETION_TOKENS,
              "max_requested_tokens": MAX_REQUESTED_TOKENS, "max_stop_sequences": MAX_STOP_SEQUENCES,
              "max_temperature": MAX_TEMPERATURE, "max_body_bytes": request.app[MAX_BODY]}
    return web.json_response(openapi_document(limits, public=PUBLIC_ROUTES))


async def dashboard(request: web.Request) -> web.Response:
    """GET /: the dashboard page, with the token rendered in only when the URL carried the right one."""
    policy = request.app[POLICY]
    offered = request.query.get("token")
    token = offered if offered and policy.authorized(f"Bearer {offered}") else ""
    state = "valid" if token else ("invalid" if offered else "none")
    page = (DASHBOARD_DIR / "index.html").read_text(encoding="utf-8")
    page = page.replace("{{TOKEN}}", token).replace("{{TOKEN_STATE}}", state)
    return web.Response(text=page, content_type="text/html", headers=PAGE_HEADERS)


async def static(request: web.Request) -> web.Response:
    """GET /dashboard/<file>: the dashboard's script or style sheet (a fixed list, no directory access)."""
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise _error(404, f"no dashboard file {name!r}")
    return web.Response(body=(DASHBOARD_DIR / name).read_bytes(), content_type=STATIC_FILES[name],
                        headers={**PAGE_HEADERS, "Cache-Control": "no-cache"})


# ---------------------------------------------------------------------------------------------------- app


def create_app(workspace: Any, policy: AccessPolicy, *, max_body: int = MAX_BODY_BYTES,
               max_pending_completions: int = 4, max_event_clients: int = 16) -> web.Application:
    """The aiohttp application over `workspace`; `policy` carries the bound address, port and token."""
    app = web.Application(middlewares=[error_middleware, guard_middleware], client_max_size=max_body)
    app[WORKSPACE] = workspace
    app[POLICY] = policy
    app[MAX_BODY] = max_body
    app.router.add_get("/", dashboard, name="dashboard")
    app.router.add_get("/dashboard/{name}", static, name="static")
    app.router.add_get("/v1/status", status, name="status")
    app.router.add_get("/v1/models", models, name="models")
    app.router.add_post("/v1/completions", completions, name="completions")
    app.router.add_post("/completions", completions, name="completions_without_v1")
    app.router.add_post("/infill", infill, name="infill")
    app.router.add_post("/completion", llama_completion, name="llama_completion")
    app.router.add_get("/health", health, name="health")
    app.router.add_get("/openapi.json", openapi, name="openapi")
    app.router.add_post("/v1/train", train, name="train")
    app.router.add_post("/v1/train/cancel", cancel, name="cancel")
    app.router.add_get("/v1/events", events, name="events")

    async def lifecycle(app: web.Application):
        hub = EventHub(asyncio.get_running_loop(), max_clients=max_event_clients)
        app[HUB] = hub
        app[LIMITS] = Limits(max_pending_completions)
        unsubscribe = workspace.subscribe(lambda event: hub.on_event(event.to_json()))
        yield
        unsubscribe()

    async def wake_listeners(app: web.Application) -> None:
        app[HUB].close()

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(wake_listeners)
    return app


@dataclass
class HttpServer:
    """A running server: where it listens, its token, and how to stop it."""

    runner: web.AppRunner
    policy: AccessPolicy
    token_path: Path

    @property
    def port(self) -> int:
        return self.policy.port

    @property
    def url(self) -> str:
        host = self.policy.bind_host
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    @property
    def dashboard_url(self) -> str:
        """The dashboard link for the user (printed at start, opened by the editor): it carries the token."""
        return f"{self.url}/?token={self.policy.token}"

    async def close(self) -> None:
        """Stop serving (the token file stays: it is the workspace's stable key)."""
        await self.runner.cleanup()


async def serve_http(workspace: Any, host: str = "127.0.0.1", port: int = 0, *,
                     allow_remote: bool = False, api_key: str | None = None,
                     limits: ConnectionLimits | None = None) -> HttpServer:
    """Serve `workspace` over HTTP inside the running event loop; port 0 picks a free one.

    The token is `api_key`, else $CLLM_API_KEY, else the workspace's token file, created once (0600) and
    reused (http_security.stable_token). A non-loopback `host` is refused unless `allow_remote` is set (then a
    warning is logged). Connections are bounded by `limits` (server/http/limits.py; nginx-like defaults). Call
    `await server.close()` to stop.
    """
    if not is_loopback_host(host):
        if not allow_remote:
            raise ValueError(f"refusing to listen on non-loopback address {host!r}: pass --allow-remote to expose "
                             "the model server to other machines")
        log.warning("listening on %s: the model server is reachable from other machines (token still required)",
                    host)
    token_path = Path(workspace.token_path)
    token = stable_token(token_path, api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None)
    policy = AccessPolicy(bind_host=host, port=port, token=token, allowed_roots=(Path(workspace.root),))
    limits = limits or ConnectionLimits()
    app = create_app(workspace, policy)
    # handler_cancellation: a handler whose client hangs up is cancelled at once (aiohttp's default lets it run
    # on), so an event listener frees its slot and a dropped completion stops its work (server/worker.py)
    runner = web.AppRunner(app, access_log_class=PathOnlyAccessLogger, shutdown_timeout=2.0,
                           keepalive_timeout=limits.keepalive_timeout, handler_cancellation=True)
    gate = ConnectionGate(limits)
    gate.install(app)
    await runner.setup()
    rate_limit_logs()
    try:
        await GatedSite(runner, gate, host, port).start()
        policy.port = runner.addresses[0][1]
    except OSError:  # the port is taken: stop serving before reporting it
        await runner.cleanup()
        raise
    return HttpServer(runner, policy, token_path)


def run_server(workspace: Any, host: str, port: int, *, allow_remote: bool = False,
               api_key: str | None = None) -> None:
    """`cllm serve`: serve until SIGINT/SIGTERM, printing the address and the dashboard link (with the token
    only when stdout is a terminal: the token must not end up in log files)."""

    async def main() -> None:
        server = await serve_http(workspace, host, port, allow_remote=allow_remote, api_key=api_key)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"cllm: serving {workspace.root} at {server.url}/v1 (token in {server.token_path})", flush=True)
        if sys.stdout.isatty():
            print(f"cllm: dashboard {server.dashboard_url}", flush=True)
        else:  # stdout may be a log file: keep the token out of it
            print(f"cllm: dashboard {server.url}/?token=<the content of {server.token_path}>", flush=True)
        try:
            await stop.wait()
        finally:
            await server.close()

    asyncio.run(main())
